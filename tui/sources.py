"""Where a live dashboard's events come from, off the UI thread, delivered coalesced.

A source runs its own thread and hands the app *batches*: every event since the last batch, at
most one batch per `interval` and never while the app still holds an unacknowledged one, so a log
growing by thousands of events per second costs the UI a few folds and repaints per second, not
one per event (the toolong pattern: a tailing thread posting coalescing messages). The app calls
`ack()` when it has applied a batch.

`LogTail` follows a file log by (segment, offset) across rotations with `hbsm.log.fold.LogFold`.
`StreamTail` follows a log kept in a NATS JetStream stream (`hbsm run --store`) by seq, read-only.
`ApiStream` follows a remote instance's `GET /events` (SSE), resuming with Last-Event-ID after a
reconnect, and sends admin actions. No Textual here.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from hbsm.events import Event, EventDecodeError, OpaqueEvent, decode
from hbsm.export.store import DEFAULT_STREAM, open_reader
from hbsm.log import LogError
from hbsm.log.fold import LineSkipped, LogFold, Step, describe_gap

if TYPE_CHECKING:  # the module needs the nats extra: imported by open_reader, when asked for
    from hbsm.log.jetstream_read import JetStreamFollower, JetStreamReader

__all__ = ["AdminAnswer", "ApiStream", "Batch", "LogTail", "Source", "StreamTail"]

Batch = list[Event | OpaqueEvent]
Deliver = Callable[[Batch], object]
# (severity, message): "information", "warning" or "error".
Report = Callable[[str, str], object]

# At most this many batches a second reach the app (each a fold and one repaint).
BATCHES_PER_SECOND: Final = 5.0
POLL: Final = 0.1


class AdminAnswer:
    """What the API said to an admin action: `ok` and a message to show."""

    def __init__(self, ok: bool, message: str) -> None:
        self.ok = ok
        self.message = message

    def __repr__(self) -> str:
        return f"AdminAnswer(ok={self.ok}, message={self.message!r})"


class Source:
    """A live source. `start` spawns its thread; `deliver` and `report` are called from it."""

    label: str = ""
    admin_enabled: bool = False

    def __init__(self, interval: float = 1.0 / BATCHES_PER_SECOND) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._acked = threading.Event()
        self._acked.set()
        self._lock = threading.Lock()
        self._pending: Batch = []
        self._last_post = 0.0
        self._deliver: Deliver = lambda batch: None
        self._report: Report = lambda severity, message: None
        self._thread: threading.Thread | None = None
        # Counters for the curious (and the benchmark): batches handed over, events in them.
        self.batches = 0
        self.events = 0

    def start(self, deliver: Deliver, report: Report) -> None:
        self._deliver, self._report = deliver, report
        self._thread = threading.Thread(target=self._run, name=f"hbsm-{self.label}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._interrupt()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def ack(self) -> None:
        """The app applied the last batch: the next one may go."""
        self._acked.set()

    def admin(self, action: str, service: str | None = None) -> AdminAnswer:
        return AdminAnswer(False, "admin actions need a live monitor's API (--api URL)")

    # --- for subclasses ---------------------------------------------------------------------

    def _run(self) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake the thread from a blocking read (stop was asked)."""

    def _add(self, events: Batch) -> None:
        if events:
            with self._lock:
                self._pending.extend(events)

    def _flush(self, force: bool = False) -> None:
        """Hand over what piled up, if the interval has passed and the app is ready."""
        now = time.monotonic()
        if not force and now - self._last_post < self.interval:
            return
        if not self._acked.is_set():
            return
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        self._acked.clear()
        self._last_post = now
        self.batches += 1
        self.events += len(batch)
        self._deliver(batch)


