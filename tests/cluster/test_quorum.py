"""The pure parts of several nodes: the quorum of vantage points (hbsm.cluster.quorum), `hbsm
replay --verify` re-counting the votes a recorded probe carries, and the projection telling
whether any node monitors."""

from __future__ import annotations

import msgspec

from hbsm.cluster.quorum import judge, quorum_now, verdict, vote_window, votes_of
from hbsm.events import (
    Admin,
    MonitorStarted,
    MonitorStopped,
    Probe,
    ProbeSeen,
    ServiceRegistered,
    Transition,
    Vote,
)
from hbsm.fsm import ServiceMachine, decided
from hbsm.projection import Projection
from hbsm.replay.verify import Verifier
from hbsm.state import Policy, ServiceState

POLICY = Policy(check_interval=1.0, max_retries=1, quorum=2)


def seen(node: str, ok: bool, ts: float, seq: int) -> ProbeSeen:
    return ProbeSeen(seq=seq, ts=ts, service="web", node=node, ok=ok,
                     error=None if ok else "timeout")  # fmt: skip


def own(ok: bool, ts: float = 100.0) -> Probe:
    return Probe(ts=ts, service="web", node="a", ok=ok, error=None if ok else "refused",
                 detail="" if ok else "connection refused")  # fmt: skip


def test_a_failure_counts_only_when_the_quorum_sees_it():
    assert verdict([Vote(node="a", ok=False, seq=0)], 1) is False
    assert verdict([Vote(node="a", ok=False, seq=0), Vote(node="b", ok=True, seq=3)], 2) is True
    two = [Vote(node="a", ok=False, seq=0), Vote(node="b", ok=False, seq=3)]
    assert verdict(two, 2) is False


def test_votes_are_each_other_nodes_latest_word_and_old_failures_lapse():
    facts = {"b": seen("b", False, ts=99.5, seq=7), "c": seen("c", False, ts=90.0, seq=5),
             "d": seen("d", True, ts=10.0, seq=2),
             "a": seen("a", False, ts=99.9, seq=8)}  # fmt: skip
    votes = votes_of(facts, at=100.0, window=vote_window(POLICY), besides="a")
    # a votes with its own probe; c's failure is older than two intervals; d's success stands.
    assert votes == [
        Vote(node="b", ok=False, seq=7, error="timeout"),
        Vote(node="d", ok=True, seq=2),
    ]


def test_an_outvoted_failure_is_recorded_as_passing_and_says_why():
    judged = judge(own(False), [Vote(node="b", ok=True, seq=3), Vote(node="c", ok=True, seq=4)], 2)
    assert judged.ok and judged.error == "refused"  # what a saw stays
    assert [v.node for v in judged.votes] == ["a", "b", "c"] and judged.votes[0].seq == 0
    assert "1 of 3 vantage points see it failing (quorum 2)" in judged.detail
    assert judged.detail.endswith("connection refused")


def test_others_can_fail_a_service_this_node_sees_passing():
    votes = [Vote(node="b", ok=False, seq=3, error="timeout"),
             Vote(node="c", ok=False, seq=4, error="timeout")]  # fmt: skip
    judged = judge(own(True), votes, 2)
    assert not judged.ok and judged.error == "timeout"  # their failure class picks the ladder


def test_alone_a_probe_is_its_own_verdict():
    assert judge(own(False), [], 1) == own(False)


def test_with_fewer_nodes_alive_than_the_quorum_the_quorum_is_all_of_them():
    assert quorum_now(POLICY, 3) == 2 and quorum_now(POLICY, 1) == 1 and quorum_now(POLICY, 0) == 1
    # Two of three nodes dead, nothing heard from them: the last one's failure counts.
    assert judge(own(False), [], quorum_now(POLICY, 1)) == own(False)
    # Still a quorum of 2 with two alive: one vantage point's failure alone does not count.
    outvoted = judge(own(False), [Vote(node="b", ok=True, seq=3)], quorum_now(POLICY, 2))
    assert outvoted.ok and outvoted.quorum == 2


def history(probe: Probe) -> list[object]:
    return [
        ServiceRegistered(seq=1, ts=90.0, service="web", policy=POLICY),
        seen("b", False, ts=99.5, seq=2),
        seen("c", True, ts=99.6, seq=3),
        msgspec.structs.replace(probe, seq=4),
    ]


def verify(events: list[object]) -> Verifier:
    verifier = Verifier()
    for event in events:
        verifier.feed(event)  # type: ignore[arg-type]
    verifier.finish()
    return verifier


def test_verify_recounts_the_votes_of_a_recorded_probe():
    others = votes_of({"b": seen("b", False, 99.5, 2), "c": seen("c", True, 99.6, 3)},
                      at=100.0, window=vote_window(POLICY), besides="a")  # fmt: skip
    judged = judge(own(False), others, POLICY.quorum)
    assert not judged.ok  # a and b: two of three
    # What the state machine decides on it, as recorded after it.
    _, decisions = decided(ServiceState(name="web"), judged, POLICY, ServiceMachine())
    recorded = [msgspec.structs.replace(d, seq=5 + i) for i, d in enumerate(decisions)]
    assert isinstance(recorded[0], Transition) and recorded[0].dst == "repairing"
    good = verify([*history(judged), *recorded])
    assert good.divergence is None, good.divergence

    # A verdict its votes do not give, a vote naming another fact, a vote of a lapsed failure.
    forged = msgspec.structs.replace(judged, ok=True)
    moved = msgspec.structs.replace(judged, votes=(judged.votes[0], msgspec.structs.replace(
        judged.votes[1], seq=3)))  # fmt: skip
    late = msgspec.structs.replace(judged, ts=200.0)
    beyond = msgspec.structs.replace(judged, quorum=3)
    for bad, words in (
        (forged, "its votes give ok=False"), (moved, "names seq 3"),
        (late, "older than the window"), (beyond, "beyond the policy's 2"),
    ):  # fmt: skip
        divergence = verify(history(bad)).divergence
        assert divergence is not None and divergence.kind == "votes", bad
        assert words in divergence.message


def test_monitoring_goes_on_while_any_node_runs():
    projection = Projection()
    projection.apply_all([
        MonitorStarted(seq=1, ts=1.0, node="a"), MonitorStarted(seq=2, ts=2.0, node="b"),
        MonitorStopped(seq=3, ts=3.0, node="a"),
    ])  # fmt: skip
    assert projection.monitor.running and projection.monitor.nodes == ["b"]
    projection.apply(Admin(seq=4, ts=4.0, action="stop", node="b"))
    assert not projection.monitor.running and projection.monitor.nodes == []
    projection.apply(Admin(seq=5, ts=5.0, action="start", node="a"))
    assert projection.monitor.running and projection.monitor.nodes == ["a"]
    # A single monitor's log, without node names, reads as before.
    single = Projection()
    single.apply_all([MonitorStarted(seq=1, ts=1.0), MonitorStopped(seq=2, ts=2.0)])
    assert not single.monitor.running and single.monitor.stopped_at == 2.0
