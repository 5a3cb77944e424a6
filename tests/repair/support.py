"""Helpers for the repair tests: services, step requests, child scripts."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from hbsm.config.model import RestartConfig, ServiceConfig, StepConfig
from hbsm.events import Probe, RepairStarted, RestartStarted
from hbsm.repair import RepairRunner, Supervisor
from hbsm.repair._process import alive

PY = sys.executable

__all__ = ["PY", "alive", "probe_returning", "py", "runner", "service_to_repair", "started"]


def service_to_repair(
    name: str = "api",
    *,
    steps: dict[str, StepConfig] | None = None,
    restart: RestartConfig | None = None,
) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        url="http://127.0.0.1:9/health",
        steps=steps or {},
        restart=restart or RestartConfig(),
    )


def started(step: str, *, service: str = "api", run: int = 1, index: int = 0) -> RepairStarted:
    return RepairStarted(
        ts=1.0, service=service, run=run, step=step, index=index, ladder=(step, "restart")
    )


def restart_started(service: str = "api") -> RestartStarted:
    return RestartStarted(ts=1.0, service=service, attempt=1, recent=[1.0])


def probe_returning(*results: Probe) -> Callable[[], asyncio.Future[Probe]]:
    """A probe callable answering the given facts in turn (the last one repeats)."""
    answers = list(results)
    calls: list[int] = []

    async def probe() -> Probe:
        calls.append(1)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    probe.calls = calls  # type: ignore[attr-defined]
    return probe  # type: ignore[return-value]


def py(code: str) -> list[str]:
    """argv running a Python snippet with this interpreter."""
    return [PY, "-c", code]


def runner(tmp_path: Path, **kwargs: object) -> RepairRunner:
    supervisor = kwargs.pop("supervisor", None) or Supervisor(output_dir=tmp_path / "out")
    return RepairRunner(supervisor=supervisor, log_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
