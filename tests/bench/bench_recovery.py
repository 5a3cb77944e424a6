"""Recovery against Monit and supervisord (docs/performance.md): the time from a fault to the
service answering 200 again, hbsm beside the two peers, each supervising its own copy of the
same target with the same settings (tests.bench.peers: a probe every second, a restart after
3 failed ones, a 2 s probe timeout).

Three faults, injected into the three targets at the same moment (so they share the machine's
noise), each repeated five times (or `--repeat`) at a random point of the check interval; the
median is the figure:

  * crash: SIGKILL of the service's process;
  * hang: SIGSTOP of it (it accepts connections and never answers);
  * http 500: it answers 500 (its control file says "error").

"Answering again" is seen from here: a raw GET /health to each target's port every 10 ms.
supervisord restarts only a process that exits: a hang or 500s are never noticed ("never": the
target is not back N seconds after the others, and is then mended by hand).

Goals: hbsm's crash time at most Monit's and at most supervisord's; its hang time at most
Monit's (ratio hbsm/peer, met when <= 1).

    python -m tests.bench.bench_recovery [--repeat N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.bench.context import Context
from tests.bench.peers import (
    CHECK_INTERVAL,
    FAILURES,
    PROBE_TIMEOUT,
    Hbsm,
    Monit,
    Peer,
    Supervisord,
    answers_200,
    ensure_peers,
)
from tests.bench.results import Record, Results

__all__ = ["main", "run"]

FAULTS = {"crash": "crash (kill -9)", "hang": "hang (SIGSTOP)", "error": "http 500"}
# Which of them each peer can notice at all.
NOTICES = {"hbsm": set(FAULTS), "Monit": set(FAULTS), "supervisord": {"crash"}}
# How long a target that cannot be back is watched after the others are back, before "never".
NEVER_AFTER = 3.0
# Between two faults: every target answers, and every supervisor has seen it answer again.
SETTLE = 2.0 * CHECK_INTERVAL
# Repetitions of each fault at the least: the phase of the fault within each supervisor's own
# cycle moves a figure by up to a second, and the median of five steadies it.
REPEAT = 5
POLL = 0.01
GOALS = {"crash": ("Monit", "supervisord"), "hang": ("Monit",)}


def _say(message: str) -> None:
    print(f"  recovery: {message}", file=sys.stderr, flush=True)


def _watch(peer: Peer, t0: float, out: dict[str, float | None], give_up: threading.Event) -> None:
    """Poll `peer`'s target until it answers 200: the seconds since `t0` into `out`."""
    while not answers_200(peer.port):
        if give_up.is_set():
            out[peer.label] = None
            return
        time.sleep(POLL)
    out[peer.label] = time.monotonic() - t0


def one_fault(peers: list[Peer], fault: str, limit: float) -> dict[str, float | None]:
    """Inject `fault` into every target at once; seconds until each answers again (None: not
    within NEVER_AFTER after the last of those that could, or `limit`)."""
    out: dict[str, float | None] = {}
    give_up = threading.Event()
    threads = []
    for peer in peers:
        t0 = time.monotonic()
        peer.fail(fault)
        thread = threading.Thread(target=_watch, args=(peer, t0, out, give_up), daemon=True)
        thread.start()
        threads.append((peer, thread))
    deadline = time.monotonic() + limit
    for peer, thread in threads:
        if fault in NOTICES[peer.label]:
            thread.join(max(0.0, deadline - time.monotonic()))
    # The rest (those that cannot notice this fault, or did not in time): a last look.
    last_look = time.monotonic() + NEVER_AFTER
    for _, thread in threads:
        thread.join(max(0.0, last_look - time.monotonic()))
    give_up.set()
    for peer, thread in threads:
        thread.join()
        if out.get(peer.label) is None:
            peer.mend()
    return out


def _settle(peers: list[Peer]) -> None:
    deadline = time.monotonic() + 60
    while not all(answers_200(p.port) for p in peers) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(SETTLE)


