"""`hbsm check URL`: exercise every route of a running hbsm instance, as the original
`test_heartbeat.py` did, and say which answered as the README's HTTP API section says they must.

`hbsm.check.checks` does the checking (`run_checks`, one `Check` per route); `hbsm.check.command`
is the subcommand. Nothing is imported here, so `hbsm --help` does not pay for httpx.
"""
