"""`hbsm export --store nats://HOST:PORT [-o FILE]`: the event log of a JetStream stream as
JSONL, one event per line as the file log writes them (to stdout by default).

Exit codes: 0 written, 2 bad usage (an unreadable output file), 3 the store cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from hbsm.export.store import DEFAULT_STREAM

__all__ = ["add_parser", "run"]

EXIT_USAGE = 2
# Progress on stderr at most this often, for an export long enough to need it.
_PROGRESS_EVERY = 2.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="write an event log kept in NATS JetStream out as a JSONL file",
        description="Write the event log of a NATS JetStream stream (hbsm run --store) as JSONL, "
        "the file log's format: `hbsm replay` and `--verify` then read it like any log.",
        epilog="Exit codes: 0 written, 2 bad usage, 3 the store cannot be read.",
    )
    parser.add_argument("--store", metavar="URL", required=True,
                        help="the NATS server (nats://host:4222), or several of one cluster "
                        "comma-separated")  # fmt: skip
    parser.add_argument("--stream", metavar="NAME", default=DEFAULT_STREAM,
                        help=f"the stream holding the log (default {DEFAULT_STREAM})")  # fmt: skip
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from hbsm._event_codec import encode
    from hbsm.export.store import read_store, store_failed
    from hbsm.log import LogError

    try:
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    except OSError as exc:
        print(f"hbsm export: {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    written = 0
    said = time.monotonic()
    try:
        for event in read_store(args.store, args.stream):
            out.write(encode(event) + b"\n")
            written += 1
            if time.monotonic() - said >= _PROGRESS_EVERY:
                print(f"hbsm export: {written} events...", file=sys.stderr)
                said = time.monotonic()
    except LogError as exc:
        return store_failed("hbsm export", exc)
    finally:
        out.flush()
        if args.output:
            out.close()
    where = args.output or "stdout"
    print(f"hbsm export: {written} events of {args.stream} written to {where}", file=sys.stderr)
    return 0
