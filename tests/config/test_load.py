"""Precedence (default < file < environment), `sources`, per-service policies, file lookup."""

from __future__ import annotations

import importlib.metadata

import pytest

import hbsm.config.load
import hbsm.config.validate
from hbsm.config import BUILTIN_STEPS, ConfigError, load_config
from hbsm.state import Policy

API = '[[services]]\nname = "api"\nurl = "http://x/"\n'
FILE = """
check_interval = 10
max_retries = 4
port = 6000

[log]
path = "file.jsonl"

[[services]]
name = "api"
url = "http://127.0.0.1:8000/health"
max_retries = 7
restart = { kind = "command", argv = ["systemctl", "restart", "api"] }

[[services]]
name = "web"
url = "https://web.example.com/"
"""


def test_builtin_steps():
    assert (
        frozenset({"diagnose", "check_config", "http", "command", "signal", "restart"})
        == BUILTIN_STEPS
    )


def test_file_overrides_default_and_env_overrides_file(write):
    env = {
        "HEARTBEAT_CHECK_INTERVAL": "5",
        "HEARTBEAT_EVENT_LOG": "/var/log/hb.jsonl",
        "HEARTBEAT_ADMIN_TOKEN": "t0ken",
        "HEARTBEAT_AUTO_START": "off",
    }
    loaded = load_config(write(FILE), env=env)
    c, src = loaded.config, loaded.sources
    assert (c.check_interval, src["check_interval"]) == (5.0, "env")  # env beats the file
    assert (c.max_retries, src["max_retries"]) == (4, "file")  # file beats the default
    assert (c.port, src["port"]) == (6000, "file")
    assert (c.restart_cooldown, src["restart_cooldown"]) == (300.0, "default")
    assert (c.log.path, src["log.path"]) == ("/var/log/hb.jsonl", "env")
    assert (c.log.fsync, src["log.fsync"]) == ("batch", "default")
    assert (c.admin_token, src["admin_token"]) == ("t0ken", "env")
    assert (c.auto_start, src["auto_start"]) == (False, "env")
    assert (c.enabled, src["enabled"]) == (True, "default")
    assert set(src.values()) == {"default", "file", "env"}


def test_service_thresholds_inherit_top_level_but_keep_their_own(write):
    loaded = load_config(
        write(FILE), env={"HEARTBEAT_MAX_RETRIES": "2", "HEARTBEAT_CHECK_INTERVAL": "5"}
    )
    src = loaded.sources
    # api sets its own max_retries in the file: the environment's top-level value is only the
    # default for services that set nothing.
    assert loaded.policies["api"].max_retries == 7
    assert src["services.api.max_retries"] == "file"
    assert loaded.policies["web"].max_retries == 2
    assert src["services.web.max_retries"] == "env"
    assert loaded.policies["web"].check_interval == 5.0
    assert src["services.web.check_interval"] == "env"
    assert loaded.policies["web"].restart_cooldown == 300.0
    assert src["services.web.restart_cooldown"] == "default"
    assert src["services.api.restart.kind"] == "file"
    assert src["services.api.probe.kind"] == "default"
    assert src["services.web.url"] == "file"


def test_defaults_without_file_or_environment():
    loaded = load_config(env={})
    assert loaded.path is None
    c = loaded.config
    assert (c.enabled, c.auto_start, c.host, c.port) == (True, True, "127.0.0.1", 5000)
    assert (c.check_interval, c.max_retries, c.restart_cooldown) == (30.0, 3, 300.0)
    assert c.admin_token is None
    assert c.log.path == "events/heartbeat.jsonl"
    assert all(v == "default" for v in loaded.sources.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("FALSE", False),
        ("1", True),
        ("0", False),
        ("Yes", True),
        ("no", False),
        ("on", True),
        (" Off ", False),
    ],
)
def test_boolean_spellings(text, expected):
    loaded = load_config(env={"HEARTBEAT_ENABLED": text})
    assert loaded.config.enabled is expected
    assert loaded.sources["enabled"] == "env"


def test_empty_variable_counts_as_unset(write):
    loaded = load_config(write(FILE), env={"HEARTBEAT_PORT": "", "HEARTBEAT_ADMIN_TOKEN": " "})
    assert (loaded.config.port, loaded.sources["port"]) == (6000, "file")
    assert loaded.config.admin_token is None


