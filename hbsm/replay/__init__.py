"""`hbsm replay`: diagnosis from a recorded history, without running any side effect.

Pure modules (no I/O):

    window     --since/--until/--service: what is reported
    timeline   events -> readable timeline entries
    incidents  incidents, time to detect, time to recovery
    analysis   the plain replay: projection fold + timeline + incidents + counts
    verify     --verify: re-decide every recorded fact, compare with the recorded decisions
    whatif     --set KEY=VALUE: re-decide the recorded probes with changed thresholds
    report     text and JSON rendering

`command` wires them to the command line and is the only one that reads files.
"""

from hbsm.replay.analysis import Analysis, ReplayReport, StatsReport
from hbsm.replay.incidents import Incident, IncidentTracker, ServiceTally
from hbsm.replay.timeline import TimelineEntry
from hbsm.replay.verify import Divergence, Verifier, VerifyResult
from hbsm.replay.whatif import Override, OverrideError, WhatIf, WhatIfReport, parse_overrides
from hbsm.replay.window import Window, parse_time

__all__ = [
    "Analysis",
    "Divergence",
    "Incident",
    "IncidentTracker",
    "Override",
    "OverrideError",
    "ReplayReport",
    "ServiceTally",
    "StatsReport",
    "TimelineEntry",
    "Verifier",
    "VerifyResult",
    "WhatIf",
    "WhatIfReport",
    "Window",
    "parse_overrides",
    "parse_time",
]
