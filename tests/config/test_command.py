"""`hbsm config`: its output, `--json`, `--check FILE`, and exit codes, via its own parser."""

from __future__ import annotations

import argparse
import json

import pytest

from hbsm.config import command

FILE = """
check_interval = 10
admin_token = "file-secret"

[notify.smtp]
host = "smtp.example.com"
to = ["ops@example.com"]
password = "smtp-secret"

[[services]]
name = "api"
url = "http://127.0.0.1:8000/health"
max_retries = 7
probe = { headers = { Authorization = "Bearer header-secret" } }
"""


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hbsm")
    sub = parser.add_subparsers(dest="command", required=True)
    command.add_parser(sub)
    return parser.parse_args(["config", *argv])


def test_add_parser_dispatches_to_run():
    args = _parse()
    assert args.handler is command.run
    assert (args.check, args.config_file, args.json) == (None, None, False)


def test_prints_each_setting_with_its_source(write, capsys):
    path = write(FILE)
    env = {"HEARTBEAT_PORT": "6001", "HEARTBEAT_ADMIN_TOKEN": "env-secret"}
    assert command.run(_parse("--config", str(path)), env=env) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith("# hbsm configuration in force: ")
    assert str(path) in lines[0]
    assert "port = 6001  # env" in lines
    assert "check_interval = 10.0  # file" in lines
    assert "max_retries = 3  # default" in lines
    assert 'log.path = "events/heartbeat.jsonl"  # default' in lines
    assert 'admin_token = "***"  # env' in lines
    assert 'notify.smtp.password = "***"  # file' in lines
    # The top level comes first, then one [[services]] section per service.
    services_at = lines.index("[[services]]")
    assert lines.index("port = 6001  # env") < services_at
    section = lines[services_at:]
    assert 'name = "api"  # file' in section
    assert "max_retries = 7  # file" in section
    # Not set by the service: the top-level value in force, and where that came from.
    assert "check_interval = 10.0  # file (top-level)" in section
    assert 'ladder = ["diagnose", "check_config"]  # default' in section
    assert 'probe.headers = { Authorization = "***" }  # file' in section
    for secret in ("env-secret", "file-secret", "smtp-secret", "header-secret"):
        assert secret not in out


def test_without_a_file_prints_the_original_services(capsys):
    assert command.run(_parse(), env={}) == 0
    out = capsys.readouterr().out
    assert "no file" in out.splitlines()[0]
    # Standalone, with no HEARTBEAT_LOGIN_URL, there is no login page to watch.
    assert out.count("[[services]]") == 1
    assert 'url = "http://127.0.0.1:5000/health"  # default' in out
    assert "/login" not in out
    assert "admin_token = (unset)  # default" in out


def test_json_output(write, capsys):
    path = write(FILE)
    assert command.run(_parse("--json", "-c", str(path)), env={"HEARTBEAT_PORT": "6001"}) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == str(path)
    assert doc["config"]["port"] == 6001
    assert doc["config"]["admin_token"] == "***"
    assert doc["config"]["notify"]["smtp"]["password"] == "***"
    assert [s["name"] for s in doc["config"]["services"]] == ["api"]
    assert doc["sources"]["port"] == "env"
    assert doc["sources"]["check_interval"] == "file"
    assert doc["sources"]["services.api.max_retries"] == "file"
    assert doc["policies"]["api"]["max_retries"] == 7
    assert doc["policies"]["api"]["check_interval"] == 10.0


def test_check_good_file(write, capsys):
    path = write(FILE)
    assert command.run(_parse("--check", str(path)), env={}) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (1 service)\n"
    assert err == ""


def test_check_file_without_services_counts_the_default_ones(write, capsys):
    path = write("port = 5001\n")
    assert command.run(_parse("--check", str(path)), env={}) == 0
    assert capsys.readouterr().out == f"{path}: ok (1 service)\n"


def test_check_bad_file_exits_2_with_one_line_on_stderr(write, capsys):
    path = write(FILE + '[[services]]\nname = "api"\nurl = "http://x/"\n')
    assert command.run(_parse("--check", str(path)), env={}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}: services[1].name: duplicate service name 'api' (first at services[0])\n"


def test_check_applies_the_environment(write, capsys):
    path = write(FILE)
    assert command.run(_parse("--check", str(path)), env={"HEARTBEAT_PORT": "abc"}) == 2
    assert capsys.readouterr().err == "HEARTBEAT_PORT=abc: expected an integer\n"


def test_check_ignores_heartbeat_config(write, capsys):
    checked = write(FILE)
    broken = write("port = 0\n", name="broken.toml")
    assert command.run(_parse("--check", str(checked)), env={"HEARTBEAT_CONFIG": str(broken)}) == 0
    assert capsys.readouterr().out.startswith(f"{checked}: ok")


def test_check_missing_file(tmp_path, capsys):
    path = tmp_path / "missing.toml"
    assert command.run(_parse("--check", str(path)), env={}) == 2
    assert capsys.readouterr().err == f"{path}: no such file\n"


def test_check_json_verdict(write, capsys):
    good, bad = write(FILE), write("port = -1\n", name="bad.toml")
    assert command.run(_parse("--check", str(good), "--json"), env={}) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "path": str(good), "services": 1}
    assert command.run(_parse("--check", str(bad), "--json"), env={}) == 2
    out, err = capsys.readouterr()
    verdict = json.loads(out)
    assert verdict["ok"] is False
    assert verdict["error"]["key"] == "port"
    assert verdict["error"]["source"] == str(bad)
    assert err == f"{bad}: port: must be between 1 and 65535, got -1\n"


def test_printing_a_bad_config_exits_2(capsys):
    assert command.run(_parse(), env={"HEARTBEAT_MAX_RETRIES": "many"}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "HEARTBEAT_MAX_RETRIES=many: expected an integer\n"


def test_check_and_config_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exited:
        _parse("--check", "a.toml", "--config", "b.toml")
    assert exited.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
