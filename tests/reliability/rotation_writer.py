"""The writer of tests/reliability/test_rotation_readers.py: a separate process (as `hbsm run` is
to the Flask app and the dashboard) appending to a real FileEventLog that rotates often.

Run as `python rotation_writer.py LOG MAX_BYTES KEEP_SEGMENTS`. Like the monitor it folds every
batch it appends into a Projection and opens each new segment with that projection's snapshot,
so a reader that starts at a segment's snapshot must end with the state of the whole history.

It prints "open" once the log is open (the file exists, empty), then obeys stdin, one command a
line, and answers each with "<last_seq> <active segment>":

    burst N     append N batches as fast as it can (each flushed: the monitor's group commit)
    until S     append batches until the active segment is S or later
    reopen K    close the log and open it again keeping K closed segments (a restarted monitor
                with another retention)
    quit        close the log (which waits for the last segment's compression) and exit
"""

from __future__ import annotations

import os
import sys
import time

from hbsm.events import Event, MonitorStarted, Probe, ServiceRegistered, Transition
from hbsm.log import FileEventLog
from hbsm.projection import Projection

SERVICES = [f"svc-{i}" for i in range(4)]


class Writer:
    def __init__(self, path: str, max_bytes: int, keep_segments: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.projection = Projection()
        self.log = self.open(keep_segments)
        self.batches = 0

    def open(self, keep_segments: int) -> FileEventLog:
        return FileEventLog.open(
            self.path,
            fsync="never",  # the readers are what is tested, not the disk: write fast
            max_bytes=self.max_bytes,
            keep_segments=keep_segments,
            snapshot=lambda segment: self.projection.snapshot(segment, time.time()),
        )

    def append(self, events: list[Event]) -> None:
        self.projection.apply_all(self.log.append(events))
        self.log.flush()

    def start(self) -> None:
        self.append([MonitorStarted(pid=os.getpid(), version="rotation-test", config={"n": 4})])
        self.append(
            [ServiceRegistered(service=name, critical=name == "svc-0") for name in SERVICES]
        )

    def batch(self) -> None:
        """1 to 7 probes, every fifth one failed; now and then a service changes state."""
        n = self.batches
        self.batches += 1
        events: list[Event] = [
            Probe(service=SERVICES[(n + i) % len(SERVICES)], ok=(n + i) % 5 != 0,
                  latency_ms=float((n * 7 + i) % 97), status=200)
            for i in range(n % 7 + 1)
        ]  # fmt: skip
        if n % 11 == 0:
            name = SERVICES[n % len(SERVICES)]
            view = self.projection.services.get(name)
            src = view.fsm.state if view is not None else "unknown"
            dst = "degraded" if src == "healthy" else "healthy"
            events.append(Transition(service=name, src=src, dst=dst, trigger="probe"))
        self.append(events)

    def answer(self) -> None:
        print(self.log.last_seq, self.log.segment, flush=True)


def main() -> None:
    path, max_bytes, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    writer = Writer(path, max_bytes, keep)
    print("open", flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "burst":
            if writer.log.last_seq == 0:
                writer.start()
            for _ in range(int(arg)):
                writer.batch()
        elif command == "until":
            while writer.log.segment < int(arg):
                writer.batch()
        elif command == "reopen":
            writer.log.close()
            writer.log = writer.open(int(arg))
        elif command == "quit":
            writer.log.close()
            print(writer.log.last_seq, writer.log.segment, flush=True)
            return
        else:
            raise SystemExit(f"rotation_writer: unknown command {line!r}")
        writer.answer()


if __name__ == "__main__":
    main()
