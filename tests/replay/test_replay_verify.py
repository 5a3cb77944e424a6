"""--verify: re-deciding recorded facts, pure and through the command line."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from replay_scenarios import T0, Recorder, outage, run_cli, stamp, write_log

from hbsm.events import Event, RepairStarted, ServiceRegistered, Transition
from hbsm.fsm import DECISIONS, FACTS
from hbsm.projection import Projection
from hbsm.replay import Verifier
from hbsm.state import Policy


def busy_history() -> Recorder:
    """Outages, a flapping service with its own policy, operators, a failing restart."""
    rec = Recorder()
    rec.start()
    rec.register("api")
    rec.register("web", Policy(max_retries=2, restart_cooldown=60.0, cooldown_max=600.0))
    times = outage(rec)
    outage(rec, "api", start=times["next"] + 600)
    t = rec.probes("web", "xx.xx.xx..xxxxxx.", T0 + 7)
    rec.admin("web", "pause", ts=t)
    rec.admin("web", "resume", ts=t + 60)
    rec.admin("web", "repair_now", ts=t + 90)
    rec.probes("web", "x.", t + 100)
    return rec


def verify(events: list[Event], **kw: bool) -> Verifier:
    verifier = Verifier()
    for event in events:
        if verifier.feed(event) is not None:
            break
    verifier.finish(**kw)
    return verifier


def test_a_history_made_by_decide_verifies() -> None:
    events = busy_history().stamped()
    verifier = verify(events)
    result = verifier.result()
    assert result.ok and result.divergence is None
    assert result.facts == sum(isinstance(e, FACTS) for e in events)
    assert result.decisions == sum(isinstance(e, DECISIONS) for e in events) > 20
    assert result.events == len(events)
    assert result.default_policy == []


def test_the_recorded_policy_is_used_not_the_default() -> None:
    events = busy_history().stamped()
    # Without its registration, web (max_retries=2) is re-decided with the default (3).
    without = [e for e in events if not (isinstance(e, ServiceRegistered) and e.service == "web")]
    verifier = verify(without)
    assert verifier.default_policy == ["web"]
    assert verifier.divergence is not None and verifier.divergence.service == "web"


def _first(events: list[Event], cls: type, **fields: object) -> int:
    return next(
        i
        for i, e in enumerate(events)
        if isinstance(e, cls) and all(getattr(e, k) == v for k, v in fields.items())
    )


def test_a_changed_decision_diverges_naming_the_event_and_field() -> None:
    events = busy_history().stamped()
    i = _first(events, Transition, dst="repairing", service="api")
    events[i] = msgspec.structs.replace(events[i], dst="healthy")
    d = verify(events).divergence
    assert d is not None
    assert (d.kind, d.seq, d.service, d.fields) == ("differs", events[i].seq, "api", ["dst"])
    assert "expected transition degraded->repairing" in d.message
    assert "recorded transition degraded->healthy" in d.message
    assert d.after_seq == events[i - 1].seq  # the probe it answers


def test_a_dropped_decision_diverges_at_the_next_fact() -> None:
    events = busy_history().stamped()
    i = _first(events, RepairStarted, service="api")
    del events[i]
    d = verify(events).divergence
    assert d is not None and d.kind == "missing" and d.service == "api"
    assert d.seq == events[i].seq  # the event that took the dropped decision's place
    assert d.expected is not None and d.expected.startswith("repair.started run 1 step 0")


def test_a_decision_the_fsm_did_not_make_diverges() -> None:
    events = busy_history().stamped()
    i = _first(events, Transition, dst="degraded")
    events = stamp([*events[: i + 1], events[i], *events[i + 1 :]])  # recorded twice
    d = verify(events).divergence
    assert d is not None and d.kind == "unexpected" and d.seq == i + 2


def test_decisions_cut_off_at_the_end_diverge_unless_the_last_line_was_torn() -> None:
    events = busy_history().stamped()
    i = _first(events, Transition, dst="repairing")
    cut = events[: i + 1]  # the transition, but not the repair.started that follows
    assert verify(cut).divergence is not None and verify(cut).divergence.kind == "unfinished"  # type: ignore[union-attr]
    torn = verify(cut, torn=True)
    assert torn.divergence is None and torn.pending == 1


@pytest.mark.parametrize("keep_before", [True, False])
def test_a_snapshot_restores_state_and_policy(keep_before: bool) -> None:
    events = busy_history().stamped()
    # A segment opens between appends: before a fact, never between it and its decisions.
    middle = next(i for i in range(len(events) // 2, len(events)) if isinstance(events[i], FACTS))
    projection = Projection()
    projection.apply_all(events[:middle])
    snapshot = msgspec.structs.replace(
        projection.snapshot(segment=1, ts=events[middle - 1].ts), seq=events[middle - 1].seq
    )
    rest = [msgspec.structs.replace(e, seq=e.seq + 1) for e in events[middle:]]
    history = [*events[:middle], snapshot, *rest] if keep_before else [snapshot, *rest]
    verifier = verify(history)
    assert verifier.divergence is None, verifier.divergence
    assert verifier.default_policy == []  # the snapshot carries the policies
    assert verifier.decisions == sum(isinstance(e, DECISIONS) for e in rest) + (
        sum(isinstance(e, DECISIONS) for e in events[:middle]) if keep_before else 0
    )


# --- through the command line -----------------------------------------------------------------


def test_cli_verify_passes_with_a_summary(tmp_path: Path) -> None:
    events = busy_history().stamped()
    log = write_log(tmp_path / "heartbeat.jsonl", events, stamped=True)
    done = run_cli("replay", log, "--verify")
    assert done.returncode == 0, done.stderr
    facts = sum(isinstance(e, FACTS) for e in events)
    decisions = sum(isinstance(e, DECISIONS) for e in events)
    assert done.stdout == (
        f"verified {len(events)} events: {facts} facts re-decided, "
        f"{decisions} decisions matched, 2 services\n"
    )
    assert done.stderr == ""


def test_cli_verify_fails_on_a_tampered_transition(tmp_path: Path) -> None:
    events = busy_history().stamped()
    i = _first(events, Transition, dst="cooldown")
    events[i] = msgspec.structs.replace(events[i], dst="healthy")
    log = write_log(tmp_path / "heartbeat.jsonl", events, stamped=True)
    done = run_cli("replay", log, "--verify")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    seq = events[i].seq
    assert f"{log}:{i + 1}: divergence at seq {seq}, service api:" in lines[0]
    assert "expected transition restarting->cooldown" in lines[0]
    assert "recorded transition restarting->healthy" in lines[0]


def test_cli_verify_fails_on_a_dropped_decision_and_names_the_line(tmp_path: Path) -> None:
    events = busy_history().stamped()
    i = _first(events, RepairStarted, service="web")
    del events[i]  # seqs keep their gap: still strictly increasing
    log = write_log(tmp_path / "heartbeat.jsonl", events, stamped=True)
    done = run_cli("replay", log, "--verify", "--json")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert f"{log}:{i + 1}: divergence at seq {events[i].seq}, service web:" in line
    assert "expected repair.started" in line
    report = msgspec.json.decode(done.stdout)
    assert report["ok"] is False and report["divergence"]["kind"] == "missing"
    assert report["divergence"]["seq"] == events[i].seq


def test_cli_verify_warns_when_a_service_was_never_registered(tmp_path: Path) -> None:
    rec = Recorder()
    rec.register("api")
    outage(rec)
    events = [e for e in rec.stamped() if type(e).__name__ != "ServiceRegistered"]
    log = write_log(tmp_path / "heartbeat.jsonl", events, stamped=True)
    done = run_cli("replay", log, "--verify")
    assert done.returncode == 0  # it was recorded with the default policy
    (warning,) = done.stderr.splitlines()
    assert "warning" in warning and "api" in warning and "default policy" in warning


def test_cli_replays_a_rotated_log_across_its_segments(tmp_path: Path) -> None:
    """Written by the real log with small segments: each opens with a snapshot; replay reads
    the closed (compressed) segments first, and --verify re-decides across them."""
    from hbsm.log import FileEventLog, segment_paths

    events = busy_history().events
    path = tmp_path / "events" / "heartbeat.jsonl"
    projection = Projection()
    log = FileEventLog.open(
        path,
        max_bytes=4096,
        keep_segments=100,
        snapshot=lambda n: projection.snapshot(n, ts=projection.monitor.last_ts or T0),
    )
    try:
        batch: list[Event] = []
        for event in sorted(events, key=lambda e: e.ts):
            if batch and not isinstance(event, DECISIONS):  # a fact and its decisions together
                projection.apply_all(log.append(batch))
                log.flush()
                batch = []
            batch.append(msgspec.structs.replace(event, seq=0))
        projection.apply_all(log.append(batch))
        log.flush()
    finally:
        log.close()
    assert len(segment_paths(path)) >= 3

    done = run_cli("replay", path, "--verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"verified {len(events) + len(segment_paths(path))} events")

    single = write_log(tmp_path / "single.jsonl", events)
    rotated, whole = (
        msgspec.json.decode(run_cli("replay", p, "--json").stdout) for p in (path, single)
    )

    def unseq(incidents: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in i.items() if not k.endswith("seq")} for i in incidents]

    assert unseq(rotated["incidents"]) == unseq(whole["incidents"])
    assert rotated["services"] == whole["services"] and len(rotated["incidents"]) >= 3


def test_a_difference_outside_the_short_form_is_spelled_out() -> None:
    events = busy_history().stamped()
    i = _first(events, Transition, dst="cooldown")
    original = events[i]
    assert isinstance(original, Transition) and original.until is not None
    events[i] = msgspec.structs.replace(original, until=original.until + 5)
    d = verify(events).divergence
    assert d is not None and d.fields == ["until"]
    assert d.message.endswith(
        f"until: expected {original.until!r}, recorded {original.until + 5!r}"
    )
