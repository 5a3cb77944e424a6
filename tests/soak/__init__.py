"""The load soak (`just soak`, not in CI): `hbsm run` watching 1,000 flaky local services for
minutes, its API under constant load and the dashboard following; see tests/soak/run.py."""
