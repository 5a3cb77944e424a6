"""The events of the log: frozen msgspec Structs in one tagged union (tag field `type`).

Every event has `seq` (strictly increasing in a log, stamped by the log on append) and `ts` (UTC,
seconds since the epoch: the FSM takes its time from here, never from a clock). Facts are what
hbsm observed (probe, repair.finished, restart.finished, admin, process.started, process.lost,
cert.seen); decisions are what the state machine concluded from them (transition,
repair.started, restart.started, cert.expiring). Schema and examples: events/README.md.

Forward compatibility: new fields get defaults, unknown fields are ignored, and a line whose
`type` this version does not know decodes to an `OpaqueEvent` instead of failing.

This module is the public face of two private ones: `hbsm._event_kinds` (the Structs) and
`hbsm._event_codec` (encoding, decoding, and why a line is not an event).
"""

from __future__ import annotations

from hbsm._event_codec import EventDecodeError, decode, decode_lines, encode, encode_lines
from hbsm._event_kinds import (
    EVENT_TYPES,
    LATENCY_HISTORY,
    TS_END,
    TYPE_NAMES,
    Admin,
    AnyEvent,
    CertExpiring,
    CertSeen,
    ConfigReloaded,
    Event,
    LogOutage,
    LogRecovered,
    MonitorCaughtUp,
    MonitorOverloaded,
    MonitorStarted,
    MonitorStopped,
    MonitorView,
    Notification,
    OpaqueEvent,
    Probe,
    ProbeSeen,
    ProcessLost,
    ProcessStarted,
    ProcessStopped,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceOwned,
    ServiceRegistered,
    ServiceRemoved,
    ServiceView,
    Snapshot,
    Transition,
    Vote,
    type_name,
)

__all__ = [
    "EVENT_TYPES",
    "LATENCY_HISTORY",
    "TS_END",
    "TYPE_NAMES",
    "Admin",
    "AnyEvent",
    "CertExpiring",
    "CertSeen",
    "ConfigReloaded",
    "Event",
    "EventDecodeError",
    "LogOutage",
    "LogRecovered",
    "MonitorCaughtUp",
    "MonitorOverloaded",
    "MonitorStarted",
    "MonitorStopped",
    "MonitorView",
    "Notification",
    "OpaqueEvent",
    "Probe",
    "ProbeSeen",
    "ProcessLost",
    "ProcessStarted",
    "ProcessStopped",
    "RepairFinished",
    "RepairStarted",
    "RestartFinished",
    "RestartStarted",
    "ServiceOwned",
    "ServiceRegistered",
    "ServiceRemoved",
    "ServiceView",
    "Snapshot",
    "Transition",
    "Vote",
    "decode",
    "decode_lines",
    "encode",
    "encode_lines",
    "type_name",
]
