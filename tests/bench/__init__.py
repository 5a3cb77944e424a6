"""`just bench`: performance figures as ratios against baselines measured in the same run
(docs/performance.md). Not collected by `just test` (pytest's norecursedirs); run with
`python -m tests.bench.run` (see run.py)."""
