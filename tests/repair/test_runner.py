"""RepairRunner.run_step: whatever a step does, the outcome is a RepairFinished, never a raise."""

from __future__ import annotations

import asyncio
import time

from hbsm.config.model import StepConfig
from hbsm.events import Probe
from hbsm.repair import BUILTIN_STEPS, StepContext, StepOutcome

from .support import probe_returning, runner, service_to_repair, started

NO_PROBE = probe_returning()


async def run_custom(tmp_path, step, settings: StepConfig | None = None, **kwargs):
    svc = service_to_repair(steps={"custom": settings} if settings is not None else {})
    r = runner(tmp_path, steps={**BUILTIN_STEPS, "custom": step}, **kwargs)
    return await r.run_step(svc, started("custom", run=4, index=2), failure=None, probe=NO_PROBE)


async def test_a_custom_step_gets_its_context_and_its_outcome_is_recorded(tmp_path):
    seen: list[StepContext] = []

    async def step(ctx: StepContext) -> StepOutcome:
        seen.append(ctx)
        return StepOutcome(ok=True, output=f"option={ctx.settings.options['level']}")

    done = await run_custom(tmp_path, step, StepConfig(options={"level": 3}), clock=lambda: 123.5)
    assert (done.ok, done.output, done.error_class) == (True, "option=3", None)
    assert (done.service, done.run, done.step, done.index, done.ts) == (
        "api",
        4,
        "custom",
        2,
        123.5,
    )
    ctx = seen[0]
    assert ctx.service.name == "api" and ctx.log_dir == tmp_path and ctx.step == "custom"


async def test_a_step_that_raises_is_a_failed_outcome_with_the_message(tmp_path):
    async def step(ctx: StepContext) -> StepOutcome:
        raise RuntimeError("cache server unreachable")

    done = await run_custom(tmp_path, step)
    assert not done.ok
    assert done.output == "step 'custom' raised RuntimeError: cache server unreachable"


async def test_a_step_raising_its_own_timeout_error_is_not_reported_as_our_timeout(tmp_path):
    async def step(ctx: StepContext) -> StepOutcome:
        raise TimeoutError("upstream did not answer")

    done = await run_custom(tmp_path, step, StepConfig(timeout=30))
    assert not done.ok
    assert "raised TimeoutError: upstream did not answer" in done.output


async def test_a_hanging_step_times_out_keeping_what_it_wrote(tmp_path):
    async def step(ctx: StepContext) -> StepOutcome:
        ctx.output.write("flushing 3 caches\n")
        await asyncio.sleep(60)
        return StepOutcome(ok=True)

    t0 = time.monotonic()
    done = await run_custom(tmp_path, step, StepConfig(timeout=0.2))
    assert time.monotonic() - t0 < 5
    assert not done.ok
    assert done.output == "flushing 3 caches\ntimed out after 0.2 s"
    assert done.duration_ms >= 200


async def test_a_step_returning_something_else_is_a_failed_outcome(tmp_path):
    async def step(ctx: StepContext):
        return "fine"

    done = await run_custom(tmp_path, step)
    assert not done.ok and "returned str, not a StepOutcome" in done.output


async def test_a_step_that_is_not_async_is_a_failed_outcome(tmp_path):
    def step(ctx: StepContext) -> StepOutcome:
        return StepOutcome(ok=True)

    done = await run_custom(tmp_path, step)
    assert not done.ok and "raised TypeError" in done.output


async def test_the_output_is_bounded_keeping_its_end(tmp_path):
    async def step(ctx: StepContext) -> StepOutcome:
        return StepOutcome(ok=False, output="a" * 10_000 + "THE END")

    done = await run_custom(tmp_path, step, output_limit=100)
    assert len(done.output) == 100
    assert done.output.startswith("…") and done.output.endswith("aTHE END")


async def test_the_duration_is_measured(tmp_path):
    async def step(ctx: StepContext) -> StepOutcome:
        await asyncio.sleep(0.15)
        return StepOutcome(ok=True)

    done = await run_custom(tmp_path, step)
    assert 150 <= done.duration_ms < 5000


async def test_the_error_class_is_passed_on(tmp_path):
    fresh = Probe(service="api", ok=False, error="http_5xx", status=502, detail="bad gateway")
    r = runner(tmp_path)
    done = await r.run_step(
        service_to_repair(), started("diagnose"), failure=fresh, probe=probe_returning(fresh)
    )
    assert done.ok and done.error_class == "http_5xx"


async def test_the_restart_step_is_not_run_here(tmp_path):
    done = await runner(tmp_path).run_step(
        service_to_repair(), started("restart"), failure=None, probe=NO_PROBE
    )
    assert not done.ok and done.output == "restart is carried out by restart()"


async def test_an_unknown_step_fails_naming_the_known_ones(tmp_path):
    done = await runner(tmp_path, steps=dict(BUILTIN_STEPS)).run_step(
        service_to_repair(), started("defragment"), failure=None, probe=NO_PROBE
    )
    assert not done.ok
    assert "unknown repair step 'defragment'" in done.output and "check_config" in done.output


async def test_a_step_without_settings_runs_with_the_defaults(tmp_path):
    seen: list[StepConfig] = []

    async def step(ctx: StepContext) -> StepOutcome:
        seen.append(ctx.settings)
        return StepOutcome(ok=True)

    await run_custom(tmp_path, step)
    assert seen == [StepConfig()]
