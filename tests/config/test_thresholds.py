"""Every threshold of a Policy is a setting at the top level of hbsm.toml and of each service,
under the same name: a threshold added to Policy and forgotten in the config fails here."""

from __future__ import annotations

import msgspec

from hbsm.config import Config, ServiceConfig
from hbsm.state import Policy

THRESHOLDS = set(Policy.__struct_fields__)


def test_the_top_level_and_every_service_have_each_threshold_of_a_policy() -> None:
    assert set(Config.__struct_fields__) >= THRESHOLDS
    assert set(ServiceConfig.__struct_fields__) >= THRESHOLDS
    # A service's own value is optional: unset, the top-level one applies.
    service = ServiceConfig(name="web", url="http://127.0.0.1:9/")
    assert all(getattr(service, name) is None for name in THRESHOLDS)


def test_a_service_takes_each_threshold_it_sets_and_the_top_levels_for_the_rest() -> None:
    own = {"check_interval": 7.0, "max_retries": 5, "start_grace": 2.0, "repair_budget": 9,
           "ladder": ["diagnose"], "ladders": {"timeout": ["diagnose", "restart"]}}  # fmt: skip
    config = msgspec.convert(
        {"restart_cooldown": 40.0, "cooldown_max": 30.0, "services": [
            {"name": "web", "url": "http://127.0.0.1:9/", **own},
            {"name": "api", "url": "http://127.0.0.1:9/"}]},
        Config,
    )  # fmt: skip
    web, api = (config.policy_for(s) for s in config.services)
    assert (web.check_interval, web.max_retries, web.start_grace, web.repair_budget) == (
        7.0, 5, 2.0, 9)  # fmt: skip
    assert web.ladder == ("diagnose",) and web.ladders == {"timeout": ("diagnose", "restart")}
    top = Config()
    for name in THRESHOLDS - {"cooldown_max", "restart_cooldown", "ladder", "ladders"}:
        assert getattr(api, name) == getattr(top, name), name
    assert api.ladder == tuple(top.ladder)
    # The cap on the cooldown is never below the cooldown itself.
    assert api.restart_cooldown == 40.0 and api.cooldown_max == 40.0
