"""hbsm's words are said once (hbsm.vocabulary) and every part that uses them agrees: the
state machine, the config's checks, the HTTP API and its OpenAPI document, the dashboard."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hbsm.api.openapi import NAME_PATTERN, document
from hbsm.config import ConfigError, load_config
from hbsm.fsm import KNOWN_RULES
from hbsm.graph import table
from hbsm.vocabulary import (
    ADMIN_ACTIONS,
    SERVICE_NAME,
    SERVICE_NAME_MAX,
    STATE_ACTIONS,
    STATES,
    URL_SERVICE_ACTIONS,
    log_action,
    url_action,
)
from tui.app import DashboardApp


@pytest.mark.parametrize("rules", KNOWN_RULES)
def test_the_machine_knows_every_state_and_acts_on_the_state_actions(rules: int) -> None:
    rows = table(rules)
    triggers = {row["trigger"] for row in rows}
    assert set(STATE_ACTIONS) <= triggers
    # transitions' own words: "*" is any source, a None dest an internal transition.
    named = {row["dest"] for row in rows} - {None}
    for row in rows:
        source = row["source"]
        named |= {source} - {"*"} if isinstance(source, str) else set(source)
    assert named <= set(STATES)


def test_the_openapi_document_takes_its_actions_and_names_from_the_vocabulary() -> None:
    doc = document("test")
    action = doc["paths"]["/admin/service/{name}/{action}"]["post"]["parameters"]
    enums = [p["schema"].get("enum") for p in action if p["name"] == "action"]
    assert enums == [list(URL_SERVICE_ACTIONS)]
    assert f"^{SERVICE_NAME.pattern}$" == NAME_PATTERN


def test_url_and_log_spellings_of_the_actions_go_back_and_forth() -> None:
    assert URL_SERVICE_ACTIONS == ("pause", "resume", "reset", "probe-now", "repair-now")
    assert all(log_action(url_action(a)) == a for a in ADMIN_ACTIONS)


def test_the_dashboards_admin_keys_send_actions_the_api_knows() -> None:
    sent = [
        m.group(1)
        for b in DashboardApp.BINDINGS
        if (m := re.fullmatch(r"admin\('([^']+)'\)", getattr(b, "action", "")))
    ]
    assert sent and set(sent) - {"heartbeat"} <= set(URL_SERVICE_ACTIONS)


@pytest.mark.parametrize(
    "name",
    ["web", "api.v2", "a-b_c", "x" * SERVICE_NAME_MAX, "x" * (SERVICE_NAME_MAX + 1), "a/b",
     "web service", "héllo", ""],
)  # fmt: skip
def test_the_config_accepts_exactly_the_names_the_api_serves(tmp_path: Path, name: str) -> None:
    path = tmp_path / "hbsm.toml"
    path.write_text(f'[[services]]\nname = "{name}"\nurl = "http://127.0.0.1:9/health"\n')
    try:
        load_config(path, env={})
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == bool(SERVICE_NAME.fullmatch(name)), name
