"""--set KEY=VALUE what-if: parsing, the simulation, and the command line."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from replay_scenarios import INTERVAL, T0, Recorder, outage, run_cli

from hbsm.events import Event
from hbsm.replay import OverrideError, WhatIf, parse_overrides
from hbsm.replay.whatif import POLICY_KEYS, WhatIfReport, apply_overrides, parse_override
from hbsm.state import Policy


def what_if(events: list[Event], *changes: str) -> WhatIfReport:
    sim = WhatIf(parse_overrides(changes))
    for event in events:
        sim.feed(event)
    return sim.report()


def flapping(rec: Recorder | None = None) -> Recorder:
    """api fails 3 times in a row, recovers, again and again: each streak costs a repair run
    at max_retries=3, none at 5."""
    rec = rec or Recorder()
    rec.register("api")
    rec.probes("api", "..." + "xxx.." * 4, T0)
    return rec


def test_parse_override_keys_and_values() -> None:
    o = parse_override("max_retries=5")
    assert (o.service, o.key, o.value) == (None, "max_retries", 5)
    o = parse_override("api.restart_cooldown=60.5")
    assert (o.service, o.key, o.value) == ("api", "restart_cooldown", 60.5)
    assert parse_override("ladder=diagnose, restart").value == ["diagnose", "restart"]
    assert parse_override('ladder=["diagnose","restart"]').value == ["diagnose", "restart"]
    assert parse_override("on_restart_failure=degraded").value == "degraded"  # not JSON: text
    assert parse_override("my.dotted.svc.max_retries=2").service == "my.dotted.svc"


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("max_retries=-1", "--set max_retries=-1: max_retries must be >= 1"),
        ("max_retries=abc", "--set max_retries=abc: max_retries: expected int, got str"),
        ("api.max_retries=0", "--set api.max_retries=0: max_retries must be >= 1"),
        ("on_restart_failure=explode", "--set on_restart_failure=explode: "),
        ("ladder=restart", "--set ladder=restart: ladder must not begin with 'restart'"),
        ("max_retries", "--set max_retries: expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_set_and_the_key(arg: str, message: str) -> None:
    with pytest.raises(OverrideError) as caught:
        parse_overrides([arg])
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_an_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(OverrideError) as caught:
        parse_overrides(["max_retry=5"])
    text = str(caught.value)
    assert text.startswith("--set max_retry=5: unknown key 'max_retry'; valid keys: ")
    assert all(key in text for key in POLICY_KEYS)


def test_overrides_apply_per_service_and_are_checked_against_the_recorded_policy() -> None:
    changes = parse_overrides(["max_retries=5", "web.max_retries=2", "restart_cooldown=900"])
    assert apply_overrides(Policy(), "api", changes).max_retries == 5
    assert apply_overrides(Policy(), "web", changes).max_retries == 2
    assert apply_overrides(Policy(), "web", changes).restart_cooldown == 900
    # Valid for the default policy (cooldown_max 3600), not for this recorded one.
    with pytest.raises(OverrideError, match="--set restart_cooldown=900: for service 'db'"):
        apply_overrides(Policy(restart_cooldown=60, cooldown_max=600), "db", changes)


def test_more_retries_means_fewer_repairs_on_a_flapping_service() -> None:
    report = what_if(flapping().stamped(), "max_retries=5")
    (api,) = report.services
    assert api.recorded.repairs == 4 and api.what_if.repairs == 0
    assert api.difference.repairs == -4
    assert api.recorded.mttd_s == 2 * INTERVAL and api.what_if.mttd_s is None
    assert report.total.recorded.repairs == 4 and report.total.what_if.repairs == 0
    assert report.changes == ["max_retries=5"]
    assert "finish at once" in report.approximation


def test_more_retries_means_later_detection_of_an_outage() -> None:
    rec = Recorder()
    rec.register("api")
    outage(rec)
    report = what_if(rec.stamped(), "max_retries=5")
    (api,) = report.services
    assert api.recorded.mttd_s == 2 * INTERVAL and api.what_if.mttd_s == 4 * INTERVAL
    assert api.difference.mttd_s == 2 * INTERVAL
    # Five failures reach the repair later: the restart step is never reached.
    assert (api.recorded.restarts, api.what_if.restarts) == (1, 0)


def test_unchanged_thresholds_reproduce_the_recording() -> None:
    """With a runtime as instant as the simulated one, the what-if of the recorded policy is
    the recording itself."""
    rec = Recorder(repair_s=0.0, restart_s=0.0)
    rec.register("api")
    rec.register("web")
    times = outage(rec)
    outage(rec, start=times["next"] + 900)
    flapping_probes = "..." + "xxx.." * 3 + "xxxxxxx" + "." * 20
    rec.probes("web", flapping_probes, T0 + 3)
    report = what_if(rec.stamped(), "max_retries=3")
    for row in [*report.services, report.total]:
        assert row.recorded == row.what_if, row
    assert report.total.recorded.repairs >= 6 and report.total.recorded.restarts >= 3


def test_a_per_service_change_leaves_the_others_alone() -> None:
    rec = flapping()
    rec.register("web")
    rec.probes("web", "..." + "xxx.." * 2, T0 + 1)
    report = what_if(rec.stamped(), "api.max_retries=5")
    rows = {r.service: r for r in report.services}
    assert rows["api"].what_if.repairs == 0 and rows["api"].recorded.repairs == 4
    assert rows["web"].what_if == rows["web"].recorded
    assert rows["web"].recorded.repairs == 2


# --- through the command line -----------------------------------------------------------------


def test_cli_what_if_text_and_json(tmp_path: Path) -> None:
    log = flapping().write(tmp_path / "heartbeat.jsonl")
    done = run_cli("replay", log, "--set", "max_retries=5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "what-if: max_retries=5"
    assert lines[1].startswith("approximation: ") and "next recorded probe" in done.stdout
    repairs = [line.split() for line in lines if line.strip().startswith("repair runs")]
    assert repairs[0][-3:] == ["4", "0", "-4"]  # api: recorded, what-if, difference
    assert repairs[-1][-3:] == ["4", "0", "-4"]  # total

    done = run_cli("replay", log, "--set", "max_retries=5", "--json")
    assert done.returncode == 0, done.stderr
    report = msgspec.json.decode(done.stdout)
    assert set(report) >= {"changes", "approximation", "services", "total"}
    assert report["total"]["recorded"]["repairs"] == 4
    assert report["total"]["what_if"]["repairs"] == 0
    assert report["services"][0]["difference"]["mttd_s"] is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "max_retries=-1"], "--set max_retries=-1: max_retries must be >= 1"),
        (["--set", "retries=5"], "unknown key 'retries'; valid keys: check_interval"),
        (["--set", "db.max_retries=5"], "unknown service 'db'; services in this history: api"),
    ],
)
def test_cli_bad_set_exits_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    log = flapping().write(tmp_path / "heartbeat.jsonl")
    done = run_cli("replay", log, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert needle in line
