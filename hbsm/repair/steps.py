"""The built-in repair steps (docs/architecture.md). Each runs once and describes what it found;
none decides what comes next (the state machine does), and `diagnose` and `check_config` change
nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal as signals
import tomllib
from pathlib import Path

from hbsm.events import Probe
from hbsm.repair._base import StepContext, StepOutcome
from hbsm.repair._process import run_command
from hbsm.state import ERROR_CLASSES

__all__ = ["check_config", "command", "diagnose", "http", "signal"]

_PORT_TIMEOUT = 1.0


async def diagnose(ctx: StepContext) -> StepOutcome:
    """Classify the failure; "recovered" (class None) when the service answers.

    What it classifies is the failed probe the monitor has just recorded (`ctx.seen`), when
    there is one: probing again would only wait out the same timeout a second time on a hung
    service, before the run could go on. Without one (a run an operator asked for, a failure
    older than a check interval) it probes once more. A failure found needs no verification
    probe: diagnose changed nothing, the run goes on at once."""
    seen = ctx.seen
    if seen is not None and not seen.ok:
        looked = seen
        source = f" (reused {_cite(seen)}: not probed again)"
    else:
        looked, source = await ctx.probe(), ""
    if looked.ok and looked.error is None:
        found = "recovered"
        cls = None
    else:
        cls = looked.error if looked.error in ERROR_CLASSES else "other"
        found = cls
    lines = [f"{found}: {_describe(looked)}{source}"]
    failure = ctx.failure
    if cls is not None and failure is not None and failure.error not in (None, cls):
        lines.append(f"(the failure before: {failure.error}: {_describe(failure)})")
    # Recovered: the probe after it confirms it, as after any step.
    return StepOutcome(ok=True, output="\n".join(lines), error_class=cls, verify=cls is None)


def _cite(p: Probe) -> str:
    """A recorded probe, as the log names it."""
    return f"probe #{p.seq}" if p.seq else "the last probe"


def _describe(p: Probe) -> str:
    detail, status, latency = p.detail, p.status, p.latency_ms
    extra = []
    if status is not None and str(status) not in detail:
        extra.append(f"status {status}")
    if latency is not None:
        extra.append(f"{latency:.0f} ms")
    if not detail:
        return ", ".join(extra) or "no detail"
    return f"{detail} ({', '.join(extra)})" if extra else detail


async def check_config(ctx: StepContext) -> StepOutcome:
    """settings.files exist and parse (.toml, .json; others: readable); report settings.port.

    It only reads: the service is as it was before, so no verification probe follows it."""
    s = ctx.settings
    if not s.files and s.port is None:
        return StepOutcome(
            ok=True, output="nothing to check: no files or port configured", verify=False
        )
    base = Path(s.cwd) if s.cwd else None
    results = await asyncio.to_thread(lambda: [_check_file(f, base) for f in s.files])
    lines = [line for _, line in results]
    if s.port is not None:
        lines.append(await _port_report(s.port))
    bad = [line for good, line in results if not good]
    if bad:
        # The first broken file first, in one line: what the state machine quotes when it
        # holds a restart back.
        lines.remove(bad[0])
        lines.insert(0, f"{len(bad)} of {len(results)} files broken: {bad[0]}")
    return StepOutcome(ok=not bad, output="\n".join(lines), verify=False)


def _check_file(name: str, base: Path | None) -> tuple[bool, str]:
    path = Path(name)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False, f"{path}: missing"
    except IsADirectoryError:
        return False, f"{path}: is a directory, not a file"
    except OSError as exc:
        return False, f"{path}: unreadable: {exc.strerror}"
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        return True, f"{path}: ok (exists, readable, {len(data)} bytes)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return False, f"{path}: not UTF-8 at byte {exc.start}"
    if suffix == ".toml":
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message ends in "(at line N, column M)".
            return False, f"{path}: invalid TOML: {exc}"
        return True, f"{path}: ok (TOML)"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return False, f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    return True, f"{path}: ok (JSON)"


async def _port_report(port: int) -> str:
    where = f"127.0.0.1:{port}"
    try:
        connecting = asyncio.open_connection("127.0.0.1", port)
        _, writer = await asyncio.wait_for(connecting, _PORT_TIMEOUT)
    except ConnectionRefusedError:
        return f"port {port}: free (nothing listens on {where})"
    except TimeoutError:
        return f"port {port}: no answer on {where} within {_PORT_TIMEOUT:g} s"
    except OSError as exc:
        return f"port {port}: cannot connect to {where}: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return f"port {port}: bound (something listens on {where})"


async def http(ctx: StepContext) -> StepOutcome:
    """settings.method settings.url with settings.body as JSON; ok on 2xx."""
    s = ctx.settings
    if not s.url:
        return StepOutcome(ok=False, output="http step: no url configured (steps.http.url)")
    what = f"{s.method.upper()} {s.url}"
    # Imported by the first http step, not at start-up: httpx (several MB resident) is not held
    # by a monitor whose ladders never call a hook.
    import httpx

    # trust_env=False: a repair hook is an internal address, not one for the environment's proxy.
    try:
        async with (
            httpx.AsyncClient(timeout=s.timeout, trust_env=False) as client,
            client.stream(s.method.upper(), s.url, json=s.body) as response,
        ):
            # Streamed into the bounded tail: a hook answering megabytes is not held whole.
            async for chunk in response.aiter_bytes():
                ctx.output.feed(chunk)
    except httpx.HTTPError as exc:
        return StepOutcome(ok=False, output=f"{what}: {type(exc).__name__}: {exc}")
    status = f"{what}: {response.status_code} {response.reason_phrase}"
    body = ctx.output.text().strip()
    return StepOutcome(ok=response.is_success, output=f"{body}\n{status}" if body else status)


async def command(ctx: StepContext) -> StepOutcome:
    """settings.argv (or a /bin/sh -c script when settings.shell), in its own process group;
    ok on exit status 0. Timed out, its whole group is killed (by the runner's timeout)."""
    s = ctx.settings
    if not s.argv:
        return StepOutcome(ok=False, output="command step: no argv configured (steps.command)")
    argv = ["/bin/sh", "-c", s.argv[0], "sh", *s.argv[1:]] if s.shell else list(s.argv)
    try:
        code = await run_command(argv, ctx.output, cwd=s.cwd)
    except OSError as exc:
        return StepOutcome(ok=False, output=f"cannot run {argv[0]!r}: {exc}")
    text = ctx.output.text().rstrip("\n")
    status = f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
    return StepOutcome(ok=code == 0, output=f"{text}\n{status}" if text else status)


async def signal(ctx: StepContext) -> StepOutcome:
    """Send settings.signal ("HUP", "SIGHUP", "USR1" or a number) to the pid in settings.pidfile."""
    s = ctx.settings
    if not s.pidfile:
        return StepOutcome(ok=False, output="signal step: no pidfile configured (steps.signal)")
    try:
        sig = _parse_signal(s.signal)
    except ValueError as exc:
        return StepOutcome(ok=False, output=str(exc))
    path = Path(s.pidfile)
    try:
        raw = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return StepOutcome(ok=False, output=f"pidfile {path} is missing: is the service running?")
    except OSError as exc:
        return StepOutcome(ok=False, output=f"pidfile {path} is unreadable: {exc.strerror}")
    first = raw.split(maxsplit=1)[0] if raw else ""
    if not first.isdigit() or int(first) <= 0:
        # kill(0) or kill(-1) would signal whole groups: only a plain positive pid is sent to.
        return StepOutcome(ok=False, output=f"pidfile {path} does not hold a pid: {raw[:40]!r}")
    pid = int(first)
    if pid == os.getpid():
        return StepOutcome(ok=False, output=f"pidfile {path} names hbsm itself (pid {pid})")
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return StepOutcome(ok=False, output=f"pid {pid} (from {path}) is gone: no such process")
    except PermissionError:
        return StepOutcome(ok=False, output=f"not permitted to signal pid {pid} (from {path})")
    return StepOutcome(ok=True, output=f"sent {sig.name} to pid {pid} (from {path})")


def _parse_signal(name: str) -> signals.Signals:
    text = name.strip().upper()
    if text.isdigit():
        try:
            return signals.Signals(int(text))
        except ValueError:
            raise ValueError(f"unknown signal {name!r}") from None
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signals.Signals[text]
    except KeyError:
        raise ValueError(f"unknown signal {name!r} (e.g. HUP, USR1, TERM)") from None
