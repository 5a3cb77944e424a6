"""load_steps: custom steps from the entry-point group `hbsm.repairs`, discovered for real by
importlib.metadata from a `*.dist-info` directory put on sys.path (no pip install)."""

from __future__ import annotations

import logging
import sys
import tomllib
from pathlib import Path

import pytest

from hbsm.config.model import StepConfig
from hbsm.repair import BUILTIN_STEPS, ENTRY_POINT_GROUP, load_steps

from .support import probe_returning, runner, service_to_repair, started

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_step"

MODULE = """
from hbsm.repair import StepOutcome

NOT_CALLABLE = 42

async def flush_queue(ctx):
    return StepOutcome(ok=True, output="flushed " + ctx.settings.options.get("queue", "?"))

async def fake_diagnose(ctx):
    return StepOutcome(ok=True, output="not the real diagnose")
"""


def install(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """What `pip install` leaves behind, as far as importlib.metadata is concerned."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path, taken off again (with the modules imported from it) after."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    before = set(sys.modules)
    yield root
    for name in set(sys.modules) - before:
        if name.startswith("hbsm_"):
            del sys.modules[name]


def test_without_plugins_the_builtins_are_there():
    steps = load_steps()
    assert set(BUILTIN_STEPS) <= set(steps)
    assert "restart" not in steps  # restart is RepairRunner.restart, not a step


async def test_a_custom_step_is_loaded_and_runs(site, tmp_path):
    install(
        site,
        "hbsm-test-steps",
        {"flush_queue": "hbsm_test_steps:flush_queue"},
        {"hbsm_test_steps": MODULE},
    )
    steps = load_steps()
    assert "flush_queue" in steps
    svc = service_to_repair(steps={"flush_queue": StepConfig(options={"queue": "mail"})})
    done = await runner(tmp_path, steps=steps).run_step(
        svc, started("flush_queue"), failure=None, probe=probe_returning()
    )
    assert done.ok and done.output == "flushed mail"


def test_broken_entry_points_are_reported_and_skipped(site, caplog):
    install(
        site,
        "hbsm-broken-steps",
        {
            "good": "hbsm_test_steps2:flush_queue",
            "missing_module": "hbsm_no_such_module_xyz:step",
            "missing_name": "hbsm_test_steps2:no_such_name",
            "not_callable": "hbsm_test_steps2:NOT_CALLABLE",
            "diagnose": "hbsm_test_steps2:fake_diagnose",
        },
        {"hbsm_test_steps2": MODULE},
    )
    with caplog.at_level(logging.WARNING, logger="hbsm.repair"):
        steps = load_steps()
    assert "good" in steps
    for name in ("missing_module", "missing_name", "not_callable"):
        assert name not in steps
    assert steps["diagnose"] is BUILTIN_STEPS["diagnose"]  # a plugin cannot replace a built-in
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "'missing_module'" in messages and "ModuleNotFoundError" in messages
    assert "'missing_name'" in messages and "AttributeError" in messages
    assert "'not_callable'" in messages and "not a callable" in messages
    assert "'diagnose'" in messages and "built in" in messages
    assert "hbsm-broken-steps" in messages  # the distribution to blame is named


async def test_the_example_custom_step_works(site, tmp_path):
    """examples/custom_step, registered as its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == {"clear_cache": "hbsm_clear_cache:clear_cache"}
    source = (EXAMPLE / "hbsm_clear_cache.py").read_text()
    install(site, project["project"]["name"], declared, {"hbsm_clear_cache": source})

    cache = tmp_path / "cache"
    (cache / "sub").mkdir(parents=True)
    (cache / "a.bin").write_bytes(b"x")
    (cache / "sub" / "b.bin").write_bytes(b"y")
    (cache / ".gitkeep").write_text("")
    svc = service_to_repair(
        steps={"clear_cache": StepConfig(options={"path": str(cache), "keep": [".gitkeep"]})}
    )
    done = await runner(tmp_path).run_step(  # steps=None: the runner loads them itself
        svc, started("clear_cache"), failure=None, probe=probe_returning()
    )
    assert done.ok, done.output
    assert done.output == f"clear_cache: removed 2 entries from {cache}"
    assert [p.name for p in cache.iterdir()] == [".gitkeep"]

    no_path = await runner(tmp_path).run_step(
        service_to_repair(), started("clear_cache"), failure=None, probe=probe_returning()
    )
    assert not no_path.ok and "set options.path" in no_path.output


def test_the_example_readme_shows_the_example_as_it_is():
    readme = (EXAMPLE / "README.md").read_text()
    shown = readme.split("```python\n# hbsm_clear_cache.py\n", 1)[1].split("```", 1)[0]
    source = (EXAMPLE / "hbsm_clear_cache.py").read_text()
    assert shown.strip() and source.rstrip().endswith(shown.rstrip())