Times = dict[str, dict[str, list[float | None]]]


def measure(workdir: Path, repeat: int) -> tuple[Times, dict[str, str]]:
    """{fault: {peer: [seconds or None per repetition]}}, and {peer: why it was not run}."""
    skipped = ensure_peers()
    kinds: list[type[Peer]] = [Hbsm]
    kinds += [k for k in (Monit, Supervisord) if k.label.lower() not in skipped]
    peers: list[Peer] = []
    times: Times = {f: {} for f in FAULTS}
    rng = random.Random(20261206)
    try:
        for kind in kinds:
            peer = kind(workdir)
            _say(f"starting {peer.label} (target on port {peer.port})")
            peer.start()
            peers.append(peer)
        _settle(peers)
        for fault in FAULTS:
            # Time enough for the slowest peer to notice: its failures, each a timeout.
            limit = 10 + FAILURES * (CHECK_INTERVAL + PROBE_TIMEOUT) * 2
            for n in range(repeat):
                time.sleep(rng.uniform(0, CHECK_INTERVAL))  # a random point of the interval
                got = one_fault(peers, fault, limit)
                _say(f"{fault} #{n + 1}: " + ", ".join(
                    f"{k} {'never' if v is None else f'{v:.2f} s'}" for k, v in got.items()
                ))  # fmt: skip
                for label, value in got.items():
                    times[fault].setdefault(label, []).append(value)
                _settle(peers)
    finally:
        for peer in peers:
            peer.stop()
    return times, skipped


def _median(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return statistics.median(v for v in values if v is not None)


def _runs(values: list[float | None]) -> str:
    return ", ".join("never" if v is None else f"{v:.2f}" for v in values)


def report(times: Times, skipped: dict[str, str], results: Results) -> None:
    settings = (
        f"probe every {CHECK_INTERVAL:g} s, restart after {FAILURES} failures, "
        f"probe timeout {PROBE_TIMEOUT:g} s"
    )
    for fault, label in FAULTS.items():
        runs = times[fault]
        ours = _median(runs.get("hbsm", []))
        mine = f"runs (s): {_runs(runs.get('hbsm', []))}; {settings}"
        results.add(Record(f"recovery {label}: hbsm", ours, "s", bench="recovery", note=mine))
        for peer in ("Monit", "supervisord"):
            if peer.lower() in skipped:
                results.add(Record(f"recovery {label}: {peer}", None, "s", bench="recovery",
                                   note=f"not run: {skipped[peer.lower()]}"))  # fmt: skip
                continue
            theirs = _median(runs.get(peer, []))
            note = f"runs (s): {_runs(runs.get(peer, []))}"
            if theirs is None and fault not in NOTICES[peer]:
                note = f"never: {peer} restarts only a process that exits; {note}"
            results.add(Record(f"recovery {label}: {peer}", theirs, "s", bench="recovery",
                               note=note))  # fmt: skip
            judged = peer in GOALS.get(fault, ())
            if ours is None or (theirs is None and not judged):
                continue
            ratio = None if theirs is None else ours / theirs
            results.add(
                Record(
                    f"recovery {label}: hbsm / {peer}",
                    ours,
                    "s",
                    baseline=theirs,
                    ratio=ratio,
                    goal=f"<= {peer}" if judged else "",
                    # A peer that never recovered is beaten by any recovery.
                    met=(ratio is None or ratio <= 1.0) if judged else None,
                    bench="recovery",
                )
            )


def run(ctx: Context) -> None:
    times, skipped = measure(ctx.workdir / "recovery", max(ctx.repeat, REPEAT))
    report(times, skipped, ctx.results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_recovery")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="repetitions of each fault")
    args = parser.parse_args(argv)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="hbsm-bench-recovery-") as tmp:
        times, skipped = measure(Path(tmp), args.repeat)
    report(times, skipped, results)
    results.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
