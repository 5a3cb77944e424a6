"""Several `hbsm run --node` on one nats-server (docs/cluster.md): failover and load.

Every process is real: a nats-server from the lock (tests/support/nats_server.py), the nodes as
`python -m hbsm run --node NAME --store URL` (tests/cluster/support.py's `Node`), and one HTTP
target in a process of its own (tests/probes/servers.py's `SwitchableTarget`, run by this module
with --target), which answers /svc/<name> at once, 500 for the services it was told to break,
and counts the requests of each node (every node's URLs carry `?n=<node>`).

1. Failover. Three nodes, six services (two hashed to each), lease_ttl 3 s, check_interval 1 s.
   KILLS times: SIGKILL the node owning one service, then read the stream for the next
   `service.owned` of that service (a node taking it over) and the new owner's first `probe`
   of it (the first probe it decides on). Each figure is that event's `ts` (written by the
   node, time.time()) minus the kill's (time.time() here, just before the signal): one host,
   one clock. The killed node is started again and the bench waits until its services are
   back with it before the next kill. Goal: take-over within ttl + check_interval + 1 s.

2. Load. 1,000 healthy services at check_interval 1 s, first watched by one `hbsm run` (file
   log, no cluster: the baseline), then by three nodes on the stream (lease_ttl 6 s, the
   default), one after the other. Once every service is owned by the node it hashes to and a
   warm-up has passed, for SECONDS: each node's CPU (user + sys, /proc) and the probes the
   target answered for it. Then BROKEN services start answering 500 at once, and per service
   the delay from that moment (time.time() here) to the owner's first Transition out of
   healthy: by the Transition's `ts` (a decision carries the ts of the probe it answers, so
   this is break -> the owner's failing probe finished) and by the time the server stored it
   (the message's JetStream timestamp: break -> the decision is in the stream). Expected: under
   check_interval + the probe's latency (+ the flush, for the stored time). Beside it, the gap
   between the owner's last passing probe and the failing one: a node that fell behind and
   skipped a round shows there. The owners' recorded probe latency is compared with the single
   monitor's (the target answers at once: it is the monitors' own delay).

Figures are compared with the single monitor measured in the same run, and with the goals
above; the machine is shared, so the CPU the rest of the machine used meanwhile is noted
(/proc/stat minus our processes). Benchmarks report; they never assert.

    python -m tests.bench.bench_cluster [--part failover|load] [--seconds S] [--kills N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats

from hbsm.cluster.placement import preferred_node
from hbsm.events import Event, OpaqueEvent, Probe, ServiceOwned, Transition
from hbsm.log import LogError, read_history
from hbsm.log.jetstream_read import JetStreamReader
from tests.bench.bench_monitor import percentile
from tests.bench.context import Context
from tests.bench.procstat import cpu_seconds, machine_busy_seconds
from tests.bench.results import Record, Results
from tests.cluster.support import Node
from tests.probes.servers import SwitchableTarget, _SwitchingConnection
from tests.support.nats_server import NatsServer
from tests.support.net import free_port

__all__ = ["main", "run"]

NODES = ("n1", "n2", "n3")
INTERVAL = 1.0
# Failover
FAILOVER_TTL = 3.0
SERVICES_PER_NODE = 2
KILLS = 5
# Load
SERVICES = 1_000
LOAD_TTL = 6.0  # [cluster] lease_ttl's default
SECONDS = 30.0
WARMUP = 5.0
BROKEN = 20
SLOW = 90.0  # deadlines: only a hang (or a machine far too busy) reaches them
ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

T = TypeVar("T")


def say(text: str) -> None:
    print(f"  cluster: {text}", file=sys.stderr, flush=True)


# --- the target, in a process of its own ---------------------------------------------------


class _CountingConnection(_SwitchingConnection):
    """As `SwitchableTarget` answers, counting each request by the node that made it."""

    def _answer(self, target: str) -> None:
        counts = self.target.by_node  # type: ignore[attr-defined]
        node = target.partition("?n=")[2]
        counts[node] = counts.get(node, 0) + 1
        super()._answer(target)


class _CountingTarget(SwitchableTarget):
    connection = _CountingConnection

    def __init__(self) -> None:
        super().__init__()
        self.by_node: dict[str, int] = {}


def serve_target() -> None:
    """The target's process: prints its port, then obeys stdin until it closes:
    `break NAME...` (those answer 500 from now on; replies `ok`) and `counts` (replies the
    requests per node so far, JSON)."""
    target = _CountingTarget().start()
    print(target.port, flush=True)
    for line in sys.stdin:
        command, *names = line.split()
        if command == "break":
            for name in names:
                target.modes[name] = "/status/500"
            print("ok", flush=True)
        elif command == "counts":
            # dict() copies in one step under the GIL while the server thread counts on.
            print(json.dumps(dict(target.by_node)), flush=True)
    target.stop()


class Target:
    """The parent's handle on the target process."""

    def __enter__(self) -> Target:
        self.process = subprocess.Popen(
            [PY, "-m", "tests.bench.bench_cluster", "--target"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.port = int(self._line())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the target exits when its stdin closes
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the target exited {self.process.poll()}")
        return line

    def _ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._line()

    def url(self, service: str, node: str) -> str:
        return f"http://127.0.0.1:{self.port}/svc/{service}?n={node}"

    def break_(self, names: Iterable[str]) -> None:
        self._ask("break " + " ".join(names))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = json.loads(self._ask("counts"))
        return counts

    @property
    def pid(self) -> int:
        return self.process.pid


# --- configurations and processes -------------------------------------------------------------


def _toml(value: Any) -> str:
    # JSON's strings, numbers and arrays are TOML too; tables become inline tables.
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(path: Path, node: str, services: list[str], target: Target, **top: Any) -> Path:
    """An hbsm.toml of `services`, probed at `target` as `node`. No service is ever repaired
    (max_retries far out of reach): a broken one stays degraded, with nothing else going on."""
    settings = {"check_interval": INTERVAL, "max_retries": 1_000_000, **top}
    lines = [f"{key} = {_toml(value)}" for key, value in settings.items()]
    log = {"path": str(path.parent / f"{node}-log" / "heartbeat.jsonl"), "level": "WARNING"}
    lines += ["", "[log]", *(f"{k} = {_toml(v)}" for k, v in log.items())]
    for name in services:
        table = {"name": name, "url": target.url(name, node), "probe": {"timeout": 5.0}}
        lines += ["", "[[services]]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


class Cluster:
    """The nodes NODES on the stream at `url`, each with its config in `workdir`."""

    def __init__(self, workdir: Path, url: str, services: list[str], target: Target,
                 ttl: float) -> None:  # fmt: skip
        self.workdir, self.url = workdir, url
        self.nodes: dict[str, Node] = {}
        try:
            for name in NODES:
                write_config(self.config(name), name, services, target,
                             cluster={"lease_ttl": ttl})  # fmt: skip
                self.start(name)
        except BaseException:
            self.__exit__()  # the nodes started so far
            raise

    def config(self, name: str) -> Path:
        return self.workdir / f"{name}.toml"

    def start(self, name: str) -> None:
        """Start node `name` (again, after a kill: same name, same config)."""
        self.nodes[name] = Node(name, self.config(name), self.url, self.workdir)

    @property
    def all(self) -> Iterable[Node]:
        return self.nodes.values()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        # SIGKILL, however the bench ended: nothing left running, and no wait for a clean stop.
        for node in self.nodes.values():
            node.kill()


@contextlib.contextmanager
def nats_server(workdir: Path) -> Iterator[NatsServer]:
    server = NatsServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()


def until(check: Callable[[], T | None], what: str, nodes: Iterable[Node] = (),
          timeout: float = SLOW, every: float = 0.2) -> T:  # fmt: skip
    """`check()`'s first truthy value; a node that exits meanwhile ends the bench, saying why."""
    deadline = time.monotonic() + timeout
    while True:
        for node in nodes:
            if node.proc.poll() is not None and not node.killed:
                raise RuntimeError(f"{node.name} exited {node.proc.returncode}: {node.output()}")
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


def hashed_to(node: str, count: int) -> list[str]:
    """`count` service names that `node` wins among NODES (placement is a hash: found by
    trying names in turn)."""
    names = (f"svc-{n}" for n in itertools.count())
    return list(itertools.islice((n for n in names if preferred_node(n, NODES) == node), count))


# --- the stream, read as it grows ---------------------------------------------------------------


class Tail:
    """The stream's events, read in instalments: `more()` gives those written since the last
    call. Keeps who owns each service now (the last `service.owned`), and when each was last
    seen passing by its owner (the ts of its last passing `probe`)."""

    def __init__(self, url: str) -> None:
        self.reader = until(lambda: _open_reader(url), "the stream made by a node")
        self.last_seq = 0
        self.owners: dict[str, str] = {}
        self.passed: dict[str, float] = {}

    def more(self) -> list[Event | OpaqueEvent]:
        events = self.reader.read(self.last_seq)
        if events:
            self.last_seq = events[-1].seq
        for event in events:
            if isinstance(event, ServiceOwned):
                self.owners[event.service] = event.node
            elif isinstance(event, Probe) and event.ok:
                self.passed[event.service] = event.ts
        return events

    def placed(self, services: Iterable[str], nodes: Iterable[str] = NODES) -> bool:
        """Whether each of `services` is owned by the node it hashes to among `nodes`."""
        self.more()
        live = list(nodes)
        return all(self.owners.get(n) == preferred_node(n, live) for n in services)

    def close(self) -> None:
        self.reader.close()


def _open_reader(url: str) -> JetStreamReader | None:
    with contextlib.suppress(LogError):  # no stream yet: no node has started writing
        return JetStreamReader.open(url, timeout=10)
    return None


def _first(events: list[Event | OpaqueEvent], match: Callable[[Any], bool]) -> Any:
    return next((e for e in events if match(e)), None)


# --- 1. failover ------------------------------------------------------------------------------


@dataclass
class Takeover:
    killed: str
    by: str
    owned_s: float  # the kill -> the new owner's service.owned (its ts)
    probe_s: float  # the kill -> the new owner's first probe of the service (its ts)
    rejoin_s: float  # the killed node started again -> its services back with it


def failover(workdir: Path, target: Target, kills: int = KILLS) -> list[Takeover]:
    shares = {node: hashed_to(node, SERVICES_PER_NODE) for node in NODES}
    services = sorted(itertools.chain.from_iterable(shares.values()))
    workdir.mkdir(parents=True)
    with (
        nats_server(workdir / "nats") as server,
        Cluster(workdir, server.url, services, target, FAILOVER_TTL) as cluster,
    ):
        tail = Tail(server.url)
        try:
            until(lambda: tail.placed(services), "each service with its node", cluster.all)
            say(f"failover: {len(services)} services placed on {len(NODES)} nodes")
            out = []
            for i in range(kills):
                killed = NODES[i % len(NODES)]
                o = _kill_owner(cluster, killed, shares[killed][0], services, tail)
                say(f"failover {i + 1}/{kills}: {killed} killed, taken over by {o.by} in "
                    f"{o.owned_s:.2f} s (its first probe at {o.probe_s:.2f} s); {killed} back "
                    f"with its services {o.rejoin_s:.1f} s after its restart")  # fmt: skip
                out.append(o)
            return out
        finally:
            tail.close()


def _kill_owner(cluster: Cluster, killed: str, service: str, services: list[str],
                tail: Tail) -> Takeover:  # fmt: skip
    """SIGKILL `killed` (which owns `service`), time the take-over from the stream, then start
    it again and wait until every service is back where it hashes."""
    tail.more()
    seen: list[Event | OpaqueEvent] = []

    def event(match: Callable[[Any], bool]) -> Any:
        seen.extend(tail.more())
        return _first(seen, match)

    killed_at = time.time()
    cluster.nodes[killed].kill()
    owned = until(lambda: event(lambda e: isinstance(e, ServiceOwned) and e.service == service
                                and e.node != killed), f"{service} taken over",
                  cluster.all, every=0.05)  # fmt: skip
    probe = until(lambda: event(lambda e: isinstance(e, Probe) and e.service == service
                                and e.node == owned.node and e.seq > owned.seq),
                  f"{owned.node}'s first probe of {service}", cluster.all, every=0.05)  # fmt: skip

    started = time.monotonic()
    cluster.start(killed)
    until(lambda: tail.placed(services), f"{killed} back with its services", cluster.all)
    return Takeover(killed, owned.node, owned.ts - killed_at, probe.ts - killed_at,
                    time.monotonic() - started)  # fmt: skip


def report_failover(runs: list[Takeover], results: Results) -> None:
    goal = FAILOVER_TTL + INTERVAL + 1.0
    owned = [r.owned_s for r in runs]
    probes = [r.probe_s for r in runs]
    every = ", ".join(f"{r.owned_s:.2f}" for r in runs)
    add = results.add
    add(Record(
        f"cluster failover: SIGKILL of the owner -> service.owned by another node, median "
        f"(lease_ttl {FAILOVER_TTL:g} s, check_interval {INTERVAL:g} s)",
        statistics.median(owned), "s", baseline=goal, ratio=statistics.median(owned) / goal,
        goal=f"<= {goal:g} s (ttl + interval + 1 s)", met=statistics.median(owned) <= goal,
        bench="cluster", note=f"{len(runs)} kills, each: {every} s; 3 nodes, one nats-server",
    ))  # fmt: skip
    add(Record(
        "cluster failover: SIGKILL of the owner -> service.owned, max",
        max(owned), "s", baseline=goal, ratio=max(owned) / goal,
        goal=f"<= {goal:g} s", met=max(owned) <= goal, bench="cluster",
    ))  # fmt: skip
    add(Record(
        "cluster failover: SIGKILL of the owner -> the new owner's first probe, median",
        statistics.median(probes), "s", bench="cluster",
        note=(f"max {max(probes):.2f} s; the first probe the new owner decides on; the killed "
              f"node back with its services after {statistics.median(r.rejoin_s for r in runs):.1f}"
              " s (median, from its start)"),
    ))  # fmt: skip


# --- 2. load ----------------------------------------------------------------------------------


@dataclass
class Window:
    """What each process did over `seconds`: CPU seconds, and probes answered by the target
    (for the monitors), keyed by name; `others` is CPU the rest of the machine used."""

    seconds: float
    cpu: dict[str, float]
    probes: dict[str, int]
    others: float
    load: float
    span: tuple[float, float]  # its start and end by time.time(), the events' clock
    # The recorded latency of the probes decided on in the window (ms): the target answers at
    # once, so this is the monitor's own delay in seeing an answer (its loop, the machine).
    latencies: list[float] = field(default_factory=list)

    def latencies_of(self, events: Iterable[Event | OpaqueEvent]) -> None:
        t0, t1 = self.span
        self.latencies = [e.latency_ms for e in events if isinstance(e, Probe)
                          and t0 <= e.ts < t1 and e.latency_ms is not None]  # fmt: skip

    def rate(self, name: str) -> float:
        return self.probes[name] / self.seconds

    def cpu_per_probe(self, name: str) -> float:
        return self.cpu[name] / max(self.probes[name], 1)

    def core(self, name: str) -> float:
        return self.cpu[name] / self.seconds


@dataclass
class _Snapshot:
    cpu: dict[str, float]  # per process
    counts: dict[str, int]  # requests per node, at the target
    busy: float  # the whole machine's busy CPU
    mono: float
    wall: float  # time.time(), the events' clock


def _snapshot(pids: dict[str, int], target: Target) -> _Snapshot:
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    return _Snapshot(cpu, target.counts(), machine_busy_seconds(), time.perf_counter(),
                     time.time())  # fmt: skip


def measure(pids: dict[str, int], target: Target, seconds: float) -> Window:
    a = _snapshot(pids, target)
    time.sleep(seconds)
    b = _snapshot(pids, target)
    cpu = {name: b.cpu[name] - a.cpu[name] for name in pids}
    probes = {name: b.counts.get(name, 0) - a.counts.get(name, 0) for name in b.counts}
    # The bench's own process polls little while it sleeps: counted among the others.
    others = max(b.busy - a.busy - sum(cpu.values()), 0.0)
    return Window(b.mono - a.mono, cpu, probes, others, os.getloadavg()[0], (a.wall, b.wall))


def probing(target: Target, names: Iterable[str], rate: float) -> bool:
    """Whether each of `names` has made probes at >= 90% of `rate` over the last second."""
    before = target.counts()
    time.sleep(1.0)
    after = target.counts()
    return all(after.get(n, 0) - before.get(n, 0) >= 0.9 * rate for n in names)


def solo(workdir: Path, target: Target, services: list[str], seconds: float) -> Window:
    """The baseline: one `hbsm run` with a file log watching the same services."""
    config = write_config(workdir / "solo.toml", "solo", services, target)
    argv = [PY, "-m", "hbsm", "run", "--config", str(config), "--port", str(free_port())]
    with (workdir / "solo.err").open("ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, cwd=workdir)  # fmt: skip
    try:
        until(lambda: _alive(proc) and probing(target, ["solo"], SERVICES / INTERVAL),
              "the single monitor probing every service each second", every=0.0)  # fmt: skip
        time.sleep(WARMUP)
        say(f"single monitor: measuring {seconds:g} s")
        window = measure({"solo": proc.pid, "target": target.pid}, target, seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    window.latencies_of(read_history(workdir / "solo-log" / "heartbeat.jsonl"))
    return window


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the single hbsm run exited {proc.returncode}: see solo.err")
    return True


@dataclass
class Lag:
    service: str
    by_ts: float  # break -> the Transition's ts (the owner's failing probe)
    stored: float  # break -> the Transition stored in the stream (server timestamp)
    # The owner's last passing probe -> the failing one decided on: the interval plus the
    # probes' latencies when the schedule holds; more when the node fell behind and skipped.
    gap: float


@dataclass
class LoadRun:
    solo: Window
    nodes: Window
    lags: list[Lag] = field(default_factory=list)
    placed_s: float = 0.0


def load(workdir: Path, target: Target, seconds: float = SECONDS) -> LoadRun:
    services = [f"svc-{i:04d}" for i in range(SERVICES)]
    workdir.mkdir(parents=True)
    say(f"load: a single monitor, {SERVICES:,} services every {INTERVAL:g} s (baseline)")
    alone = solo(workdir, target, services, seconds)
    say(f"load: {len(NODES)} nodes, {SERVICES:,} services every {INTERVAL:g} s")
    with nats_server(workdir / "nats") as server:
        started = time.monotonic()
        with Cluster(workdir, server.url, services, target, LOAD_TTL) as cluster:
            tail = Tail(server.url)
            try:
                until(lambda: tail.placed(services), "every service with the node it hashes to",
                      cluster.all, timeout=180, every=2.0)  # fmt: skip
                placed = time.monotonic() - started
                say(f"load: placed after {placed:.1f} s; warm-up {WARMUP:g} s, then {seconds:g} s")
                time.sleep(WARMUP)
                pids = {**{n: node.pid for n, node in cluster.nodes.items()},
                        "target": target.pid, "nats-server": _pid(server)}  # fmt: skip
                window = measure(pids, target, seconds)
                window.latencies_of(tail.more())
                say(f"load: breaking {BROKEN} services")
                lags = break_and_wait(server.url, tail, target, services[:BROKEN], cluster)
            finally:
                tail.close()
    return LoadRun(alone, window, lags, placed)


def _pid(server: NatsServer) -> int:
    assert server.process is not None
    return server.process.pid


def break_and_wait(url: str, tail: Tail, target: Target, names: list[str],
                   cluster: Cluster) -> list[Lag]:  # fmt: skip
    """Break `names` at once; per service, the delay to its owner's first Transition out of
    healthy (by its ts, and by when the stream stored it)."""
    tail.more()
    broke_at = time.time()
    target.break_(names)
    wanted = set(names)
    found: dict[str, Transition] = {}

    gaps: dict[str, float] = {}

    def all_decided() -> bool:
        for e in tail.more():
            first = isinstance(e, Transition) and e.service in wanted and e.service not in found
            if first and e.src == "healthy":
                found[e.service] = e
                gaps[e.service] = e.ts - tail.passed[e.service]
        return len(found) == len(wanted)

    until(all_decided, f"a transition of each of the {len(names)} broken services",
          cluster.all, timeout=60, every=0.5)  # fmt: skip
    stored = asyncio.run(_stored_at(url, [found[n].seq for n in names]))
    return [Lag(n, found[n].ts - broke_at, at - broke_at, gaps[n])
            for n, at in zip(names, stored, strict=True)]  # fmt: skip


async def _stored_at(url: str, seqs: list[int]) -> list[float]:
    """When the server stored each message (its JetStream timestamp, this host's clock)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=10)
        out = []
        for seq in seqs:
            msg = await js.get_msg("HBSM", seq)
            assert msg.time is not None
            out.append(msg.time.timestamp())
        return out
    finally:
        await nc.close()


def report_load(m: LoadRun, results: Results) -> None:
    base, win = m.solo, m.nodes
    base_us = base.cpu_per_probe("solo") * 1e6
    add = results.add
    add(Record(
        f"single hbsm run, {SERVICES:,} services every {INTERVAL:g} s: CPU per probe",
        base_us, "us", bench="cluster",
        note=(f"file log; {base.rate('solo'):,.0f} probes/s, {base.core('solo'):.0%} of a core "
              f"over {base.seconds:.0f} s; target {base.core('target'):.0%}; rest of the "
              f"machine {base.others / base.seconds:.0%} of a core, load {base.load:.1f}"),
    ))  # fmt: skip
    for name in NODES:
        us = win.cpu_per_probe(name) * 1e6
        add(Record(
            f"cluster node {name} of {len(NODES)}, {SERVICES:,} services every {INTERVAL:g} s: "
            "CPU per probe", us, "us", baseline=base_us, ratio=us / base_us, bench="cluster",
            note=f"{win.core(name):.0%} of a core over {win.seconds:.0f} s; baseline: the single "
                 "hbsm run above",
        ))  # fmt: skip
    for name in NODES:
        add(Record(
            f"cluster node {name}: probes/s made (answered by the target)", win.rate(name),
            "probes/s", baseline=SERVICES / INTERVAL, ratio=win.rate(name) / (SERVICES / INTERVAL),
            bench="cluster",
        ))  # fmt: skip
    total = sum(win.core(n) for n in NODES)
    add(Record(
        f"cluster: CPU of the {len(NODES)} nodes together, % of one core", total * 100, "%",
        baseline=base.core("solo") * 100, ratio=total / base.core("solo"), bench="cluster",
        note=(f"nats-server {win.core('nats-server'):.0%}, target {win.core('target'):.0%}; "
              f"rest of the machine {win.others / win.seconds:.0%} of a core, load "
              f"{win.load:.1f} ({os.cpu_count()} cores); placed {m.placed_s:.0f} s after start"),
    ))  # fmt: skip
    add(Record(
        "recorded probe latency p99, the owners' probes (the target answers at once)",
        percentile(win.latencies, 99), "ms", baseline=percentile(base.latencies, 99),
        ratio=percentile(win.latencies, 99) / percentile(base.latencies, 99), bench="cluster",
        note=(f"p50 {percentile(win.latencies, 50):.1f} ms over {len(win.latencies):,} probes; "
              f"baseline: the single hbsm run's, p50 {percentile(base.latencies, 50):.1f} ms: "
              "the monitors' own delay in seeing an answer"),
    ))  # fmt: skip
    _report_lags(m.lags, percentile(win.latencies, 99), results)


def _report_lags(lags: list[Lag], latency_p99_ms: float, results: Results) -> None:
    """The break -> decision lags, against the bound a healthy schedule gives: the break lands
    anywhere in an interval, then the owner's next probe takes its latency (the owners' p99
    in the window)."""
    bound = INTERVAL + latency_p99_ms / 1e3
    by_ts = [lag.by_ts for lag in lags]
    gaps = [lag.gap for lag in lags]
    stored = [lag.stored for lag in lags]
    write = [lag.stored - lag.by_ts for lag in lags]
    p99 = percentile(by_ts, 99)
    results.add(Record(
        "cluster decision lag, break -> the owner's failing probe it decides on "
        "(Transition ts), p99", p99, "s", baseline=INTERVAL, ratio=p99 / INTERVAL,
        goal=f"<= {bound:.2f} s (interval + p99 latency)", met=p99 <= bound, bench="cluster",
        note=(f"{len(lags)} services broken at once; p50 {percentile(by_ts, 50):.3f} s, max "
              f"{max(by_ts):.3f} s; baseline: check_interval; the owner's last passing probe -> "
              f"this one: p50 {percentile(gaps, 50):.3f} s, max {max(gaps):.3f} s"),
    ))  # fmt: skip
    p99 = percentile(stored, 99)
    results.add(Record(
        "cluster decision lag, break -> that decision stored in the stream (server time), p99",
        p99, "s", baseline=INTERVAL, ratio=p99 / INTERVAL, bench="cluster",
        note=(f"p50 {percentile(stored, 50):.3f} s, max {max(stored):.3f} s; of which the "
              f"owner's probe -> stored: p50 {percentile(write, 50) * 1e3:.0f} ms, p99 "
              f"{percentile(write, 99) * 1e3:.0f} ms (the flush, every 0.2 s, and the publish)"),
    ))  # fmt: skip


# --- entry points -----------------------------------------------------------------------------


def run(ctx: Context) -> None:
    bench(ctx.workdir / "cluster", ctx.results)


def bench(workdir: Path, results: Results, parts: Iterable[str] = ("failover", "load"),
          seconds: float = SECONDS, kills: int = KILLS) -> None:  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    with Target() as target:
        if "failover" in parts:
            report_failover(failover(workdir / "failover", target, kills), results)
        if "load" in parts:
            report_load(load(workdir / "load", target, seconds), results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_cluster")
    parser.add_argument("--part", action="append", choices=["failover", "load"])
    parser.add_argument("--seconds", type=float, default=SECONDS, help="the load's measurement")
    parser.add_argument("--kills", type=int, default=KILLS, help="owners killed, one by one")
    parser.add_argument("--target", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.target:
        serve_target()
        return 0
    results = Results()
    with tempfile.TemporaryDirectory(prefix="hbsm-bench-cluster-") as tmp:
        bench(Path(tmp), results, args.part or ("failover", "load"), args.seconds, args.kills)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