class LogTail(Source):
    """Follows the file log at `path` from the start of its active segment (its snapshot).

    Every event is delivered once, in order, as `hbsm.log.fold.LogFold` reads it. If the
    dashboard falls so far behind that retention deletes a segment before it is read, it goes
    on from the oldest segment kept, whose opening snapshot puts the board right again, and the
    gap the fold hands back is reported (an error naming the seqs lost, a warning for a bad
    line, in the fold's own words): a gap is said, never silently skipped."""

    def __init__(
        self, path: str | os.PathLike[str], *, poll: float = POLL, interval: float | None = None
    ) -> None:
        super().__init__() if interval is None else super().__init__(interval)
        self.path = Path(path)
        self.poll = poll
        self.label = f"log {self.path}"
        self.last_seq = 0  # of the last event read (0: none yet)

    def _run(self) -> None:
        # No projection in the fold: the board folds what is delivered, on the UI thread.
        fold = LogFold(self.path, None)
        warned = ""
        while not self._stop.is_set():
            got = 0
            try:
                step = fold.poll()
                got = len(step.events)
                self._take(step)
                warned = ""
            except Exception as exc:
                # Fix (tests/reliability): anything else (a bug of ours, say) ended the thread
                # and froze the board without a word: report it and start reading again, after
                # what was delivered (not from the active segment's start all over again).
                if str(exc) != warned:
                    warned = str(exc)
                    what = str(exc) if isinstance(exc, LogError | OSError) else repr(exc)
                    self._report("error", f"cannot follow {self.path}: {what}")
                fold.reopen(f"reading was interrupted ({exc})")
                self._stop.wait(1.0)
            self._flush()
            if not got:
                self._stop.wait(self.poll)
        fold.close()

    def _take(self, step: Step) -> None:
        for gap in step.gaps:
            self._report("warning" if isinstance(gap, LineSkipped) else "error", describe_gap(gap))
        if step.events:
            self.last_seq = step.events[-1].seq
            self._add(step.events)


class StreamTail(Source):
    """Follows the log in the JetStream stream `stream` at `url` from its first event, as
    `LogTail` follows a file: every event delivered once, in order.

    Read-only (hbsm.log.jetstream_read.JetStreamReader: it never makes the stream). While the
    server cannot be reached, or has no such stream yet (the dashboard started before `hbsm
    run`), it says why, once per cause, and tries again every `retry` seconds; once it follows
    again it says so, and goes on after the last event it delivered."""

    def __init__(
        self,
        url: str,
        stream: str = DEFAULT_STREAM,
        *,
        poll: float = POLL,
        retry: float = 2.0,
        interval: float | None = None,
    ) -> None:
        super().__init__() if interval is None else super().__init__(interval)
        self.url, self.stream = url, stream
        self.poll, self.retry = poll, retry
        self.label = f"stream {stream} at {url}"
        self.last_seq = 0  # of the last event delivered (0: none yet)

    def _run(self) -> None:
        reader: JetStreamReader | None = None
        follower: JetStreamFollower | None = None
        warned = ""
        while not self._stop.is_set():
            got = 0
            try:
                if follower is None:
                    # Short waits: a server that does not answer is said within seconds.
                    reader = open_reader(self.url, self.stream, timeout=5.0)
                    follower = reader.follow(self.last_seq)
                    self._report("information", f"following {reader.where}")
                    warned = ""
                events = follower.poll()
                got = len(events)
                if events:
                    self.last_seq = events[-1].seq
                    self._add(events)
            except Exception as exc:
                # A LogError names the server and the stream; anything else is a bug of ours,
                # said rather than freezing the board (as LogTail does).
                what = str(exc) if isinstance(exc, LogError) else f"{self.label}: {exc!r}"
                _close(follower, reader)
                reader = follower = None
                if what != warned:
                    warned = what
                    self._report("error", f"{what}; trying again every {self.retry:g} s")
                self._stop.wait(self.retry)
            self._flush()
            if not got:
                self._stop.wait(self.poll)
        _close(follower, reader)


