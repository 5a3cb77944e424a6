"""Several `hbsm run --node` on one stream of a real nats-server: the services spread over the
nodes, each fault repaired once by its owner; the owner killed in the middle of a restart and
another node finishing the work without a second restart; a node cut off from NATS whose stale
decisions are refused; a vantage point with a broken network that restarts nothing under
`quorum = 2`. Every history ends verified (`hbsm replay --verify`'s Verifier) with no event lost
or written twice."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor.support import http_get, write_toml_config
from support.nats_server import NatsServer
from support.tcp_proxy import TcpProxy
from support.waiting import wait_for_sync

from hbsm.cluster.placement import preferred_node
from hbsm.events import (
    Event,
    OpaqueEvent,
    Probe,
    ProbeSeen,
    RestartFinished,
    RestartStarted,
    ServiceOwned,
    Transition,
)
from hbsm.replay.verify import Verifier

from .support import Node, Services, fold, history, http_post, takeovers

TTL = 2.0
# Probes every half second; repaired after two failures by a restart, with a cooldown long
# enough that a second restart inside it would show.
# A timeout only diagnoses: on a loaded machine a probe may time out whatever the service does,
# and what these tests count is restarts of the faults they inject (HTTP 500, connections reset).
THRESHOLDS: dict[str, Any] = {
    "check_interval": 0.5, "max_retries": 2, "restart_cooldown": 8.0, "cooldown_max": 8.0,
    "start_grace": 0.0, "ladder": ["diagnose", "restart"], "repair_backoff": 0.5,
    "repair_backoff_max": 1.0, "ladders": {"timeout": ["diagnose"]},
}  # fmt: skip
SLOW = 60.0  # deadlines: only a hang reaches them


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()


def config(tmp_path: Path, name: str, tables: list[dict[str, Any]], **top: Any) -> Path:
    return write_toml_config(tmp_path / f"{name}.toml", tables,
                             log={"path": str(tmp_path / "out" / name / "x.jsonl")},
                             cluster={"lease_ttl": TTL}, **{**THRESHOLDS, **top})  # fmt: skip


def named_for(node: str, nodes: list[str]) -> str:
    """A service name that `node` wins among `nodes` (placement is a hash: found by trying)."""
    names = (f"svc-{n}" for n in itertools.count())
    return next(name for name in names if preferred_node(name, nodes) == node)


def until(nodes: list[Node], check: Any, what: str) -> Any:
    """`check()`'s first truthy value; a node that exits meanwhile fails the test, saying why."""

    def checked() -> Any:
        for node in nodes:
            if node.proc.poll() is not None and not node.killed:
                raise AssertionError(f"{node.name} exited {node.proc.returncode}: {node.output()}")
        return check()

    # Every quarter second: each check reads the whole stream back.
    return wait_for_sync(checked, what, SLOW, every=0.25)


def verified(events: list[Event | OpaqueEvent]) -> Verifier:
    verifier = Verifier()
    for event in events:
        verifier.feed(event)
    verifier.finish()
    assert verifier.divergence is None, verifier.divergence.message
    return verifier


