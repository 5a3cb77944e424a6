"""What a reload finds changed between two configurations (pure: no monitor, no file)."""

from __future__ import annotations

import msgspec

from hbsm.config import Config
from hbsm.monitor.reload import config_digest, diff_configs, in_force
from hbsm.state import ServiceState


def config(**top: object) -> Config:
    services = top.pop(
        "services", [{"name": "a", "url": "http://a"}, {"name": "b", "url": "http://b"}]
    )
    return msgspec.convert({**top, "services": services}, Config)


def test_the_same_configuration_is_no_change_and_the_same_digest() -> None:
    diff = diff_configs(config(), config())
    assert diff.empty and not diff.needs_restart
    assert config_digest(config()) == config_digest(config())
    assert config_digest(config()) != config_digest(config(max_retries=4))


def test_services_added_removed_and_changed_with_their_keys() -> None:
    new = config(services=[{"name": "a", "url": "http://a2", "max_retries": 7}, {"name": "c"}])
    diff = diff_configs(config(), new)
    assert diff.added == ["c"] and diff.removed == ["b"]
    assert diff.changed == {"a": ["max_retries", "url"]}


def test_a_top_level_threshold_changes_every_service_it_reaches() -> None:
    old = config(services=[{"name": "a"}, {"name": "b", "check_interval": 5.0}])
    new = config(
        check_interval=10.0, services=[{"name": "a"}, {"name": "b", "check_interval": 5.0}]
    )
    assert diff_configs(old, new).changed == {"a": ["check_interval"]}


def test_settings_the_process_was_built_with_need_a_restart_and_are_kept() -> None:
    old = config(admin_token="t0k3n")
    new = config(port=6000, log={"path": "other.jsonl"}, notify={"webhooks": [{"url": "http://h"}]})
    diff = diff_configs(old, new)
    assert diff.needs_restart == ["port", "log.path", "notify.webhooks", "admin_token"]
    kept = in_force(old, new, diff)
    assert kept.port == old.port and kept.log == old.log and kept.notify == old.notify
    assert kept.admin_token == "t0k3n"
    # A new token is taken at once: the next request needs it.
    rotated = diff_configs(old, config(admin_token="n3w"))
    assert (
        rotated.needs_restart == []
        and in_force(old, config(admin_token="n3w"), rotated).admin_token == "n3w"
    )


def test_a_repair_run_under_way_is_left_alone() -> None:
    from hbsm.monitor.reload import in_repair_run

    assert in_repair_run(ServiceState(name="a", state="repairing"))
    assert in_repair_run(ServiceState(name="a", state="restarting"))
    assert in_repair_run(ServiceState(name="a", state="cooldown", restart_pending=True))
    assert not in_repair_run(ServiceState(name="a", state="cooldown"))
    assert not in_repair_run(ServiceState(name="a", state="degraded"))
