"""What a repair step is: the context it gets, the outcome it returns, and a bounded output tail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hbsm.config.model import ServiceConfig, StepConfig
from hbsm.events import Probe

if TYPE_CHECKING:
    from hbsm.repair.supervisor import Supervisor

__all__ = ["DEFAULT_OUTPUT_LIMIT", "OutputTail", "RepairStep", "StepContext", "StepOutcome"]

DEFAULT_OUTPUT_LIMIT = 4096
_ELLIPSIS = "…"


class OutputTail:
    """The last `limit` bytes written to it: memory stays bounded however much a command prints.

    A step may write its progress here as it goes; if the step times out, the runner records
    what the tail holds by then (a step's returned outcome would be lost with it).
    """

    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.total = 0  # bytes written, kept or not
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if len(data) >= self.limit:
            self._buf[:] = data[-self.limit :]
            return
        self._buf += data
        excess = len(self._buf) - self.limit
        if excess > 0:
            del self._buf[:excess]

    def write(self, text: str) -> None:
        self.feed(text.encode("utf-8", "replace"))

    @property
    def truncated(self) -> bool:
        return self.total > len(self._buf)

    def text(self) -> str:
        """The tail as text, beginning with "…" when the start was dropped."""
        data = bytes(self._buf)
        if not self.truncated:
            return data.decode("utf-8", "replace")
        # The cut may have split a UTF-8 sequence: drop its orphaned continuation bytes.
        skip = 0
        while skip < min(3, len(data)) and 0x80 <= data[skip] <= 0xBF:
            skip += 1
        return _ELLIPSIS + data[skip:].decode("utf-8", "replace")


def bounded(text: str, limit: int) -> str:
    """The end of `text`, at most `limit` characters (the end says what went wrong)."""
    if len(text) <= limit:
        return text
    if limit <= len(_ELLIPSIS):
        return text[-limit:]
    return _ELLIPSIS + text[-(limit - len(_ELLIPSIS)) :]


@dataclass(frozen=True)
class StepOutcome:
    """How a step ended. `error_class` is for `diagnose` (one of hbsm.state.ERROR_CLASSES).
    `verify` false: the step changed nothing and the failure stands (it saw it, or only looked
    at files), so no verification probe follows it: the run goes on at once."""

    ok: bool
    output: str = ""
    error_class: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class StepContext:
    """Everything one run of one step may use."""

    service: ServiceConfig
    settings: StepConfig  # service.steps.get(step_name, StepConfig())
    failure: Probe | None  # the last failed probe
    probe: Callable[[], Awaitable[Probe]]  # one fresh probe of the service
    supervisor: Supervisor
    log_dir: Path  # where a step may write files of its own
    # Progress written here survives a timeout (the runner records it); bounded.
    output: OutputTail = field(default_factory=OutputTail)
    step: str = ""  # the name the step runs under (its entry-point name for custom steps)
    # The service's last probe when it failed within the last check interval (the one that led
    # to this step): what `diagnose` classifies instead of waiting out another probe.
    seen: Probe | None = None


RepairStep = Callable[[StepContext], Awaitable[StepOutcome]]