def no_event_twice(events: list[Event | OpaqueEvent]) -> None:
    """Seqs are the stream's, 1..n; no event was written twice (a retried publish)."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    twice = Counter((type(e).__name__, e.ts, getattr(e, "service", None),
                     getattr(e, "node", None)) for e in events)  # fmt: skip
    assert [key for key, n in twice.items() if n > 1] == []


def owners_now(url: str) -> dict[str, str | None]:
    return {name: view.owner for name, view in fold(url).services.items()}


def owner_of(url: str, name: str) -> str | None:
    view = fold(url).services.get(name)
    return view.owner if view is not None else None


def healthy(url: str, names: list[str]) -> bool:
    views = fold(url).services
    return all(n in views and views[n].fsm.state == "healthy" for n in names)


@pytest.mark.parametrize("count", [2, 3])
def test_nodes_share_fifty_services_and_each_fault_is_repaired_once(
    tmp_path: Path, server: NatsServer, services: Services, nodes: list[Node], count: int
) -> None:
    names_of_nodes = [f"n{i + 1}" for i in range(count)]
    names = [f"svc-{i}" for i in range(50)]
    tables = [services.table(n) for n in names]
    for node in names_of_nodes:
        nodes.append(Node(node, config(tmp_path, node, tables), server.url, tmp_path))

    # Where the hash puts them: each node its share. The first node to start takes them all,
    # and hands the other's share over once it has joined.
    owners = {n: preferred_node(n, names_of_nodes) for n in names}
    assert set(owners.values()) == set(names_of_nodes)

    def spread() -> bool:
        return owners_now(server.url) == owners and healthy(server.url, names)

    until(nodes, spread, "50 services healthy, each owned by the node it hashes to")

    # Every node serves the whole cluster's log: each service's owner and vantage points (as
    # soon as it has folded what the test has read: a node's follower may be a moment behind).
    def served(node: Node) -> bool:
        status, text = http_get(f"http://127.0.0.1:{node.api_port}/health/detailed")
        body = json.loads(text).get("services", {}) if status == 200 else {}
        return {n: body.get(n, {}).get("owner") for n in names} == owners and set(
            body[names[0]]["vantage_points"]) == set(names_of_nodes)  # fmt: skip

    for node in nodes:
        until(
            nodes, lambda node=node: served(node), f"{node.name} serves owners and vantage points"
        )
    # An operator's action on a service goes to its owner; another node says which one.
    name = names[0]
    owner, other, *_ = sorted(nodes, key=lambda n: n.name != owners[name])
    for node, expected in ((other, 409), (owner, 200)):
        status, text = http_post(f"http://127.0.0.1:{node.api_port}/admin/service/{name}/probe-now")
        assert status == expected, text
    assert f"decided by node {owner.name}" in http_post(
        f"http://127.0.0.1:{other.api_port}/admin/service/{name}/probe-now")[1]  # fmt: skip

    broken = [names[3], names[17], names[41]]
    for name in broken:
        services.break_(name)
    until(nodes, lambda: len(services.restarts()) >= 3 and healthy(server.url, names),
                  "the three broken services restarted and healthy again")  # fmt: skip
    # An operator stops one node's heartbeat: it hands every service to the others, which
    # monitors on (for every node's API); started again, it takes its share back.
    n1 = nodes[0]
    assert http_post(f"http://127.0.0.1:{n1.api_port}/admin/heartbeat/stop")[0] == 200
    until(nodes, lambda: "n1" not in set(owners_now(server.url).values()),
          "the others own them all")  # fmt: skip
    status, text = http_get(f"http://127.0.0.1:{n1.api_port}/health/detailed")
    assert json.loads(text)["monitoring"]["running"], text
    assert http_post(f"http://127.0.0.1:{n1.api_port}/admin/heartbeat/start")[0] == 200
    until(nodes, lambda: owners_now(server.url) == owners, "n1 has its share back")
    for node in nodes:
        assert node.stop() == 0, node.output()

    events = history(server.url)
    no_event_twice(events)
    verified(events)
    # Each fault repaired exactly once, by its owner's restart command.
    assert sorted(n for n, _ in services.restarts()) == sorted(broken)
    by_pid = {node.pid: node.name for node in nodes}
    assert {n: by_pid[pid] for n, pid in services.restarts()} == {n: owners[n] for n in broken}
    started = [e.service for e in events if isinstance(e, RestartStarted)]
    assert sorted(started) == sorted(broken)
    # Every node probed every service: the non-owners' successes are recorded once each.
    seen = {(e.service, e.node) for e in events if isinstance(e, ProbeSeen)}
    assert seen >= {(n, node) for n in names for node in names_of_nodes if node != owners[n]}


def test_the_owner_killed_mid_restart_is_taken_over_without_a_second_restart(
    tmp_path: Path, server: NatsServer, services: Services, nodes: list[Node]
) -> None:
    trio = ["n1", "n2", "n3"]
    victim = named_for("n1", trio)
    others = [named_for(n, trio) for n in ("n2", "n3")]
    # The restart takes 3 s: long enough to kill its node in the middle of it.
    tables = [services.table(victim, delay=3.0), *(services.table(n) for n in others)]
    for node in trio:
        nodes.append(Node(node, config(tmp_path, node, tables), server.url, tmp_path))
    ready = "n1 owns the victim, all healthy"
    until(nodes, lambda: owner_of(server.url, victim) == "n1"
          and healthy(server.url, [victim, *others]), ready)  # fmt: skip

    services.break_(victim)
    until(nodes, lambda: any(isinstance(e, RestartStarted) and e.service == victim
                              for e in history(server.url)), "the restart started")  # fmt: skip
    nodes_by_name = {node.name: node for node in nodes}
    nodes[0].kill()  # SIGKILL, its restart command still running

    def taken_over() -> ServiceOwned | None:
        owned = takeovers(history(server.url), victim)
        return owned[-1] if owned and owned[-1].node != "n1" else None

    new = until(nodes, taken_over, "another node took the victim over")
    assert new.previous == "n1" and new.node == preferred_node(victim, ["n2", "n3"])
    until(nodes, lambda: healthy(server.url, [victim, *others]), "all healthy again")
    for node in nodes[1:]:
        assert node.stop() == 0, node.output()

    events = history(server.url)
    no_event_twice(events)
    verified(events)
    # hbsm's commands die with it: the killed node's restart never ran. The new owner cannot
    # know that; it counts the restart as done, and restarts only once the cooldown has run
    # out since that first decision: one restart carried out, none inside the cooldown.
    assert services.restarts() == [(victim, nodes_by_name[new.node].pid)]
    decided = [e for e in events if isinstance(e, RestartStarted)]
    assert [e.service for e in decided] == [victim, victim]
    assert decided[1].ts - decided[0].ts >= THRESHOLDS["restart_cooldown"]
    finished = [e for e in events if isinstance(e, RestartFinished) and e.service == victim]
    assert finished[0].interrupted and finished[0].seq > new.seq  # taken up by the new owner


def test_a_node_cut_off_from_nats_has_its_stale_decisions_refused(
    tmp_path: Path, server: NatsServer, services: Services, nodes: list[Node]
) -> None:
    pair = ["n1", "n2"]
    name = named_for("n1", pair)
    tables = [services.table(name)]
    proxy = TcpProxy(("127.0.0.1", server.port)).start()
    try:
        via_proxy = f"nats://127.0.0.1:{proxy.port}"
        nodes.append(Node("n1", config(tmp_path, "n1", tables), via_proxy, tmp_path))
        nodes.append(Node("n2", config(tmp_path, "n2", tables), server.url, tmp_path))
        until(nodes, lambda: owner_of(server.url, name) == "n1"
              and healthy(server.url, [name]), "n1 owns it, healthy")  # fmt: skip

        cut_at = len(history(server.url))
        proxy.cut()  # n1 believes it owns the service; its lease runs out
        until(nodes, lambda: owner_of(server.url, name) == "n2", "n2 took it over")
        proxy.mend()
        until(nodes, lambda: "no longer decided here" in nodes[0].output(),
              "n1 learnt that it lost the service")  # fmt: skip
        until(nodes, lambda: owner_of(server.url, name) == "n1",
              "n1 back in the cluster, and the service back with it")  # fmt: skip
        for node in nodes:
            assert node.stop() == 0, node.output()
    finally:
        proxy.stop()

    events = history(server.url)
    no_event_twice(events)
    verified(events)
    # After the cut: n2 took it over, then n1 had it back (and n2 once more as n1 stopped).
    owned = [o for o in takeovers(events, name) if o.seq > cut_at]
    assert [o.node for o in owned][:2] == ["n2", "n1"]
    # Between n2's take-over and n1's return, nothing of n1's about the service got in.
    between = [e for e in events if owned[0].seq < e.seq < owned[1].seq]
    assert not [e for e in between if isinstance(e, Probe) and e.service == name
                and e.node == "n1"]  # fmt: skip


def test_a_vantage_point_whose_network_resets_restarts_nothing_under_quorum_2(
    tmp_path: Path, server: NatsServer, services: Services, nodes: list[Node]
) -> None:
    trio = ["n1", "n2", "n3"]
    name = named_for("n3", trio)  # owned by the node whose network breaks
    proxy = TcpProxy(("127.0.0.1", services.port)).start()
    try:
        for node in trio:
            # n3 reaches the service through the proxy; the others directly.
            port = proxy.port if node == "n3" else None
            tables = [services.table(name, port=port, quorum=2)]
            nodes.append(Node(node, config(tmp_path, node, tables), server.url, tmp_path))
        until(nodes, lambda: owner_of(server.url, name) == "n3"
              and healthy(server.url, [name]), "n3 owns it, healthy")  # fmt: skip

        proxy.reject()  # n3's connections are reset; n1 and n2 still see it answer

        def outvoted() -> list[Probe]:
            return [e for e in history(server.url) if isinstance(e, Probe) and e.service == name
                    and e.node == "n3" and e.error not in (None, "timeout")]  # fmt: skip

        until(nodes, lambda: len(outvoted()) >= 5, "five probes of n3 failed, outvoted")
        probes = outvoted()
        # Each is the verdict of its votes (n3's own and the others' latest words, a failure
        # among them lapsing after two intervals): failing only if another saw it fail too (a
        # timeout on a loaded machine, say); the rest outvoted, saying so.
        assert all(len(e.votes) >= 2 and e.votes[0].node == "n3" for e in probes)
        assert all(e.ok == (sum(not v.ok for v in e.votes) < 2) for e in probes)
        passing = [e for e in probes if e.ok]
        assert passing and "quorum 2" in passing[-1].detail
        assert services.restarts() == []
        assert not [e for e in history(server.url) if isinstance(e, RestartStarted)]

        services.break_(name)  # now everyone sees it fail: two of three agree
        until(nodes, lambda: services.restarts(), "restarted once the quorum agreed")
        for node in nodes:
            assert node.stop() == 0, node.output()
    finally:
        proxy.stop()

    events = history(server.url)
    no_event_twice(events)
    verified(events)
    assert [n for n, _ in services.restarts()] == [name]
    decided = next(e for e in events if isinstance(e, Transition) and e.service == name
                   and e.dst != "healthy")  # fmt: skip
    failing = [e for e in events if isinstance(e, Probe) and e.service == name and not e.ok]
    assert failing and failing[0].seq < decided.seq
    assert sum(1 for v in failing[0].votes if not v.ok) >= 2
