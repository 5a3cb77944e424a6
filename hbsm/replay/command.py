"""`hbsm replay FILE...`: read recorded histories and report on them. The only module of
`hbsm.replay` that does I/O: it reads the logs, times the replay and prints.

Modes (one at a time): the default report (timeline, incidents, MTTR), `--stats`, `--verify`
and `--set KEY=VALUE` (what-if). Several FILEs are several logs: each is replayed on its own
(its closed segments first), reported under its name, and the exit code is the worst of them.
"""

from __future__ import annotations

import argparse
import codecs
import gzip
import io
import stat
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from hbsm.events import Event, EventDecodeError, OpaqueEvent, decode
from hbsm.log import CorruptLineError, LogError, ReadStats, read_blocks, segment_paths
from hbsm.replay.analysis import Analysis, TornLine
from hbsm.replay.fold import paused_gc
from hbsm.replay.report import (
    render_json,
    text_replay,
    text_stats,
    text_verify,
    text_whatif,
)
from hbsm.replay.verify import Verifier
from hbsm.replay.whatif import POLICY_KEYS, OverrideError, WhatIf, parse_overrides
from hbsm.replay.window import Window, parse_time

__all__ = ["EXIT_CODES", "add_parser", "run"]

PROG = "hbsm replay"

EXIT_CODES = """\
exit codes:
  0  ok (a torn last line is ignored with a notice)
  1  --verify found a decision that differs from the recorded one
  2  bad usage or bad input: missing file, corrupt line, not an event log, unknown --service,
     bad --set key or value"""

_EPILOG = f"""\
examples:
  hbsm replay events/heartbeat.jsonl
  hbsm replay events/heartbeat.jsonl --service api --since 2026-11-01T03:00:00Z --json
  hbsm replay events/heartbeat.jsonl --verify
  hbsm replay events/heartbeat.jsonl --set max_retries=5 --set api.restart_cooldown=60
  hbsm replay --verify events/samples/*.jsonl

--set keys (a Policy field, for every service, or SERVICE.KEY for one):
{textwrap.fill(", ".join(POLICY_KEYS), 88, initial_indent="  ", subsequent_indent="  ")}

{EXIT_CODES}"""


class _BadInput(Exception):
    """One line for stderr; exit 2."""


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
        "files", nargs="+", metavar="FILE",
        help="an event log (its closed segments are read first), a segment (.jsonl.gz) or an "
        "exported JSONL file; several are separate logs, each replayed and reported on its own",
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


# --- reading ---------------------------------------------------------------------------------


def _sniff(path: Path, skip_bad: bool) -> None:
    """Refuse at once a plain file that cannot be an event log (an image, a text file)."""
    try:
        # Fix (tests/reliability): Path.is_dir lets EACCES through (a log in a directory the
        # user may not search): a PermissionError traceback.
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # the reader names what is missing (a log may be only its closed segments)
    except OSError as exc:
        raise _BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise _BadInput(
            f"{path}: is a directory; name the log file, e.g. {path / 'heartbeat.jsonl'}"
        )
    if skip_bad or path.name.endswith(".gz") or not stat.S_ISREG(mode):
        return  # the reader says what is wrong with those
    try:
        with open(path, "rb") as f:
            head = f.read(64).removeprefix(codecs.BOM_UTF8).lstrip()
    except OSError as exc:
        raise _BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head and not head.startswith(b"{"):
        raise _BadInput(f"{path}: not an hbsm event log (it does not start with a JSON object)")


# How the reader words a .gz segment it cannot decompress: the file is a log, but damaged.
_DAMAGED = "damaged compressed segment"


def _read_error(path: Path, exc: BaseException) -> _BadInput:
    if isinstance(exc, CorruptLineError):
        if exc.line == 1 and not exc.reason.startswith(_DAMAGED):
            return _BadInput(f"{exc.path}:1: not an hbsm event log ({exc.reason})")
        return _BadInput(f"{exc.path}:{exc.line}: {exc.reason}")
    if isinstance(exc, OSError):
        return _BadInput(f"{exc.filename or path}: {exc.strerror or exc}")
    return _BadInput(" ".join(str(exc).split()))


class _Reading:
    """Reads FILEs in order as one history, feeding batches to `consume`."""

    def __init__(self, files: list[str], skip_bad: bool) -> None:
        self.files = files
        self.skip_bad = skip_bad
        self.stats: list[ReadStats] = []
        self.current: Path | None = None

    def run(self, consume: Callable[[list[Event | OpaqueEvent]], bool]) -> None:
        """`consume` returns False to stop early. Raises _BadInput."""
        with paused_gc():
            self._run(consume)

    def _run(self, consume: Callable[[list[Event | OpaqueEvent]], bool]) -> None:
        for name in self.files:
            path = self.current = Path(name)
            _sniff(path, self.skip_bad)
            stats = ReadStats()
            self.stats.append(stats)
            try:
                for batch in read_blocks(path, skip_bad=self.skip_bad, stats=stats):
                    if not consume(batch):
                        return
            except (LogError, OSError) as exc:
                raise _read_error(path, exc) from None
            if self.skip_bad and stats.events == 0 and (stats.skipped or stats.torn):
                raise _BadInput(
                    f"{path}: not an hbsm event log (no event in it; "
                    f"{stats.skipped} bad lines skipped)"
                )

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.stats)

    @property
    def torn(self) -> list[TornLine]:
        return [TornLine(str(p), off, cut) for s in self.stats for (p, off, cut) in s.torn]

    @property
    def segments(self) -> int:
        return sum(s.segments for s in self.stats)

    def notices(self) -> None:
        for stats in self.stats:
            for path, line, reason in stats.damaged:
                _err(
                    f"notice: {path}:{line}: {reason}: skipped from this line to its end "
                    "(--skip-bad; counted as one bad line)"
                )
        for t in self.torn:
            _err(
                f"notice: {t.path}: ignored a torn last line ({t.cut_bytes} bytes at offset "
                f"{t.offset}): the writer stopped mid-line or is writing it now"
            )
        if self.skipped:
            _err(f"notice: skipped {self.skipped} bad line(s) (--skip-bad)")


