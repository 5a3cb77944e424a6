"""Bad configurations stop start-up with one line naming the source, the key and the reason."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from hbsm.config import ConfigError, load_config

API = '[[services]]\nname = "api"\nurl = "http://127.0.0.1:8000/health"\n'

# (id, file text or None, env, expected .key, fragments the one-line message must contain)
FILE_CASES = [
    (
        "wrong type",
        API + 'max_retries = "three"\n',
        "services[api].max_retries",
        ["expected an integer, got 'three'"],
    ),
    ("wrong top-level type", "port = true\n", "port", ["expected an integer, got true"]),
    ("negative interval", "check_interval = -1\n", "check_interval", ["must be > 0"]),
    (
        "negative service interval",
        API + "check_interval = -5.0\n",
        "services[api].check_interval",
        ["must be > 0"],
    ),
    ("negative cooldown", "restart_cooldown = -1\n", "restart_cooldown", ["must be >= 0"]),
    ("nan interval", "check_interval = nan\n", "check_interval", ["finite"]),
    (
        "unknown probe kind (named by service, not index)",
        API.replace("api", "a")
        + API.replace("api", "b")
        + API
        + '[services.probe]\nkind = "ftp"\n',
        "services[api].probe.kind",
        ["expected one of 'http', 'tcp', 'command', got 'ftp'"],
    ),
    (
        "duplicate service name",
        API + API,
        "services[1].name",
        ["duplicate service name 'api'", "services[0]"],
    ),
    ("empty service name", '[[services]]\nname = ""\n', "services[0].name", ["must not be empty"]),
    (
        "unsafe service name",
        '[[services]]\nname = "../etc"\nurl = "http://x/"\n',
        "services[0].name",
        ["not a safe name"],
    ),
    ("missing service name", '[[services]]\nurl = "http://x/"\n', "services[0].name", ["required"]),
    (
        "unknown ladder step",
        API + 'ladder = ["diagnose", "reboot"]\n',
        "services[api].ladder",
        ["unknown step 'reboot'", "hbsm.repairs"],
    ),
    (
        "unknown top-level ladder step",
        'ladder = ["diagnose", "chek_config"]\n',
        "ladder",
        ["unknown step 'chek_config'", "did you mean 'check_config'"],
    ),
    (
        "unknown step in a per-class ladder",
        API + 'ladders = { timeout = ["diagnose", "pray"] }\n',
        "services[api].ladders.timeout",
        ["unknown step 'pray'"],
    ),
    (
        "ladders key that is not a failure class",
        API + 'ladders = { timout = ["diagnose"] }\n',
        "services[api].ladders.timout",
        ["not a failure class", "did you mean 'timeout'"],
    ),
    (
        "unknown top-level key",
        "chek_interval = 10\n",
        "chek_interval",
        ["unknown key", "did you mean 'check_interval'"],
    ),
    (
        "misspelt nested key",
        API + "[services.probe]\ntiemout = 3\n",
        "services[api].probe.tiemout",
        ["unknown key", "did you mean 'timeout'"],
    ),
    (
        "services written as a table",
        '[services.api]\nurl = "http://x/"\n',
        "services",
        ["array of tables ([[services]])"],
    ),
    (
        "restart step without a restart kind",
        API + 'ladder = ["diagnose", "restart"]\n',
        "services[api].ladder",
        ["services[api].ladder: step 'restart' but restart.kind is 'none'"],
    ),
    (
        "restart step inherited from a written top-level ladder",
        'ladder = ["diagnose", "restart"]\n' + API,
        "services[api].ladder",
        ["step 'restart' (from the top-level ladder) but restart.kind is 'none'"],
    ),
    (
        "restart kind without argv",
        API + '[services.restart]\nkind = "command"\n',
        "services[api].restart.argv",
        ["restart.kind 'command' needs argv"],
    ),
    (
        "restart as the first step (the Policy's rule, named by service)",
        API + 'ladder = ["restart"]\nrestart = { kind = "command", argv = ["x"] }\n',
        "services[api].ladder",
        ["must not begin with 'restart'"],
    ),
    (
        "http probe without url",
        '[[services]]\nname = "api"\n',
        "services[api].url",
        ["an http probe needs an http:// or https:// URL"],
    ),
    (
        "http probe with a non-http url",
        '[[services]]\nname = "api"\nurl = "ftp://files.example.com/"\n',
        "services[api].url",
        ["'ftp://files.example.com/'"],
    ),
    (
        "tcp probe without a port",
        '[[services]]\nname = "db"\nurl = "localhost"\nprobe = { kind = "tcp" }\n',
        "services[db].url",
        ["a tcp probe needs host:port"],
    ),
    (
        "command probe without argv",
        '[[services]]\nname = "w"\nprobe = { kind = "command" }\nladder = ["diagnose"]\n',
        "services[w].probe.argv",
        ["a command probe needs argv"],
    ),
    (
        "http step without its url",
        API + 'ladder = ["diagnose", "http"]\n',
        "services[api].steps.http.url",
        ["required by step 'http' in ladder"],
    ),
    (
        "signal step without its pidfile",
        API + 'ladders = { timeout = ["diagnose", "signal"] }\n',
        "services[api].steps.signal.pidfile",
        ["required by step 'signal' in ladders.timeout"],
    ),
    (
        "settings for a step that does not exist",
        API + '[services.steps.htp]\nurl = "http://x/"\n',
        "services[api].steps.htp",
        ["unknown step 'htp'", "did you mean 'http'"],
    ),
    ("port out of range", "port = 70000\n", "port", ["between 1 and 65535"]),
    ("bad log level", '[log]\nlevel = "LOUD"\n', "log.level", ["'LOUD'"]),
    (
        "one of the store's URLs not NATS",
        '[log]\nstore = "nats://a:4222,http://b:4222"\n',
        "log.store",
        ["comma-separated", "http://b:4222"],
    ),
    ("no stream replicas", "[log]\nreplicas = 0\n", "log.replicas", ["between 1 and 5"]),
    (
        "a node without a shared log",
        '[cluster]\nnode = "a"\n',
        "cluster.node",
        ["set log.store"],
    ),
    (
        "a node name that is no subject token",
        '[log]\nstore = "nats://a:4222"\n[cluster]\nnode = "a.b"\n',
        "cluster.node",
        ["letters, digits", "'a.b'"],
    ),
    (
        "a lease shorter than a second",
        "[cluster]\nlease_ttl = 0.5\n",
        "cluster.lease_ttl",
        [">= 1"],
    ),
    (
        "a node supervising a process of its own host",
        '[log]\nstore = "nats://a:4222"\n[cluster]\nnode = "a"\n'
        + API
        + '[services.restart]\nkind = "supervise"\nargv = ["srv"]\n',
        "services[api].restart.kind",
        ["'supervise' restarts a process of this host", "use a command"],
    ),
    ("quorum below one", API + "quorum = 0\n", "services[api].quorum", ["must be >= 1"]),
    (
        "smtp without recipients",
        '[notify.smtp]\nhost = "smtp.example.com"\n',
        "notify.smtp.to",
        ["at least one recipient"],
    ),
    (
        "bad notify event",
        '[notify]\non = ["restart", "lunch"]\n',
        "notify.on[1]",
        ["expected one of", "got 'lunch'"],
    ),
    (
        "negative cert_warn_days",
        API + "cert_warn_days = -1\n",
        "services[api].cert_warn_days",
        ["must be >= 0 (0: no warning)"],
    ),
    (
        "a ladder for a class that is only reported",
        'ladders = { cert = ["diagnose"] }\n',
        "ladders.cert",
        ["'cert' is reported, never repaired"],
    ),
    (
        "missing ca_file",
        API + '[services.probe]\nca_file = "/nonexistent/ca.pem"\n',
        "services[api].probe.ca_file",
        ["'/nonexistent/ca.pem' does not exist"],
    ),
    (
        "ca_file on a tcp probe",
        '[[services]]\nname = "db"\nurl = "127.0.0.1:5432"\n'
        '[services.probe]\nkind = "tcp"\nca_file = "/etc/ca.pem"\n',
        "services[db].probe.ca_file",
        ["https probes only"],
    ),
]


def test_a_ca_file_that_is_no_certificate_is_named(write, tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    path = write(API + f'[services.probe]\nca_file = "{junk}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == "services[api].probe.ca_file"
    assert "holds no PEM certificate" in caught.value.reason


@pytest.mark.parametrize(
    ("text", "key", "fragments"),
    [case[1:] for case in FILE_CASES],
    ids=[case[0] for case in FILE_CASES],
)
def test_bad_file_names_file_key_and_reason(write, text, key, fragments):
    path = write(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    err = caught.value
    message = str(err)
    assert "\n" not in message
    assert err.source == str(path)
    assert err.key == key
    assert message.startswith(f"{path}: {key}: ")
    assert message == f"{path}: {key}: {err.reason}"
    for fragment in fragments:
        assert fragment in message


ENV_CASES = [
    ("HEARTBEAT_PORT", "abc", "port", "HEARTBEAT_PORT=abc: expected an integer"),
    ("HEARTBEAT_PORT", "0", "port", "HEARTBEAT_PORT=0: must be between 1 and 65535, got 0"),
    (
        "HEARTBEAT_MAX_RETRIES",
        "2.5",
        "max_retries",
        "HEARTBEAT_MAX_RETRIES=2.5: expected an integer",
    ),
    ("HEARTBEAT_MAX_RETRIES", "0", "max_retries", "HEARTBEAT_MAX_RETRIES=0: must be >= 1"),
    (
        "HEARTBEAT_CHECK_INTERVAL",
        "soon",
        "check_interval",
        "HEARTBEAT_CHECK_INTERVAL=soon: expected a number of seconds",
    ),
    ("HEARTBEAT_CHECK_INTERVAL", "nan", "check_interval", "HEARTBEAT_CHECK_INTERVAL=nan: expected"),
    ("HEARTBEAT_CHECK_INTERVAL", "0", "check_interval", "HEARTBEAT_CHECK_INTERVAL=0: must be > 0"),
    (
        "HEARTBEAT_RESTART_COOLDOWN",
        "-1",
        "restart_cooldown",
        "HEARTBEAT_RESTART_COOLDOWN=-1: must be >= 0",
    ),
    ("HEARTBEAT_ENABLED", "maybe", "enabled", "HEARTBEAT_ENABLED=maybe: expected a boolean"),
    ("HEARTBEAT_AUTO_START", "2", "auto_start", "HEARTBEAT_AUTO_START=2: expected a boolean"),
    ("HEARTBEAT_LOGIN_URL", "login", "login_url", "HEARTBEAT_LOGIN_URL=login: expected http://"),
    ("HEARTBEAT_HOST", "my host", "host", "HEARTBEAT_HOST='my host': must be a host name"),
]


@pytest.mark.parametrize(
    ("var", "value", "key", "start"), ENV_CASES, ids=[c[0] + "=" + c[1] for c in ENV_CASES]
)
def test_bad_environment_value_names_the_variable(write, var, value, key, start):
    # A valid file: the environment's value is what is wrong, and the error must say so.
    path = write(API)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={var: value})
    err = caught.value
    assert str(err).startswith(start)
    assert "\n" not in str(err)
    assert (err.source, err.key) == (var, key)


def test_env_error_never_echoes_the_admin_token():
    err = ConfigError.in_env("HEARTBEAT_ADMIN_TOKEN", "s3cret", "admin_token", "is bad")
    assert str(err) == "HEARTBEAT_ADMIN_TOKEN=********: is bad"


def test_toml_syntax_error_gives_file_line_and_column(write):
    path = write('port = 5000\n\n[[services]]\nname = "api"\nurl = \n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert message.startswith(f"{path}:5:7: invalid TOML: ")
    assert "\n" not in message
    assert caught.value.source == str(path)
    assert caught.value.key is None


def test_missing_explicit_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == f"{path}: no such file"
    assert caught.value.source == str(path)


def test_missing_file_named_by_heartbeat_config(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(env={"HEARTBEAT_CONFIG": str(path)})
    assert str(caught.value) == f"HEARTBEAT_CONFIG={path}: no such file"
    assert caught.value.source == "HEARTBEAT_CONFIG"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, env={})


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8"):
        load_config(path, env={})


def test_error_survives_pickling():
    err = ConfigError.in_file("hbsm.toml", "port", "must be between 1 and 65535")
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.source, again.key, again.reason) == (
        "hbsm.toml: port: must be between 1 and 65535",
        "hbsm.toml",
        "port",
        "must be between 1 and 65535",
    )


def test_message_is_one_line_even_if_a_reason_has_newlines():
    err = ConfigError.in_env("HEARTBEAT_HOST", "a\nb", "host", "bad\nhost")
    assert "\n" not in str(err)
    assert str(err).startswith("HEARTBEAT_HOST='a\\nb': bad host")


def test_errors_come_from_the_checks_not_from_an_unused_path(tmp_path: Path):
    # A valid file next to a bad one: only the file asked for is read.
    (tmp_path / "hbsm.toml").write_text("port = 0\n")
    good = tmp_path / "good.toml"
    good.write_text(API)
    assert load_config(good, env={}).path == good
