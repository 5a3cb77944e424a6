"""A log is re-decided by the rules it was written under.

tests/replay/data/first_rules/ holds logs written by hbsm before the cooldown stopped gating
health (the first rules: no `rules` in their monitor.started). They must verify as they are,
and only under their own rules; a log of rules this hbsm does not know is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replay_scenarios import run_cli

from hbsm.events import MonitorStarted, decode_lines
from hbsm.replay import Verifier
from hbsm.state import RULES

FIRST_RULES = sorted((Path(__file__).parent / "data" / "first_rules").glob("*.jsonl"))


def verify(lines: list[bytes]) -> Verifier:
    verifier = Verifier()
    for event in decode_lines(b"\n".join(lines) + b"\n"):
        if verifier.feed(event) is not None:
            break
    verifier.finish()
    return verifier


def with_rules(path: Path, rules: int) -> list[bytes]:
    """The log's lines, its monitor.started claiming other rules."""
    out = []
    for line in path.read_bytes().splitlines():
        event = json.loads(line)
        if event["type"] == "monitor.started":
            event["rules"] = rules
            line = json.dumps(event).encode()
        out.append(line)
    return out


def test_the_fixtures_are_first_rules_logs() -> None:
    assert len(FIRST_RULES) == 3
    for path in FIRST_RULES:
        starts = [e for e in decode_lines(path.read_bytes()) if isinstance(e, MonitorStarted)]
        assert starts and all(e.rules == 1 for e in starts)
        assert b'"rules"' not in path.read_bytes()


@pytest.mark.parametrize("path", FIRST_RULES, ids=lambda p: p.name)
def test_a_first_rules_log_verifies_under_its_rules(path: Path) -> None:
    verifier = verify(path.read_bytes().splitlines())
    assert verifier.divergence is None, verifier.divergence
    assert verifier.result().decisions > 5


def test_the_rules_matter_the_same_log_under_the_current_rules_diverges() -> None:
    # The sample whose service comes back inside its cooldown: the first rules held it there.
    path = next(p for p in FIRST_RULES if p.name == "crash_restart_cooldown.jsonl")
    verifier = verify(with_rules(path, RULES))
    assert verifier.divergence is not None
    assert verifier.divergence.service == "billing"


def test_the_command_verifies_old_and_new_logs_side_by_side() -> None:
    samples = sorted((Path(__file__).parents[2] / "events" / "samples").glob("*.jsonl"))
    done = run_cli("replay", "--verify", *FIRST_RULES, *samples)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("verified ") == len(FIRST_RULES) + len(samples)


def test_a_log_of_unknown_rules_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "newer.jsonl"
    path.write_bytes(b"\n".join(with_rules(FIRST_RULES[0], 99)) + b"\n")
    for args in (["--verify"], ["--set", "max_retries=5"]):
        done = run_cli("replay", *args, path)
        assert done.returncode == 2, done
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"hbsm replay: {path}: seq 1 (monitor.started): decision rules 99")
        assert "a newer hbsm wrote this log" in line
        assert "Traceback" not in done.stderr
