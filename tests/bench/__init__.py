"""`just bench`: performance figures as ratios against baselines measured in the same run
(DESIGN §8). Not collected by `just test` (pytest's norecursedirs); run with
`python -m tests.bench.run` (see run.py)."""
