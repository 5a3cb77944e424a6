"""What the commands that read a log kept in NATS JetStream share (`hbsm export`, `hbsm replay
--store`, `hbsm dashboard --store`): the reader, imported only when asked for (it needs the
`nats` extra), and how a store that cannot be read is said: one line on stderr, exit 3.

The commands' parsers import this module for `DEFAULT_STREAM`: it imports nothing at load,
so that `hbsm --help` stays light.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hbsm.events import Event, OpaqueEvent
    from hbsm.log.errors import LogError
    from hbsm.log.jetstream_read import JetStreamReader

__all__ = [
    "DEFAULT_STREAM",
    "EXIT_STORE",
    "check_extra",
    "open_reader",
    "read_store",
    "store_failed",
]

EXIT_STORE = 3
# hbsm.log.jetstream_read's, said again here so that a parser needs no nats-py to be built.
DEFAULT_STREAM = "HBSM"


def _no_extra(url: str, exc: ImportError) -> LogError:
    from hbsm.log.errors import LogError

    return LogError(f"--store {url} needs the nats extra (pip install 'hbsm[nats]'): {exc}")


def check_extra(url: str) -> None:
    """Raise LogError now if the nats extra is missing: for a reader that would otherwise
    retry what can never work (the dashboard retries a server that is down)."""
    try:
        import hbsm.log.jetstream_read  # noqa: F401
    except ImportError as exc:
        raise _no_extra(url, exc) from None


def read_store(url: str, stream: str) -> Iterator[Event | OpaqueEvent]:
    """The whole log of `stream` at `url`, oldest first. Raises LogError (the extra missing,
    the server unreachable, no such stream), naming the server and the stream."""
    try:
        from hbsm.log.jetstream_read import read_stream
    except ImportError as exc:
        raise _no_extra(url, exc) from None
    return read_stream(url, stream)


def open_reader(url: str, stream: str, *, timeout: float = 10.0) -> JetStreamReader:
    """A read-only connection to `stream` at `url` (it never makes the stream). Raises LogError
    as `read_store` does."""
    try:
        from hbsm.log.jetstream_read import JetStreamReader
    except ImportError as exc:
        raise _no_extra(url, exc) from None
    return JetStreamReader.open(url, stream, timeout=timeout)


def store_failed(prog: str, exc: LogError) -> int:
    """Say why the store cannot be read, in one line (nats-py's errors may span several), and
    give the exit code for it."""
    print(f"{prog}: {' '.join(str(exc).split())}", file=sys.stderr)
    return EXIT_STORE