def _close(*things: Any) -> None:
    for thing in things:
        if thing is not None:
            with contextlib.suppress(Exception):  # already gone with its server: nothing to do
                thing.close()


class ApiStream(Source):
    """Follows `GET {url}/events` (from seq 0: the whole history the instance serves, then what
    comes), reconnecting with Last-Event-ID; admin actions POST with the same bearer token."""

    admin_enabled = True

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        interval: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__() if interval is None else super().__init__(interval)
        self.url = url.rstrip("/")
        self.label = f"api {self.url}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._headers = headers
        self._transport = transport
        self._client: httpx.Client | None = None
        self.last_seq = 0
        self.connected = False

    def _new_client(self, read_timeout: float) -> httpx.Client:
        options: dict[str, Any] = {
            "base_url": self.url,
            "headers": self._headers,
            "timeout": httpx.Timeout(10.0, read=read_timeout),
        }
        if self._transport is not None:
            options["transport"] = self._transport
        return httpx.Client(**options)

    def _interrupt(self) -> None:
        client = self._client
        if client is not None:
            # Closing under a reader: whatever it raises, the thread ends.
            with contextlib.suppress(Exception):
                client.close()

    def _run(self) -> None:
        flusher = threading.Thread(target=self._flush_loop, name="hbsm-api-flush", daemon=True)
        flusher.start()
        warned = ""
        while not self._stop.is_set():
            try:
                self._follow()
                warned = ""
            except (httpx.HTTPError, OSError, RuntimeError) as exc:
                if self._stop.is_set():
                    break
                message = f"{self.url}: {type(exc).__name__}: {exc}"
                if message != warned:
                    warned = message
                    self._report("error", f"event stream lost ({message}); reconnecting")
            except _Refused as exc:
                if str(exc) != warned:
                    warned = str(exc)
                    self._report("error", str(exc))
            self.connected = False
            self._stop.wait(2.0)
        flusher.join(1.0)

    def _flush_loop(self) -> None:
        while not self._stop.wait(POLL):
            self._flush()

    def _follow(self) -> None:
        # The server sends a comment every 15 s of silence: a read twice that long means dead.
        self._client = client = self._new_client(read_timeout=40.0)
        try:
            headers = {"Last-Event-ID": str(self.last_seq)} if self.last_seq else {}
            with client.stream(
                "GET", "/events", params={"since": str(self.last_seq)}, headers=headers
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise _Refused(f"{self.url}/events: {_explain(response)}")
                self.connected = True
                self._report("information", f"following {self.url}/events")
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line.startswith("data:"):
                        continue
                    try:
                        event = decode(line[5:].strip())
                    except EventDecodeError:
                        continue  # an `event: error` message or a line of a newer schema
                    if event.seq <= self.last_seq:
                        continue  # seen before the reconnect
                    self.last_seq = event.seq
                    self._add([event])
        finally:
            self._client = None
            client.close()

    def admin(self, action: str, service: str | None = None) -> AdminAnswer:
        """POST the action; never raises: an error becomes a failed answer to show."""
        if service is None:
            path = f"/admin/heartbeat/{action}"
        else:
            path = f"/admin/service/{service}/{action}"
        try:
            with self._new_client(read_timeout=10.0) as client:
                response = client.post(path)
        except httpx.HTTPError as exc:
            return AdminAnswer(False, f"{action}: {type(exc).__name__}: {exc}")
        if response.status_code != 200:
            return AdminAnswer(False, f"{action}: {_explain(response)}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        message = body.get("message") if isinstance(body, dict) else None
        ok = bool(body.get("ok", True)) if isinstance(body, dict) else True
        return AdminAnswer(ok, str(message or f"{action}: done"))


class _Refused(Exception):
    """The server answered, but not with a stream (401, 403, 404, 5xx)."""


def _explain(response: httpx.Response) -> str:
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("error") or body.get("message") or "")
    except ValueError:
        detail = response.text[:200]
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
