"""`hbsm dashboard`: the Textual dashboard, live from a log (a file, or a NATS JetStream stream)
or an API, or over a recorded history.

Textual is imported inside `run`, so `hbsm --help` and the other commands stay light.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from typing import Any

from hbsm.export.store import DEFAULT_STREAM

__all__ = ["add_parser", "run"]

DEFAULT_LOG = "events/heartbeat.jsonl"

_EPILOG = """\
sources (one at a time; default: --log events/heartbeat.jsonl):
  --log PATH           follow the local event log (across rotations)
  --store URL          follow the log kept in NATS JetStream (hbsm run --store) at this server,
                       read-only; --stream NAME (default HBSM)
  --api URL            follow a running instance's /events stream; admin actions enabled
  --replay FILE...     step through recorded histories (o: next file)

keys: q quit · / filter · s sort · f feed kind · enter details · escape back
replay: space play/pause · ←/→ one event · n/N next/previous transition · g/G start/end ·
        [ ] speed (1x-1000x)
admin (--api): p pause/resume · r reset · x probe now · R repair now · t start/stop heartbeat

examples:
  hbsm dashboard
  hbsm dashboard --replay events/samples/crash_restart_cooldown.jsonl
  hbsm dashboard --api http://127.0.0.1:5000 --token "$HEARTBEAT_ADMIN_TOKEN"
  hbsm dashboard --store nats://127.0.0.1:4222
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dashboard",
        help="the Textual dashboard (live log or stream, remote API, or replay)",
        description="Watch services live from the event log (a file or a JetStream stream) or "
        "an instance's API, or step through a recorded history.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--log", metavar="PATH", help=f"event log to follow ({DEFAULT_LOG})")
    group.add_argument("--store", metavar="URL",
                       help="NATS server holding the log (nats://host:4222)")  # fmt: skip
    group.add_argument("--api", metavar="URL", help="base URL of a running `hbsm run`")
    group.add_argument("--replay", metavar="FILE", nargs="+", help="recorded histories")
    parser.add_argument("--stream", metavar="NAME",
                        help=f"with --store: the stream (default {DEFAULT_STREAM})")  # fmt: skip
    parser.add_argument(
        "--token",
        metavar="T",
        help="bearer token for --api (default: $HEARTBEAT_ADMIN_TOKEN)",
    )
    parser.set_defaults(handler=run)
    return parser


def _unreadable(path: str) -> str | None:
    """Why the file at `path` cannot be replayed, checked before the app starts: every FILE, so
    that `o` (next file) does not meet the problem inside the app."""
    try:
        # Fix (tests/reliability): os.path.exists said "no such file" for a log in a directory
        # the user may not search (it hides the PermissionError).
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            return f"{path}: is a directory; name the log file"
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        return f"no such file: {path}"
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    return None


def run(args: argparse.Namespace) -> int:
    from hbsm.export.store import check_extra, store_failed
    from hbsm.log import LogError
    from tui.app import DashboardApp
    from tui.board import ReplayBoard
    from tui.sources import ApiStream, LogTail, Source, StreamTail

    if args.stream and not args.store:
        print("hbsm dashboard: --stream names a stream of --store", file=sys.stderr)
        return 2

    if args.replay:
        for path in args.replay:
            problem = _unreadable(path)
            if problem is not None:
                print(f"hbsm dashboard: {problem}", file=sys.stderr)
                return 2
        try:
            first = ReplayBoard.load(args.replay[0])
        except LogError as exc:  # its message names the file
            print(f"hbsm dashboard: {exc}", file=sys.stderr)
            return 2
        except (OSError, ValueError) as exc:
            print(f"hbsm dashboard: {args.replay[0]}: {exc}", file=sys.stderr)
            return 2
        app = DashboardApp(replay=list(args.replay), replay_boards=[first])
    else:
        source: Source
        if args.store:
            try:
                check_extra(args.store)  # a server that is down, the dashboard waits for
            except LogError as exc:
                return store_failed("hbsm dashboard", exc)
            source = StreamTail(args.store, args.stream or DEFAULT_STREAM)
        elif args.api:
            token = args.token or os.environ.get("HEARTBEAT_ADMIN_TOKEN", "").strip() or None
            source = ApiStream(args.api, token)
        else:
            source = LogTail(args.log or DEFAULT_LOG)
        app = DashboardApp(source=source, settle=True)
    app.run()
    return int(app.return_code or 0)
