"""`hbsm replay FILE...` or `hbsm replay --store URL`: read recorded histories and report on
them. With hbsm.replay.reading (the FILEs read as histories) and hbsm.replay.stream (a NATS
JetStream stream's history, read the same way), the only modules of `hbsm.replay` that do I/O:
it times the replay and prints.

Modes (one at a time): the default report (timeline, incidents, MTTR), `--stats`, `--verify`
and `--set KEY=VALUE` (what-if). Several FILEs are several logs: each is replayed on its own
(its closed segments first), reported under its name, and the exit code is the worst of them.
"""

from __future__ import annotations

import argparse
import io
import sys
import textwrap
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from hbsm.events import Event, OpaqueEvent
from hbsm.export.store import DEFAULT_STREAM, EXIT_STORE, store_failed
from hbsm.fsm import UnknownRulesError
from hbsm.log.errors import LogError
from hbsm.replay.analysis import Analysis
from hbsm.replay.clock import ClockWatch
from hbsm.replay.reading import PROG, BadInput, Reading, err
from hbsm.replay.report import (
    clock_notes,
    render_json,
    text_replay,
    text_stats,
    text_verify,
    text_whatif,
)
from hbsm.replay.stream import StreamReading, stream_name
from hbsm.replay.verify import Verifier
from hbsm.replay.whatif import POLICY_KEYS, OverrideError, WhatIf, parse_overrides
from hbsm.replay.window import Window, parse_time

__all__ = ["EXIT_CODES", "add_parser", "run"]

EXIT_CODES = f"""\
exit codes:
  0  ok (a torn last line is ignored with a notice; a clock that went back is warned about)
  1  --verify found a decision that differs from the recorded one
  2  bad usage or bad input: missing file, corrupt line, not an event log, a hole in the
     history (a segment deleted), unknown --service, bad --set key or value
  {EXIT_STORE}  --store: the stream cannot be read (no server there, no such stream, the nats
     extra not installed)"""

