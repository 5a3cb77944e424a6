"""Carry out one repair step or one restart the state machine asked for, and describe how it
ended. The runner never decides what comes next, and never raises for a step's failure: every
way a step can end (done, failed, raised, timed out) is a RepairFinished fact."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from hbsm.config.model import ServiceConfig, StepConfig
from hbsm.events import Probe, RepairFinished, RepairStarted, RestartFinished, RestartStarted
from hbsm.repair._base import (
    DEFAULT_OUTPUT_LIMIT,
    OutputTail,
    RepairStep,
    StepContext,
    StepOutcome,
    bounded,
)
from hbsm.repair._process import run_command
from hbsm.repair.registry import load_steps
from hbsm.repair.supervisor import Supervisor
from hbsm.state import RESTART_STEP

__all__ = ["RepairRunner"]


class RepairRunner:
    def __init__(
        self,
        *,
        supervisor: Supervisor,
        steps: dict[str, RepairStep] | None = None,
        log_dir: Path,
        clock: Callable[[], float] = time.time,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        """`steps`: name → step; None loads the built-ins and the `hbsm.repairs` entry points.
        `clock` stamps the outcomes' `ts`; durations are measured on the monotonic clock."""
        if output_limit < 1:
            raise ValueError("output_limit must be >= 1")
        self.supervisor = supervisor
        self.steps = load_steps() if steps is None else dict(steps)
        self.log_dir = Path(log_dir)
        self.clock = clock
        self.output_limit = output_limit

    async def run_step(
        self,
        service: ServiceConfig,
        started: RepairStarted,
        *,
        failure: Probe | None,
        probe: Callable[[], Awaitable[Probe]],
        seen: Probe | None = None,
    ) -> RepairFinished:
        """Run `started.step` for `service` within its timeout and return its outcome. `seen`:
        a failed probe just recorded, which a step may take as the service's state now."""
        settings = service.steps.get(started.step, StepConfig())
        t0 = time.monotonic()
        outcome = await self._outcome(service, started.step, settings, failure, probe, seen)
        return RepairFinished(
            ts=self.clock(),
            service=started.service,
            run=started.run,
            step=started.step,
            index=started.index,
            ok=outcome.ok,
            output=bounded(outcome.output, self.output_limit),
            duration_ms=(time.monotonic() - t0) * 1000.0,
            error_class=outcome.error_class,
            verify=outcome.verify,
        )

    async def _outcome(
        self,
        service: ServiceConfig,
        name: str,
        settings: StepConfig,
        failure: Probe | None,
        probe: Callable[[], Awaitable[Probe]],
        seen: Probe | None,
    ) -> StepOutcome:
        if name == RESTART_STEP:
            return StepOutcome(ok=False, output="restart is carried out by restart()")
        step = self.steps.get(name)
        if step is None:
            known = ", ".join(sorted(self.steps)) or "none"
            return StepOutcome(ok=False, output=f"unknown repair step {name!r} (known: {known})")
        ctx = StepContext(
            service=service,
            settings=settings,
            failure=failure,
            probe=probe,
            supervisor=self.supervisor,
            log_dir=self.log_dir,
            output=OutputTail(self.output_limit),
            step=name,
            seen=seen,
        )
        timeout = asyncio.timeout(settings.timeout)
        try:
            async with timeout:
                outcome = await step(ctx)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and timeout.expired():
                out = _after(ctx.output, _timed_out(settings.timeout))
                return StepOutcome(ok=False, output=out)
            # Anything else, a TimeoutError of the step's own included, is the step's failure.
            return StepOutcome(ok=False, output=_after(ctx.output, _raised(name, exc)))
        if not isinstance(outcome, StepOutcome):
            return StepOutcome(
                ok=False,
                output=f"step {name!r} returned {type(outcome).__name__}, not a StepOutcome",
            )
        return outcome

    async def restart(self, service: ServiceConfig, started: RestartStarted) -> RestartFinished:
        """Restart the service as its RestartConfig says; never raises for a failed restart."""
        cfg = service.restart
        t0 = time.monotonic()
        exit_code: int | None = None
        pid: int | None = None
        if cfg.kind == "supervise":
            try:
                pid, output = await self.supervisor.restart(service.name, cfg)
                ok = True
            except Exception as exc:
                ok, output = False, f"restart failed: {exc}"
        elif cfg.kind == "command":
            ok, output, exit_code = await self._restart_command(service)
        else:
            ok, output = False, 'no restart configured (restart.kind = "none")'
        return RestartFinished(
            ts=self.clock(),
            service=started.service,
            ok=ok,
            output=bounded(output, self.output_limit),
            duration_ms=(time.monotonic() - t0) * 1000.0,
            exit_code=exit_code,
            pid=pid,
        )

    async def _restart_command(self, service: ServiceConfig) -> tuple[bool, str, int | None]:
        cfg = service.restart
        if not cfg.argv:
            return False, "restart command: no argv configured (restart.argv)", None
        tail = OutputTail(self.output_limit)
        env = {**os.environ, **cfg.env} if cfg.env else None
        try:
            async with asyncio.timeout(cfg.timeout):
                code = await run_command(cfg.argv, tail, cwd=cfg.cwd, env=env)
        except TimeoutError:
            return False, _after(tail, _timed_out(cfg.timeout) + ", its process group killed"), None
        except OSError as exc:
            return False, f"cannot run {cfg.argv[0]!r}: {exc}", None
        status = f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
        return code == 0, _after(tail, f"{' '.join(cfg.argv)}: {status}"), code


def _timed_out(seconds: float) -> str:
    return f"timed out after {seconds:g} s"


def _raised(name: str, exc: BaseException) -> str:
    return f"step {name!r} raised {type(exc).__name__}: {exc}"


def _after(tail: OutputTail, last_line: str) -> str:
    """The output so far, then the line that says how it ended (last: tails keep the end)."""
    text = tail.text().rstrip("\n")
    return f"{text}\n{last_line}" if text else last_line
