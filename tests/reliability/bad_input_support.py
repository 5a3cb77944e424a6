"""Helpers of the bad-input tests: the real `hbsm` command line, in a child process or in this
one, and the check that an error is one clear line (never a traceback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hbsm.cli import main

__all__ = [
    "Done",
    "clean_env",
    "finish",
    "hbsm_inline",
    "one_error_line",
    "run_hbsm",
    "start_hbsm",
    "without_read_override",
]

PY = sys.executable
# Only a deadline for a hang: a bad input is refused within a second on an idle machine.
HANG = 60.0


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any HEARTBEAT_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
    env.update(extra or {})
    return env


def start_hbsm(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> subprocess.Popen[str]:
    """`python -m hbsm ARGS` in a child process (started, not waited for); `wrapper`: a
    command that runs it (`setpriv ...`)."""
    return subprocess.Popen(
        [*wrapper, PY, "-m", "hbsm", *map(str, args)],
        cwd=cwd,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )


def finish(child: subprocess.Popen[str]) -> Done:
    try:
        out, err = child.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        raise AssertionError(f"hbsm did not answer within {HANG:g} s: {child.args}") from None
    return Done(child.returncode, out, err)


def run_hbsm(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> Done:
    return finish(start_hbsm(args, cwd=cwd, env=env, wrapper=wrapper))


def hbsm_inline(args: Sequence[str | os.PathLike[str]], capsys: pytest.CaptureFixture[str]) -> Done:
    """The same command line run in this process (`hbsm.cli.main`): the parser, the dispatch
    and the command are the real ones; an exception escaping them fails the test."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return Done(code, out, err)


def one_error_line(done: Done, code: int = 2) -> str:
    """The one line `done` wrote on stderr, after checking the exit code and that no
    traceback or second line came with it."""
    assert done.returncode == code, (done.returncode, done.stderr, done.stdout)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def without_read_override() -> list[str] | None:
    """A wrapper that runs a command without the right to read every file and search every
    directory (root has it: the tests run as root here), or [] when we do not have it anyway;
    None when neither is possible here."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
