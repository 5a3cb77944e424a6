"""Configuration files with every kind of mistake, end to end: through the loader
(`hbsm.config.load_config`) and through the command line (`hbsm config --check FILE`,
`hbsm config --check FILE --json` and `hbsm run --config FILE`). Each is refused with exit 2 and
one line on stderr naming the file (or the variable to blame), the line where the parser knows
it, the key and the reason; never a traceback, and `hbsm run` starts nothing (no event log).

Every case runs the command line in this process (the real parser and commands, `hbsm.cli.main`);
a representative few also run as child processes (`python -m hbsm`). tests/config/test_errors.py
checks the loader's exact messages for more key-level mistakes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hbsm.config import ConfigError, load_config

from .bad_input_support import (
    Done,
    hbsm_inline,
    one_error_line,
    run_hbsm,
    start_hbsm,
    without_read_override,
)
from .bad_input_support import finish as finish_child

API = '[[services]]\nname = "api"\nurl = "http://127.0.0.1:8000/health"\n'


def _directory(tmp: Path) -> Path:
    path = tmp / "conf.d"
    path.mkdir()
    return path


def _missing(tmp: Path) -> Path:
    return tmp / "nope.toml"


def _through_a_file(tmp: Path) -> Path:
    # Unreadable whoever we are (root reads a mode-000 file): a path through a plain file.
    (tmp / "conf.toml").write_text(API)
    return tmp / "conf.toml" / "inner.toml"


def _device(tmp: Path) -> Path:
    return Path("/dev/zero")  # read to the end, this never ended


def _huge(tmp: Path) -> Path:
    path = tmp / "huge.toml"
    with open(path, "wb") as f:
        f.truncate(40 * 2**20)  # sparse: costs no disk
    return path


@dataclass(frozen=True)
class Case:
    id: str
    text: str | bytes | None = None  # the file's content
    make: Callable[[Path], Path] | None = None  # a path that is not a plain file
    env: dict[str, str] = field(default_factory=dict)
    key: str | None = None  # ConfigError.key
    fragments: tuple[str, ...] = ()  # in the message
    line: int | None = None  # the message starts "<file>:<line>:"
    blamed: str | None = None  # the variable named instead of the file
    file_arg: bool = True  # False: no FILE argument (HEARTBEAT_CONFIG names it)


CASES = [
    Case(
        "toml syntax error: a value missing",
        'port = 5000\n\n[[services]]\nname = "api"\nurl = \n',
        line=5,
        fragments=("invalid TOML",),
    ),
    Case(
        "toml syntax error: the same key twice",
        "check_interval = 10\ncheck_interval = 20\n",
        line=2,
        fragments=("invalid TOML", "cannot overwrite a value"),
    ),
    Case(
        "toml syntax error: an unclosed string",
        'port = 5000\nhost = "127.0.0.1\n',
        line=2,
        fragments=("invalid TOML",),
    ),
    Case(
        "wrong type: a word for a number",
        API + 'max_retries = "three"\n',
        key="services[api].max_retries",
        fragments=("expected an integer, got 'three'",),
    ),
    Case(
        "wrong type: a string for a list",
        'ladder = "diagnose"\n',
        key="ladder",
        fragments=("expected an array, got 'diagnose'",),
    ),
    Case(
        "negative interval",
        "check_interval = -1\n",
        key="check_interval",
        fragments=("must be > 0",),
    ),
    Case(
        "zero interval for one service",
        API + "check_interval = 0\n",
        key="services[api].check_interval",
        fragments=("must be > 0",),
    ),
    Case(
        "interval that is not a number (nan)",
        "restart_cooldown = nan\n",
        key="restart_cooldown",
        fragments=("finite",),
    ),
    Case(
        "unknown top-level key (a typo)",
        "chek_interval = 10\n",
        key="chek_interval",
        fragments=("unknown key", "did you mean 'check_interval'"),
    ),
    Case(
        "unknown nested key (a typo)",
        API + '[services.restart]\nkinds = "supervise"\n',
        key="services[api].restart.kinds",
        fragments=("unknown key", "did you mean 'kind'"),
    ),
    Case(
        "missing required field: a service's name",
        '[[services]]\nurl = "http://127.0.0.1:8000/"\n',
        key="services[0].name",
        fragments=("is required",),
    ),
    Case(
        "missing required field: a webhook's url",
        "[[notify.webhooks]]\ntimeout = 2\n",
        key="notify.webhooks[0].url",
        fragments=("is required",),
    ),
    Case(
        "duplicate service name",
        API + API,
        key="services[1].name",
        fragments=("duplicate service name 'api'",),
    ),
    Case(
        "service name that is a path",
        '[[services]]\nname = "../../etc/passwd"\nurl = "http://x/"\n',
        key="services[0].name",
        fragments=("not a safe name",),
    ),
    Case(
        "probe url with a file:// scheme",
        '[[services]]\nname = "api"\nurl = "file:///etc/passwd"\n',
        key="services[api].url",
        fragments=("an http probe needs an http:// or https:// URL", "'file:///etc/passwd'"),
    ),
    Case(
        "webhook url with a javascript: scheme",
        '[[notify.webhooks]]\nurl = "javascript:alert(1)"\n',
        key="notify.webhooks[0].url",
        fragments=("expected http://host/", "'javascript:alert(1)'"),
    ),
    Case(
        "empty ladder",
        API + "ladder = []\n",
        key="services[api].ladder",
        fragments=("must name at least one step",),
    ),
    Case(
        "unknown repair step",
        'ladder = ["diagnose", "reboot"]\n',
        key="ladder",
        fragments=("unknown step 'reboot'", "built-in steps: "),
    ),
    Case(
        "restart kind supervise without argv",
        API + '[services.restart]\nkind = "supervise"\n',
        key="services[api].restart.argv",
        fragments=("restart.kind 'supervise' needs argv",),
    ),
    Case(
        "threshold out of range: success_threshold 0",
        "success_threshold = 0\n",
        key="success_threshold",
        fragments=("must be >= 1",),
    ),
    Case(
        "threshold out of range: port 70000",
        "port = 70000\n",
        key="port",
        fragments=("between 1 and 65535, got 70000",),
    ),
    Case(
        "threshold out of range: more than 64 bits",
        "max_retries = 99999999999999999999\n",
        key="max_retries",
        fragments=("out of range (a 64-bit integer)",),
    ),
    Case(
        "unknown choice: log.fsync",
        '[log]\nfsync = "sometimes"\n',
        key="log.fsync",
        fragments=("expected one of 'batch', 'always', 'interval', 'never', got 'sometimes'",),
    ),
    Case(
        "not UTF-8 (a Latin-1 byte)",
        b"port = 5000\n# caf\xe9 au lait\n",
        line=2,
        fragments=("not UTF-8 text (byte 0xe9",),
    ),
    Case("empty file", "", fragments=("the file is empty",)),
    Case("only blank lines", "\n\n   \n\t\n", fragments=("the file is empty",)),
    Case(
        "arrays nested a thousand deep",
        "ladder = " + "[" * 1000 + "]" * 1000 + "\n",
        fragments=("nested more than 32 levels deep",),
    ),
    Case("a directory instead of a file", make=_directory, fragments=("is a directory",)),
    Case("no such file", make=_missing, fragments=("no such file",)),
    Case(
        "unreadable: a path through a file",
        make=_through_a_file,
        fragments=("cannot read: Not a directory",),
    ),
    Case("a device, not a file (/dev/zero)", make=_device, fragments=("not a regular file",)),
    Case("a huge file (40 MiB)", make=_huge, fragments=("too large for a configuration",)),
    Case(
        "env var with a bad value: HEARTBEAT_CHECK_INTERVAL=abc",
        API,
        env={"HEARTBEAT_CHECK_INTERVAL": "abc"},
        key="check_interval",
        blamed="HEARTBEAT_CHECK_INTERVAL",
        fragments=("HEARTBEAT_CHECK_INTERVAL=abc: expected a number of seconds",),
    ),
    Case(
        "env var out of range: HEARTBEAT_PORT=99999",
        API,
        env={"HEARTBEAT_PORT": "99999"},
        key="port",
        blamed="HEARTBEAT_PORT",
        fragments=("HEARTBEAT_PORT=99999: must be between 1 and 65535",),
    ),
    Case(
        "env var not a boolean: HEARTBEAT_ENABLED=maybe",
        API,
        env={"HEARTBEAT_ENABLED": "maybe"},
        key="enabled",
        blamed="HEARTBEAT_ENABLED",
        fragments=("HEARTBEAT_ENABLED=maybe: expected a boolean",),
    ),
    Case(
        "api: a trusted proxy that is no address",
        API + '[api]\ntrusted_proxies = ["proxy.local"]\n',
        key="api.trusted_proxies[0]",
        fragments=("must be an IP address or network", "'proxy.local'"),
    ),
    Case(
        "api: a header limit below 1 KiB",
        API + "[api]\nmax_header_bytes = 100\n",
        key="api.max_header_bytes",
        fragments=("must be 1024 .. 1048576, got 100",),
    ),
    Case(
        "api: a header timeout of zero",
        API + "[api]\nheader_timeout = 0\n",
        key="api.header_timeout",
        fragments=("must be > 0",),
    ),
    Case(
        "api: no connection allowed",
        API + "[api]\nmax_connections = 0\n",
        key="api.max_connections",
        fragments=("must be >= 1",),
    ),
    Case(
        "HEARTBEAT_CONFIG names a missing file",
        env={"HEARTBEAT_CONFIG": "nope.toml"},
        blamed="HEARTBEAT_CONFIG",
        file_arg=False,
        fragments=("HEARTBEAT_CONFIG=nope.toml: no such file",),
    ),
]
BY_ID = {case.id: case for case in CASES}
# Run as child processes too: one of each kind of source of trouble.
IN_CHILD = [
    "toml syntax error: a value missing",
    "wrong type: a word for a number",
    "not UTF-8 (a Latin-1 byte)",
    "a directory instead of a file",
    "env var with a bad value: HEARTBEAT_CHECK_INTERVAL=abc",
    "HEARTBEAT_CONFIG names a missing file",
]


@pytest.fixture(autouse=True)
def _isolated(clean_environment: None, no_registered_steps: None) -> None:
    """No ./hbsm.toml, HEARTBEAT_* or custom repair steps from wherever the tests run."""


def prepare(case: Case, tmp: Path) -> Path | None:
    """The path the case names (written or made under `tmp`), or None (no FILE argument)."""
    if not case.file_arg:
        return None
    if case.make is not None:
        return case.make(tmp)
    path = tmp / "hbsm-bad.toml"
    if isinstance(case.text, bytes):
        path.write_bytes(case.text)
    else:
        path.write_text(case.text or "", encoding="utf-8")
    return path


def check_message(case: Case, message: str, path: Path | None) -> None:
    """`message` names where (the file, or the variable to blame), the line, the key and why."""
    assert "\n" not in message
    if case.blamed is not None:
        assert message.startswith(f"{case.blamed}="), message
    else:
        assert path is not None
        where = f"{path}:{case.line}:" if case.line is not None else f"{path}: "
        assert message.startswith(where), message
    if case.key is not None and case.blamed is None:  # else the variable names the key
        assert f"{case.key}: " in message or f": {case.key}:" in message, message
    for fragment in case.fragments:
        assert fragment in message, (fragment, message)


def commands(path: Path | None) -> tuple[list[str], list[str], list[str] | None]:
    """`hbsm config --check`, `hbsm run --config` and `--check --json` for `path`."""
    if path is None:
        # Bounded by --duration should a case be accepted by mistake: never a hang.
        return ["config"], ["run", "--duration", "1"], None
    check = ["config", "--check", str(path)]
    return check, ["run", "--config", str(path), "--duration", "1"], [*check, "--json"]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_loader_names_file_line_key_and_reason(case: Case, tmp_path: Path) -> None:
    path = prepare(case, tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=case.env)
    err = caught.value
    check_message(case, str(err), path)
    assert err.key == case.key
    assert err.source == (case.blamed or str(path))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_command_line_exits_2_with_one_clear_line(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = prepare(case, tmp_path)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    expected = str(_loader_error(path, case.env))
    check, run, as_json = commands(path)

    done = hbsm_inline(check, capsys)
    assert one_error_line(done) == expected
    assert done.stdout == ""
    check_message(case, expected, path)

    done = hbsm_inline(run, capsys)
    assert one_error_line(done) == f"hbsm run: {expected}"
    assert done.stdout == ""
    assert not (tmp_path / "events").exists()  # nothing started, no log written

    if as_json is not None:
        done = hbsm_inline(as_json, capsys)
        assert one_error_line(done) == expected
        verdict = json.loads(done.stdout)
        assert verdict["ok"] is False and verdict["path"] == str(path)
        assert verdict["error"]["key"] == case.key
        assert verdict["error"]["source"] == (case.blamed or str(path))
        assert verdict["error"]["message"] == expected


def _loader_error(path: Path | None, env: dict[str, str]) -> ConfigError:
    try:
        load_config(path, env={**env})
    except ConfigError as exc:
        return exc
    raise AssertionError("the configuration was accepted")


@pytest.mark.parametrize("name", IN_CHILD)
def test_child_processes_exit_2_with_one_clear_line(name: str, tmp_path: Path) -> None:
    case = BY_ID[name]
    path = prepare(case, tmp_path)
    expected = str(_loader_error(path, case.env))
    check, run, _ = commands(path)
    # Both at once: the two cores share the interpreter start-ups.
    children = [start_hbsm(args, cwd=tmp_path, env=case.env) for args in (check, run)]
    checked, ran = (finish_child(child) for child in children)
    assert one_error_line(checked) == expected
    assert one_error_line(ran) == f"hbsm run: {expected}"
    assert checked.stdout == ran.stdout == ""
    assert not (tmp_path / "events").exists()


def test_a_file_the_user_may_not_read(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(API)
    os.chmod(path, 0)
    wrapper = without_read_override()
    if wrapper is None:
        pytest.skip("root, and no setpriv to drop the right to read every file")
    done: Done = run_hbsm(["config", "--check", path], cwd=tmp_path, wrapper=wrapper)
    assert one_error_line(done) == f"{path}: cannot read: Permission denied"
    run = ["run", "--config", path, "--duration", "1"]
    done = run_hbsm(run, cwd=tmp_path, wrapper=wrapper)
    assert one_error_line(done) == f"hbsm run: {path}: cannot read: Permission denied"
    assert stat.S_IMODE(path.stat().st_mode) == 0  # left as it was
    assert not (tmp_path / "events").exists()
