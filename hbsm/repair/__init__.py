"""The graded repair ladder's steps and restarts (docs/architecture.md), carried out one at a time.

The state machine (`hbsm.fsm`) decides which step runs next and emits `RepairStarted` /
`RestartStarted`; the runtime logs them, then asks a `RepairRunner` to carry one out and logs
the `RepairFinished` / `RestartFinished` it returns. Built-in steps: `diagnose`,
`check_config`, `http`, `command`, `signal`; `restart` is `RepairRunner.restart` (a process
the `Supervisor` runs, or a command). Custom steps come from the entry-point group
`hbsm.repairs`: each is an async callable `(StepContext) -> StepOutcome`.
"""

from hbsm.repair._base import OutputTail, RepairStep, StepContext, StepOutcome
from hbsm.repair.registry import BUILTIN_STEPS, ENTRY_POINT_GROUP, load_steps
from hbsm.repair.runner import RepairRunner
from hbsm.repair.supervisor import Supervisor, SupervisorError

__all__ = [
    "BUILTIN_STEPS",
    "ENTRY_POINT_GROUP",
    "OutputTail",
    "RepairRunner",
    "RepairStep",
    "StepContext",
    "StepOutcome",
    "Supervisor",
    "SupervisorError",
    "load_steps",
]