_EPILOG = f"""\
examples:
  hbsm replay events/heartbeat.jsonl
  hbsm replay events/heartbeat.jsonl --service api --since 2026-11-01T03:00:00Z --json
  hbsm replay events/heartbeat.jsonl --verify
  hbsm replay events/heartbeat.jsonl --set max_retries=5 --set api.restart_cooldown=60
  hbsm replay --verify events/samples/*.jsonl
  hbsm replay --store nats://127.0.0.1:4222 --service api --verify

--set keys (a Policy field, for every service, or SERVICE.KEY for one):
{textwrap.fill(", ".join(POLICY_KEYS), 88, initial_indent="  ", subsequent_indent="  ")}

{EXIT_CODES}"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="timeline, incidents and MTTR of a recorded log; --verify, --set what-if, --stats",
        description=textwrap.dedent("""\
            Replay recorded event logs for diagnosis: a readable timeline of transitions,
            repairs and restarts; incidents (first failure to recovery) with their durations;
            mean time to recovery and to detect per service. Never runs a side effect.
            Results go to stdout; errors and notices, one line each, to stderr."""),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files", nargs="*", metavar="FILE",
        help="an event log (its closed segments are read first), a segment (.jsonl.gz) or an "
        "exported JSONL file; several are separate logs, each replayed and reported on its own",
    )  # fmt: skip
    p.add_argument(
        "--store", metavar="URL",
        help="replay the log kept in NATS JetStream (hbsm run --store) at this server "
        "(nats://host:4222) instead of FILEs: its history as of now",
    )  # fmt: skip
    p.add_argument(
        "--stream", metavar="NAME",
        help=f"with --store: the stream holding the log (default {DEFAULT_STREAM})",
    )  # fmt: skip
    p.add_argument(
        "--service", action="append", default=[], metavar="NAME",
        help="report only this service (repeatable); monitor-wide events are kept",
    )  # fmt: skip
    p.add_argument(
        "--since", metavar="TIME",
        help="report from this time: ISO-8601 (2026-11-01T03:00:00Z; no offset means UTC) or "
        "epoch seconds. State is still folded from the start of the history",
    )  # fmt: skip
    p.add_argument("--until", metavar="TIME", help="report up to this time (as --since)")
    p.add_argument("--json", action="store_true", help="print a machine-readable report")
    p.add_argument(
        "--skip-bad", action="store_true",
        help="skip corrupt lines (counted) instead of stopping at the first",
    )  # fmt: skip
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--stats", action="store_true",
        help="only count, over the whole history: events per type, services by final state, "
        "and the replay rate (last line: replayed N events in S s (R events/s))",
    )  # fmt: skip
    mode.add_argument(
        "--verify", action="store_true",
        help="re-decide every recorded fact with the recorded config; exit 1 naming the first "
        "event where a decision differs",
    )  # fmt: skip
    mode.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
        help="what-if (repeatable): re-decide the recorded probes with changed thresholds, "
        "e.g. --set max_retries=5, and compare repairs, restarts and time to detect",
    )  # fmt: skip
    return p


# --- running ---------------------------------------------------------------------------------


def _window(args: argparse.Namespace) -> Window:
    try:
        since = parse_time(args.since) if args.since is not None else None
    except ValueError as exc:
        raise BadInput(f"--since {exc}") from None
    try:
        until = parse_time(args.until) if args.until is not None else None
    except ValueError as exc:
        raise BadInput(f"--until {exc}") from None
    try:
        return Window(since=since, until=until, services=frozenset(args.service))
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _check_services(wanted: Iterable[str], known: Iterable[str]) -> None:
    names = sorted(set(known))
    missing = sorted(set(wanted) - set(names))
    if missing:
        listed = ", ".join(names) if names else "none"
        raise BadInput(
            f"unknown service {', '.join(repr(m) for m in missing)}; "
            f"services in this history: {listed}"
        )


def run(args: argparse.Namespace) -> int:
    files: list[str] = args.files
    problem = _sources_problem(args)
    if problem:
        err(problem)
        return 2
    if args.store:
        return _run_one(args, stream_name(args.store, args.stream or DEFAULT_STREAM))
    if len(files) == 1:
        return _run_one(args, files[0])
    # Several logs: each on its own, under its name (text) or as one JSON array.
    worst = 0
    reports: list[str] = []
    for number, name in enumerate(files):
        if args.json:
            out, sys.stdout = sys.stdout, io.StringIO()
            try:
                code = _run_one(args, name)
                reports.append(sys.stdout.getvalue().strip() or "null")
            finally:
                sys.stdout = out
        else:
            print(f"{'' if number == 0 else chr(10)}==> {name} <==", flush=True)
            code = _run_one(args, name)
        worst = max(worst, code)
    if args.json:
        sys.stdout.write("[" + ",\n".join(reports) + "]\n")
    return worst


def _sources_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with where the histories come from: FILEs or --store, one of them."""
    if args.store and args.files:
        return "FILEs or --store, not both (export the stream to replay it beside files)"
    if not args.store and not args.files:
        return "name a FILE to replay, or a JetStream store (--store nats://HOST:4222)"
    if args.stream and not args.store:
        return "--stream names a stream of --store"
    return None


def _run_one(args: argparse.Namespace, name: str) -> int:
    try:
        return _run(args, name)
    except BadInput as exc:
        err(str(exc))
        return 2
    except UnknownRulesError as exc:
        err(f"{name}: {exc}")
        return 2
    except LogError as exc:  # only the store's: a file's read errors are BadInput
        return store_failed(PROG, exc)