def test_per_service_overrides_make_the_policy(write):
    text = """
restart_cooldown = 60
cooldown_max = 600
ladders = { slow = ["diagnose"] }

[[services]]
name = "api"
url = "http://127.0.0.1:8000/health"
check_interval = 2.5
max_retries = 5
success_threshold = 2
restart_cooldown = 1200
stable_period = 30
restart_budget = 1
restart_window = 100
on_restart_failure = "degraded"
repair_budget = 2
repair_backoff = 5
ladder = ["diagnose", "command", "restart"]
ladders = { timeout = ["diagnose", "restart"] }
restart = { kind = "supervise", argv = ["python", "-m", "api"] }
steps.command = { argv = ["/bin/true"] }

[[services]]
name = "other"
url = "http://127.0.0.1:8001/health"
"""
    loaded = load_config(write(text), env={})
    assert loaded.policies["api"] == Policy(
        check_interval=2.5,
        max_retries=5,
        success_threshold=2,
        restart_cooldown=1200.0,
        # The top-level cap is below this service's own cooldown: raised to it.
        cooldown_max=1200.0,
        stable_period=30.0,
        restart_budget=1,
        restart_window=100.0,
        ladder=("diagnose", "command", "restart"),
        ladders={"timeout": ("diagnose", "restart")},
        on_restart_failure="degraded",
        start_grace=10.0,  # the config's default: a policy recorded without it means none
        repair_backoff=5.0,
        repair_backoff_max=3600.0,
        repair_budget=2,
    )
    other = loaded.policies["other"]
    assert (other.start_grace, other.repair_backoff, other.repair_budget) == (10.0, 60.0, 5)
    assert (other.check_interval, other.restart_cooldown, other.cooldown_max) == (30.0, 60.0, 600.0)
    # No restart method and no ladder of its own: the default ladder without its restart step.
    assert other.ladder == ("diagnose", "check_config")
    assert other.ladders == {"slow": ("diagnose",)}
    assert loaded.policy("api") is loaded.policies["api"]
    assert loaded.config.policy_for(loaded.config.services[0]) == loaded.policies["api"]


def test_default_ladder_keeps_restart_for_a_service_that_can_restart(write):
    text = API + 'restart = { kind = "command", argv = ["x"] }\n'
    loaded = load_config(write(text), env={})
    assert loaded.policies["api"].ladder == ("diagnose", "check_config", "restart")


def test_custom_step_from_the_entry_point_group(write, monkeypatch):
    text = '[[services]]\nname = "api"\nurl = "http://x/"\nladder = ["diagnose", "flush_cache"]\n'
    with pytest.raises(ConfigError, match="unknown step 'flush_cache'"):
        load_config(write(text), env={})
    monkeypatch.setattr(hbsm.config.load, "registered_steps", lambda: frozenset({"flush_cache"}))
    loaded = load_config(write(text), env={})
    assert loaded.policies["api"].ladder == ("diagnose", "flush_cache")


def test_registered_steps_reads_names_without_importing(monkeypatch):
    asked = []

    def entry_points(*, group):
        asked.append(group)
        # Loading this would fail: names must be all that is read.
        return [importlib.metadata.EntryPoint("flush_cache", "no_such_module:step", group)]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert hbsm.config.validate.registered_steps() == frozenset({"flush_cache"})
    assert asked == ["hbsm.repairs"]


def test_path_from_heartbeat_config(write):
    path = write("port = 7000\n", name="elsewhere.toml")
    loaded = load_config(env={"HEARTBEAT_CONFIG": str(path)})
    assert loaded.path == path
    assert (loaded.config.port, loaded.sources["port"]) == (7000, "file")


def test_explicit_path_beats_heartbeat_config(write):
    named = write("port = 7000\n", name="named.toml")
    explicit = write("port = 8000\n", name="explicit.toml")
    loaded = load_config(explicit, env={"HEARTBEAT_CONFIG": str(named)})
    assert (loaded.path, loaded.config.port) == (explicit, 8000)


def test_hbsm_toml_in_the_working_directory(tmp_path, write):
    write("port = 7001\n", name="hbsm.toml")  # the autouse fixture made tmp_path the cwd
    loaded = load_config(env={})
    assert loaded.path is not None
    assert loaded.path.resolve() == (tmp_path / "hbsm.toml").resolve()
    assert loaded.config.port == 7001


def test_bom_is_not_a_syntax_error(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeffport = 7002\n".encode())
    assert load_config(path, env={}).config.port == 7002


def test_os_environ_is_the_default_environment(monkeypatch):
    monkeypatch.setenv("HEARTBEAT_PORT", "7003")
    loaded = load_config()
    assert (loaded.config.port, loaded.sources["port"]) == (7003, "env")
