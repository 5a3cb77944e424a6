"""What the test folders share, one name each, imported as `support.<module>` (tests/conftest.py
puts tests/ on sys.path; its fixtures are registered there too):

* `support.waiting`: `DEADLINE`, `wait_for` (async) and `wait_for_sync`: poll until true, with a
  deadline only a hang misses;
* `support.clock`: `ManualClock`, time the test moves;
* `support.net`: `free_port`;
* `support.configs`: `service`, `probed`, `supervised`, `make_config`;
* `support.dashboard`: `row_state`, a service's state as the dashboard's table shows it;
* `support.fixtures`: the fixtures `target`, `stop_later`, `clean_environment`,
  `no_registered_steps`.
"""
