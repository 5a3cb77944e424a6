"""`HbsmError`: the one base of every error hbsm raises for a caller to handle.

`except HbsmError` catches all of them. Each class lives beside the code that raises it (its
module on the right); where callers already caught one by a built-in base, it keeps that base
too (named after `+`), so nothing that caught it before stops catching it.

    HbsmError
    ├── LogError               hbsm.log: anything the event log cannot do; one line naming the file
    │   ├── LogLockedError     hbsm.log: another writer holds the log's lock
    │   ├── LogUnavailableError hbsm.log: writes refused for now from outside (a NATS server down)
    │   │   └── JetStreamWriterError hbsm.log.jetstream: another writer appended to the stream
    │   ├── CorruptLineError   hbsm.log: a line that is not an event, or whose seq does not increase
    │   │   └── SeqHoleError   hbsm.log: a segment begins past the seq after the previous one's last
    │   ├── SegmentPrunedError hbsm.log: retention deleted the segment a follower needed next
    │   └── LogUnwritableError hbsm.monitor.outage: an admin action while the log cannot be written
    ├── BadLine                hbsm.log.blocks: a block's first bad line, read without skip_bad
    ├── EventDecodeError       hbsm.events, + ValueError: a line that is not an event
    ├── NotOwnerError          hbsm.cluster: an action on a service another node owns
    ├── ReloadUnavailableError hbsm.monitor.reload: no file to read again, or one node of several
    ├── UnknownRulesError      hbsm.fsm, + ValueError: a log written under rules this hbsm lacks
    ├── ConfigError            hbsm.config: the configuration cannot be used (one line: where, why)
    ├── SupervisorError        hbsm.repair, + RuntimeError: a supervised process did not start
    ├── ListenError            hbsm.api: the API cannot listen on the address asked for
    ├── NotRunning             hbsm.api.source: no monitor to answer now (one embedded in Flask)
    ├── OverrideError          hbsm.replay, + ValueError: a bad `hbsm replay --set`
    ├── BadInput               hbsm.replay.reading: a file `hbsm replay` cannot read (exit 2)
    └── Unreachable            hbsm.check.checks: nothing answers at the URL `hbsm check` was given

Outside the tree, on purpose: private exceptions that steer control flow inside one module and
never reach a caller.

* `_BadEncoding` (hbsm.probes._body): a body that cannot be decoded; the prober turns it into a
  failed probe.
* `_ProtocolError` (hbsm.probes._lean): the target broke HTTP on the lean path; a failed probe of
  class `protocol`.
* `_PartialAnswer` (hbsm.probes._lean): carries the status of an answer cut short to the
  prober, which records it with the failed probe.
* `_Refused` (hbsm.api.guard): stops the HTTP parser on a request that broke a limit; the guard
  answers it in JSON.
* `_Failed` (hbsm.check.checks): one check's failure; `hbsm check` turns it into a FAIL line.
"""

from __future__ import annotations

__all__ = ["HbsmError"]


class HbsmError(Exception):
    """Base of every error hbsm raises for a caller to handle."""