def _run(args: argparse.Namespace, name: str) -> int:
    window = _window(args)
    try:
        overrides = parse_overrides(args.overrides)
    except OverrideError as exc:
        raise BadInput(str(exc)) from None
    reading: Reading | StreamReading
    if args.store:
        reading = StreamReading(args.store, args.stream or DEFAULT_STREAM)
    else:
        reading = Reading([name], args.skip_bad)
    if args.verify:
        return _verify(args, window, reading)
    if overrides:
        whatif = WhatIf(overrides, window)
        clock = ClockWatch()

        def feed_whatif(batch: list[Event | OpaqueEvent]) -> bool:
            clock.feed(batch)
            for event in batch:
                whatif.feed(event)
            return True

        try:
            reading.run(feed_whatif)
        except OverrideError as exc:
            raise BadInput(str(exc)) from None
        reading.notices()
        _warn_clock(clock)
        named = {o.service for o in overrides if o.service is not None}
        _check_services(window.services | named, whatif.services)
        _warn_default_policy(whatif.default_policy)
        outcome = whatif.report()
        sys.stdout.write(render_json(outcome) if args.json else text_whatif(outcome))
        return 0

    if args.stats and not window.unbounded:
        raise BadInput("--stats counts the whole history: --service/--since/--until do not apply")
    analysis = Analysis(window, detail=not args.stats)
    reading.on_hole = analysis.hole

    def feed(batch: list[Event | OpaqueEvent]) -> bool:
        analysis.feed(batch)
        return True

    started = time.perf_counter()
    reading.run(feed)
    seconds = time.perf_counter() - started
    reading.notices()
    _warn_clock(analysis.clock)
    if args.stats:
        stats = analysis.stats(
            [name], seconds, skipped=reading.skipped, torn=reading.torn,
            segments=reading.segments,
        )  # fmt: skip
        sys.stdout.write(render_json(stats) if args.json else text_stats(stats))
        return 0
    _check_services(window.services, analysis.services)
    report = analysis.report([name], skipped=reading.skipped, torn=reading.torn)
    sys.stdout.write(render_json(report) if args.json else text_replay(report))
    return 0


def _warn_clock(clock: ClockWatch) -> None:
    """Each step back of the clock, on stderr (the report says it too)."""
    for line in clock_notes(clock.steps[:_SHOWN_STEPS], clock.named):
        err(line)


# Steps back of the clock named one by one on stderr; the report holds up to a hundred.
_SHOWN_STEPS = 5


def _warn_default_policy(services: list[str]) -> None:
    if services:
        err(
            f"warning: no service.registered event for {', '.join(services)}: "
            "using the default policy"
        )


def _verify(args: argparse.Namespace, window: Window, reading: Reading | StreamReading) -> int:
    if window.since is not None or window.until is not None:
        raise BadInput("--verify checks the whole history: --since/--until do not apply")
    verifier = Verifier(window.services)
    clock = ClockWatch()

    def feed(batch: list[Event | OpaqueEvent]) -> bool:
        clock.feed(batch)
        return all(verifier.feed(event) is None for event in batch)

    reading.run(feed)
    reading.notices()
    _warn_clock(clock)
    divergence = verifier.finish(torn=bool(reading.torn))
    if divergence is None and verifier.pending:
        err(
            f"notice: the last {verifier.pending} decision(s) are missing, cut off with the "
            "torn last line"
        )
    if divergence is None:
        _check_services(window.services, verifier.states)
    _warn_default_policy(verifier.default_policy)
    result = verifier.result()
    holes = reading.holes
    if args.json:
        # What the read met goes with the result (VerifyResult is the verifier's own).
        sys.stdout.write(
            render_json(
                msgspec.structs.asdict(result)
                | {"holes": holes, "clock_steps": clock.steps, "clock_steps_total": clock.named}
            )
        )
    if divergence is None:
        if not args.json:
            sys.stdout.write(text_verify(result, holes, clock.steps, clock.named))
        return 0
    where = reading.where(divergence.seq)
    service = f", service {divergence.service}" if divergence.service else ""
    err(f"{where}: divergence at seq {divergence.seq}{service}: {divergence.message}")
    return 1
