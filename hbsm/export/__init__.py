"""`hbsm export`: a log kept elsewhere than in a file, written out as the JSONL file log's lines,
for the tools that read files (`hbsm replay`, `--verify`, the dashboard's replay)."""
