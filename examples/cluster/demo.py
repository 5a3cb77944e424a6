"""Three hbsm nodes sharing one NATS JetStream stream: faults repaired once, a node killed.

    python examples/cluster/demo.py [--nodes 3] [--services 12] [--faults 4] [--keep DIR]

Starts a nats-server, an HTTP server with the services, and `hbsm run --node nK` for each
node, all on loopback. Then breaks services one after another; the owner of the first one is
SIGKILLed in the middle of its restart, its services are taken over by the nodes left, and
once every fault is repaired it is started again and takes its share back. Finally the nodes
are stopped, the stream exported and verified (`hbsm replay --verify`), and a report says, per
fault, who owned it and who repaired it with how many restarts (counted by the restart command
itself: exactly one each).

Exit codes: 0 every fault repaired by exactly one restart, the take-over seen and the stream
verified; 1 not (the report says what failed), or the demo could not run; 2 bad usage;
130 interrupted (every process stopped). Needs `just install` (hbsm with the nats extra).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processes import DemoError, Node, start_nats
from report import Fault, Kill, Ran, Report
from services import Services
from stream import Watch

from hbsm.cluster.placement import preferred_node
from hbsm.log import read_history

EXIT_FAILED = 1  # (2, bad usage: argparse's)
EXIT_INTERRUPTED = 130

# Small thresholds, so that a fault is seen in seconds: probed every second, repaired after
# two failures (agreed by two vantage points, with three nodes), a restart taking RESTART_TAKES
# seconds and none repeated within the cooldown.
THRESHOLDS: dict[str, Any] = {
    "check_interval": 1.0, "max_retries": 2, "ladder": ["diagnose", "restart"],
    "restart_cooldown": 10.0, "cooldown_max": 10.0, "start_grace": 0.0,
    "repair_backoff": 1.0, "repair_backoff_max": 2.0, "quorum": 2,
}  # fmt: skip
LEASE_TTL = 3.0  # a dead node's services move within this (and a lease round)
RESTART_TAKES = 2.0  # long enough to kill a node in the middle of a restart
FAULT_EVERY = 2.0  # seconds between two faults
DEADLINE = 120.0  # for anything the demo waits for: only a hang reaches it
POLL = 0.2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # cleans up as Ctrl-C does
    try:
        with contextlib.ExitStack() as cleanup:
            try:
                return Demo(args, workdir(args.keep, cleanup), cleanup).run()
            finally:
                # The clean-up must run to its end: a second Ctrl-C in the middle of it would
                # leave processes behind.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except KeyboardInterrupt:
        print("cluster demo: interrupted; every process stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DemoError as exc:
        print(f"cluster demo: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python examples/cluster/demo.py",
        description="hbsm nodes sharing one NATS JetStream stream: faults injected, the owner "
        "of one killed mid-restart; exit 0 iff every fault was repaired by exactly one restart "
        "and the stream verifies.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="hbsm nodes (default 3, at least 2)")
    parser.add_argument("--services", type=int, default=12, help="services (default 12)")
    parser.add_argument("--faults", type=int, default=4, help="faults to inject (default 4)")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="work in DIR, and keep it (default: a temporary one)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.nodes < 2:
        parser.error("--nodes: at least 2 (one to kill, one to take over)")
    if not 1 <= args.faults <= args.services:
        parser.error("--faults: at least 1, and at most --services")
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep: {args.keep} is not empty")
    return args


def workdir(keep: Path | None, cleanup: contextlib.ExitStack) -> Path:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return keep.resolve()
    return Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="hbsm-cluster-demo-")))


class Demo:
    """The demo's steps, in the order `run` takes them; every process it starts is stopped by
    `cleanup`, whatever happens."""

    def __init__(self, args: argparse.Namespace, work: Path, cleanup: contextlib.ExitStack):
        self.args = args
        self.work = work
        self.cleanup = cleanup
        self.started = time.time()
        self.names = [f"n{i}" for i in range(1, args.nodes + 1)]
        self.services = [f"svc-{i:02d}" for i in range(1, args.services + 1)]
        self.nodes: dict[str, Node] = {}
        self.node_of_pid: dict[int, str] = {}  # every node process, the killed one's too
        self.problems: list[str] = []
        # Two vantage points must agree a service fails, when there are three to ask.
        self.quorum = THRESHOLDS["quorum"] if args.nodes >= 3 else 1

    def say(self, who: str, what: str, ts: float | None = None) -> None:
        at = (ts or time.time()) - self.started
        print(f"{at:7.1f}s  {who:<6} {what}", flush=True)

    # --- the story ----------------------------------------------------------------------------

    def run(self) -> int:
        self.start_cluster()
        first, kill = self.kill_owner_mid_restart()
        faults = [first, *self.break_more(self.args.faults - 1)]
        if self.wait_all_healthy(faults):
            self.rejoin(kill)
        report = self.finish(faults, kill)
        for line in report.lines():
            print(line)
        print(self.where_files_are())
        return 0 if report.ok else EXIT_FAILED

    def start_cluster(self) -> None:
        self.say("demo", f"working in {self.work}")
        server, self.url = start_nats(self.work / "nats")
        self.cleanup.callback(server.stop)  # last: the nodes stop first (a callback stack)
        self.say("demo", f"nats-server on {self.url}")
        self.http = Services(self.work / "services")
        self.cleanup.callback(self.http.close)
        self.say("demo", f"{len(self.services)} services on {self.http.url('<name>')}")
        self.config = self.write_config()
        t = THRESHOLDS
        self.say("demo", f"{self.config.name}: a probe every {t['check_interval']:g} s, quorum "
                 f"{self.quorum}, lease ttl {LEASE_TTL:g} s, restart cooldown "
                 f"{t['restart_cooldown']:g} s, a restart takes {RESTART_TAKES:g} s")  # fmt: skip
        for name in self.names:
            self.start_node(name)
        self.say("demo", f"started {', '.join(self.names)}: hbsm run --node NAME --store "
                         f"{self.url} --config {self.config.name}")  # fmt: skip
        self.watch = Watch(self.url, self.say)
        self.cleanup.callback(self.watch.close)
        self.wait("every service healthy, owned by the node it hashes to", self.settled)
        spread = {n: len(self.watch.owned_by(n)) for n in self.names}
        self.say("demo", "all healthy; owners: " + ", ".join(f"{n} {k}" for n, k in spread.items()))
        self.watch.loud = True  # from now on, every change of owner is news

    def start_node(self, name: str) -> None:
        node = Node(name, self.config, self.url, self.work)
        self.nodes[name] = node
        self.node_of_pid[node.pid] = name
        self.cleanup.callback(node.stop)

    # --- chaos --------------------------------------------------------------------------------

    def kill_owner_mid_restart(self) -> tuple[Fault, Kill]:
        """Break a service of the node owning the most, and SIGKILL that node once it has
        started restarting it: its restart command dies with it."""
        victim = max(self.names, key=lambda n: len(self.watch.owned_by(n)))
        fault = self.break_(self.watch.owned_by(victim)[0])
        fault.owner_killed = True
        restart = self.wait(
            f"{victim} restarting {fault.service}",
            lambda: self.watch.restart_started(fault.service, fault.broke_at),
        )
        owned = self.watch.owned_by(victim)
        self.nodes[victim].kill()
        # On a machine too slow for the demo to see the restart start within RESTART_TAKES,
        # the command has finished already: said, rather than passed off as an interruption.
        too_late = fault.service in dict(self.http.restarts())
        kill = Kill(node=victim, at=time.time(), restart_at=restart.ts, services=owned,
                    too_late=too_late)  # fmt: skip
        how = "after it had restarted" if too_late else "in the middle of restarting"
        self.say("chaos", f"{victim} killed (SIGKILL) {how} {fault.service}")
        self.wait(f"{victim}'s {len(owned)} services taken over",
                  lambda: not self.watch.owned_by(victim))  # fmt: skip
        return fault, kill

    def break_more(self, count: int) -> list[Fault]:
        """Break `count` more services, one every FAULT_EVERY seconds, spread over the live
        nodes."""
        faults: list[Fault] = []
        live = [n for n in self.names if self.nodes[n].alive()]
        for i in range(count):
            owner = live[i % len(live)]
            unbroken = [s for s in self.watch.owned_by(owner) if s not in self.watch.followed]
            pick = unbroken[0] if unbroken else self.any_unbroken()
            faults.append(self.break_(pick))
            if i < count - 1:
                self.pause(FAULT_EVERY)
        return faults

    def any_unbroken(self) -> str:
        return next(s for s in self.services if s not in self.watch.followed)

    def break_(self, service: str) -> Fault:
        owner = self.watch.owner[service]
        self.http.break_(service)
        self.watch.followed.add(service)
        self.say("chaos", f"{service} broken (owner {owner})")
        return Fault(service=service, owner=owner, broke_at=time.time())

    def wait_all_healthy(self, faults: list[Fault]) -> bool:
        def repaired() -> bool:
            return all(self.watch.state.get(f.service) == "healthy"
                       and not self.http.is_broken(f.service) for f in faults)  # fmt: skip

        if not self.wait("every broken service healthy again", repaired, fail=False):
            return False
        self.say("demo", f"all {len(faults)} faults repaired")
        return True

    def rejoin(self, kill: Kill) -> None:
        """Start the killed node again: it takes back the services that hash to it."""
        self.start_node(kill.node)
        kill.rejoined_at = time.time()
        kill.share = [s for s in self.services if preferred_node(s, self.names) == kill.node]
        self.say("demo", f"{kill.node} started again")
        if self.wait(f"{kill.node} back with its {len(kill.share)} services", self.settled,
                     fail=False):  # fmt: skip
            self.say("demo", f"{kill.node} has its {len(kill.share)} services back")

    # --- the end ------------------------------------------------------------------------------

    def finish(self, faults: list[Fault], kill: Kill) -> Report:
        """Stop the nodes (SIGTERM), export the stream, verify it; the report."""
        for node in self.nodes.values():
            node.terminate()  # all at once: no hand-over from one stopping node to another
        stopped = {name: node.stop() for name, node in self.nodes.items()}
        self.say("demo", "nodes stopped")
        export = self.work / "cluster.jsonl"
        exported = self.hbsm("export", "--store", self.url, "-o", str(export))
        if exported.code != 0:
            raise DemoError(f"hbsm export exited {exported.code}: {exported.output.strip()}")
        verify = self.hbsm("replay", "--verify", str(export))
        self.say("demo", f"exported to {export.name}; hbsm replay --verify exited {verify.code}")
        restarts = [(name, self.node_of_pid.get(pid, f"pid {pid}"))
                    for name, pid in self.http.restarts()]  # fmt: skip
        return Report(started=self.started, faults=faults, kill=kill,
                      events=list(read_history(export)), restarts=restarts, stopped=stopped,
                      verify=verify, problems=self.problems)  # fmt: skip

    def hbsm(self, *args: str) -> Ran:
        done = subprocess.run([sys.executable, "-m", "hbsm", *args], capture_output=True,
                              text=True, timeout=DEADLINE, check=False)  # fmt: skip
        return Ran(done.returncode, done.stdout + done.stderr)

    def where_files_are(self) -> str:
        if self.args.keep is None:
            return "\n  (the run's files are deleted; --keep DIR keeps them)"
        return (f"\n  kept in {self.work}: cluster.jsonl (the stream), nK/hbsm.log (each "
                "node's log), services/restarts.log (the restarts carried out)")  # fmt: skip

    # --- waiting ------------------------------------------------------------------------------

    def settled(self) -> bool:
        """Every service healthy and owned by the node it hashes to among the live ones."""
        live = [n for n in self.names if self.nodes[n].alive()]
        owner, state = self.watch.owner, self.watch.state
        return all(owner.get(s) == preferred_node(s, live) and state.get(s) == "healthy"
                   for s in self.services)  # fmt: skip

    def wait(self, what: str, done: Callable[[], Any], *, fail: bool = True) -> Any:
        """`done()`'s first truthy value, reading the stream meanwhile. Past DEADLINE: raise
        DemoError, or with `fail=False` note the problem for the report and return None."""
        deadline = time.monotonic() + DEADLINE
        while True:
            self.tick()
            if value := done():
                return value
            if time.monotonic() > deadline:
                problem = f"not within {DEADLINE:g} s: {what}"
                if fail:
                    raise DemoError(problem)
                self.problems.append(problem)
                return None
            time.sleep(POLL)

    def pause(self, seconds: float) -> None:
        """Sleep, reading the stream meanwhile (its news said as it comes)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick()
            time.sleep(POLL)

    def tick(self) -> None:
        """Read the stream's news; fail if a node exited unasked."""
        for node in self.nodes.values():
            node.check()
        self.watch.update()

    # --- the config ---------------------------------------------------------------------------

    def write_config(self) -> Path:
        """One hbsm.toml for every node, as on real hosts. Its log path is relative: each node
        runs in a folder of its own, so what a node writes beside its log is its own."""
        top = {"host": "127.0.0.1", **THRESHOLDS, "quorum": self.quorum}
        lines = [f"{key} = {toml(value)}" for key, value in top.items()]
        lines += ["", "[log]", 'path = "events/heartbeat.jsonl"']
        lines += ["", "[cluster]", f"lease_ttl = {LEASE_TTL}"]
        for name in self.services:
            table = self.http.table(name, delay=RESTART_TAKES)
            lines += ["", "[[services]]", *(f"{k} = {toml(v)}" for k, v in table.items())]
        path = self.work / "hbsm.toml"
        path.write_text("\n".join(lines) + "\n")
        return path


def toml(value: Any) -> str:
    """A TOML value: JSON's strings, numbers and arrays are TOML's; tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value)


if __name__ == "__main__":
    sys.exit(main())
