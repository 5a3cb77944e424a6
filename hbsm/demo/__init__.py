"""`hbsm demo`: flaky local services, monitored and repaired by hbsm, with chaos on demand.

* `hbsm.demo.service` — a tiny stdlib HTTP service (main_service, login_page, worker) run as a
  real child process; it misbehaves when its control file says so (crash, hang, error, slow) or
  when its own config file is broken (badconfig).
* `hbsm.demo.fixconfig` — restores a service's config file from its known-good copy (the
  `command` repair step of the demo's ladder).
* `hbsm.demo.chaos` — injects faults on a seeded schedule and records each one in
  `demo-faults.jsonl` beside the event log.
* `hbsm.demo.report` — matches each injected fault to the monitor's events (detected, repaired
  by which step, restarts, time to recover) and checks the restart cooldown.
* `hbsm.demo.command` — the `hbsm demo` command.
"""