def _open(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _locate(path: Path, seq: int) -> tuple[Path, int] | None:
    """The file and line of the event `seq` in the log at `path`, looked up on the error path
    only (the readers do not count lines for the events they deliver)."""
    needle = b'"seq":%d' % seq
    candidates = [path] if path.name.endswith(".gz") else [*segment_paths(path), path]
    for candidate in candidates:
        try:
            stream = _open(candidate)
        except OSError:
            continue
        with stream:
            try:
                for number, line in enumerate(stream, start=1):
                    if needle in line:
                        try:
                            if decode(line).seq == seq:
                                return candidate, number
                        except EventDecodeError:
                            continue
            except (OSError, EOFError):
                continue
    return None


# --- running ---------------------------------------------------------------------------------


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _window(args: argparse.Namespace) -> Window:
    try:
        since = parse_time(args.since) if args.since is not None else None
    except ValueError as exc:
        raise _BadInput(f"--since {exc}") from None
    try:
        until = parse_time(args.until) if args.until is not None else None
    except ValueError as exc:
        raise _BadInput(f"--until {exc}") from None
    try:
        return Window(since=since, until=until, services=frozenset(args.service))
    except ValueError as exc:
        raise _BadInput(str(exc)) from None


def _check_services(wanted: Iterable[str], known: Iterable[str]) -> None:
    names = sorted(set(known))
    missing = sorted(set(wanted) - set(names))
    if missing:
        listed = ", ".join(names) if names else "none"
        raise _BadInput(
            f"unknown service {', '.join(repr(m) for m in missing)}; "
            f"services in this history: {listed}"
        )


def run(args: argparse.Namespace) -> int:
    files: list[str] = args.files
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


def _run_one(args: argparse.Namespace, name: str) -> int:
    try:
        return _run(args, name)
    except _BadInput as exc:
        _err(str(exc))
        return 2


def _run(args: argparse.Namespace, name: str) -> int:
    window = _window(args)
    try:
        overrides = parse_overrides(args.overrides)
    except OverrideError as exc:
        raise _BadInput(str(exc)) from None
    reading = _Reading([name], args.skip_bad)
    if args.verify:
        return _verify(args, window, reading)
    if overrides:
        whatif = WhatIf(overrides, window)

        def feed_whatif(batch: list[Event | OpaqueEvent]) -> bool:
            for event in batch:
                whatif.feed(event)
            return True

        try:
            reading.run(feed_whatif)
        except OverrideError as exc:
            raise _BadInput(str(exc)) from None
        reading.notices()
        named = {o.service for o in overrides if o.service is not None}
        _check_services(window.services | named, whatif.services)
        _warn_default_policy(whatif.default_policy)
        outcome = whatif.report()
        sys.stdout.write(render_json(outcome) if args.json else text_whatif(outcome))
        return 0

    if args.stats and not window.unbounded:
        raise _BadInput("--stats counts the whole history: --service/--since/--until do not apply")
    analysis = Analysis(window, detail=not args.stats)

    def feed(batch: list[Event | OpaqueEvent]) -> bool:
        analysis.feed(batch)
        return True

    started = time.perf_counter()
    reading.run(feed)
    seconds = time.perf_counter() - started
    reading.notices()
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


def _warn_default_policy(services: list[str]) -> None:
    if services:
        _err(
            f"warning: no service.registered event for {', '.join(services)}: "
            "using the default policy"
        )


def _verify(args: argparse.Namespace, window: Window, reading: _Reading) -> int:
    if window.since is not None or window.until is not None:
        raise _BadInput("--verify checks the whole history: --since/--until do not apply")
    verifier = Verifier(window.services)

    def feed(batch: list[Event | OpaqueEvent]) -> bool:
        return all(verifier.feed(event) is None for event in batch)

    reading.run(feed)
    reading.notices()
    divergence = verifier.finish(torn=bool(reading.torn))
    if divergence is None and verifier.pending:
        _err(
            f"notice: the last {verifier.pending} decision(s) are missing, cut off with the "
            "torn last line"
        )
    if divergence is None:
        _check_services(window.services, verifier.states)
    _warn_default_policy(verifier.default_policy)
    result = verifier.result()
    if args.json:
        sys.stdout.write(render_json(result))
    if divergence is None:
        if not args.json:
            sys.stdout.write(text_verify(result))
        return 0
    path = reading.current or Path(reading.files[0])
    found = _locate(path, divergence.seq)
    where = f"{found[0]}:{found[1]}" if found else str(path)
    service = f", service {divergence.service}" if divergence.service else ""
    _err(f"{where}: divergence at seq {divergence.seq}{service}: {divergence.message}")
    return 1
