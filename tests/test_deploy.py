"""deploy/: the Dockerfile, its HEALTHCHECK script and the systemd unit, checked as far as this
machine allows. No container engine runs here, so the image is never built: the Dockerfile is
read instruction by instruction and held to what it claims (its sources exist and reach the
build, the lock it installs is the repository's, it runs as a user that is not root, the port
it exposes is the one hbsm serves on); the HEALTHCHECK script runs against a real `hbsm run`
and real HTTP servers; the unit file goes through `systemd-analyze verify` where it exists.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.net import free_port
from support.waiting import wait_for_sync

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
UNIT = ROOT / "deploy" / "hbsm.service"

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) in order: comments dropped, continued lines joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        name, _, args = whole.partition(" ")
        out.append((name.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return out


@pytest.fixture(scope="module")
def steps() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def args_of(steps: list[Instruction], name: str) -> list[str]:
    return [args for instr, args in steps if instr == name]


def copies(steps: list[Instruction]) -> list[tuple[int, list[str], str]]:
    """(position, sources, destination) of every COPY."""
    out = []
    for i, (instr, args) in enumerate(steps):
        if instr == "COPY":
            words = [w for w in args.split() if not w.startswith("--")]
            out.append((i, words[:-1], words[-1]))
    return out


def test_every_instruction_is_one_docker_knows(steps):
    known = {"FROM", "ENV", "COPY", "RUN", "WORKDIR", "VOLUME", "EXPOSE", "USER", "HEALTHCHECK",
             "STOPSIGNAL", "ENTRYPOINT", "CMD", "ARG", "LABEL"}  # fmt: skip
    assert steps[0][0] == "FROM"
    assert {instr for instr, _ in steps} <= known


def test_every_copy_source_exists_and_reaches_the_build(steps):
    # .dockerignore admits nothing but what it names again with "!".
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    ignore = [ln for ln in ignore if ln and not ln.startswith("#")]
    assert ignore[0] == "*"
    admitted = {ln[1:] for ln in ignore if ln.startswith("!")}
    for _, sources, _ in copies(steps):
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source in admitted, f"COPY {source}: left out of the build by .dockerignore"


def test_it_installs_the_repositorys_lock_then_hbsm_without_resolving_again(steps):
    runs = [(i, args) for i, (instr, args) in enumerate(steps) if instr == "RUN"]
    locked = next(i for i, args in runs if "--require-hashes -r" in args)
    lock_arg = re.search(r"--require-hashes -r (\S+)", steps[locked][1])
    assert lock_arg is not None
    lock = lock_arg.group(1)
    copied = {
        f"{dest.rstrip('/')}/{Path(src).name}" if dest.endswith("/") else dest: (i, src)
        for i, sources, dest in copies(steps)
        for src in sources
    }
    assert lock in copied and copied[lock][1] == "requirements.lock"
    assert copied[lock][0] < locked  # copied before it is installed
    assert (ROOT / "requirements.lock").read_text().count("--hash=sha256:") > 100

    own = next(i for i, args in runs if "pip install --no-deps" in args)
    assert own > locked
    # What setuptools reads to build hbsm is copied before that: pyproject.toml, the readme
    # it names, and the packages it finds.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    before = {src for i, sources, _ in copies(steps) if i < own for src in sources}
    assert needed <= before, needed - before


def test_it_runs_as_a_user_that_is_not_root(steps):
    user = args_of(steps, "USER")[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert user.split(":")[0].isdigit()  # numeric: `runAsNonRoot` checks can tell


def test_it_exposes_the_port_hbsm_serves_on_and_keeps_the_log_on_a_volume(steps):
    env = " ".join(args_of(steps, "ENV"))
    port = re.search(r"HEARTBEAT_PORT=(\d+)", env)
    assert port is not None
    assert args_of(steps, "EXPOSE") == [port.group(1)]
    assert "HEARTBEAT_HOST=0.0.0.0" in env  # reachable from outside the container
    # hbsm's default log path is relative: it lands in the working directory, the volume.
    assert args_of(steps, "VOLUME") == [args_of(steps, "WORKDIR")[-1]]
    entry = json.loads(args_of(steps, "ENTRYPOINT")[-1]) + json.loads(args_of(steps, "CMD")[-1])
    assert entry == ["hbsm", "run"]


def test_the_healthcheck_runs_the_script_it_copies(steps):
    check = args_of(steps, "HEALTHCHECK")[-1]
    argv = json.loads(check.partition(" CMD ")[2])
    dests = {dest for _, sources, dest in copies(steps) if sources == ["deploy/healthcheck.py"]}
    assert argv[0] == "python" and argv[1:] == sorted(dests)


# --- the HEALTHCHECK script against real servers ---------------------------------------------


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTBEAT_PORT": str(port)}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], capture_output=True, text=True, timeout=30, env=env
    )


def test_the_healthcheck_passes_against_a_real_hbsm_run(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
    hbsm = subprocess.Popen(
        [sys.executable, "-m", "hbsm", "run", "--port", str(port),
         "--log", str(tmp_path / "heartbeat.jsonl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for_sync(lambda: healthcheck(port).returncode == 0, "the healthcheck to pass")
    finally:
        hbsm.send_signal(signal.SIGTERM)
        assert hbsm.wait(30) == 0
    # Stopped: nothing answers, the container is unhealthy.
    done = healthcheck(port)
    assert done.returncode == 1
    assert f"http://127.0.0.1:{port}/health" in done.stderr


@pytest.fixture
def health_server() -> Iterator[tuple[int, dict[str, object]]]:
    """A local HTTP server answering /health with `answer["status"]` and `answer["body"]`."""
    answer: dict[str, object] = {"status": 200, "body": b"{}"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answer["body"]
            assert isinstance(body, bytes)
            self.send_response(int(str(answer["status"])))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], answer
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        # A critical monitored service is down: hbsm is doing its job.
        (503, {"status": "unhealthy", "event_log": {"writable": True}}, 0),
        # The event log cannot be written: hbsm can neither record nor act.
        (503, {"status": "unhealthy", "event_log": {"writable": False, "error": "ENOSPC"}}, 1),
        (200, {"status": "healthy"}, 1),  # not hbsm's /health
        (200, "not json", 1),
    ],
)
def test_the_healthcheck_tells_hbsm_ill_from_a_service_down(health_server, status, body, code):
    port, answer = health_server
    answer["status"] = status
    answer["body"] = (body if isinstance(body, str) else json.dumps(body)).encode()
    done = healthcheck(port)
    assert done.returncode == code, done.stderr


# --- the systemd unit --------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_unit_is_type_notify_with_a_watchdog_and_hardened():
    got = unit_settings()
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "WatchdogSec": ["30"],
        "Restart": ["on-failure"],
        "User": ["hbsm"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "CapabilityBoundingSet": [""],
    }
    assert {k: got.get(k) for k in expected} == expected
    assert "@system-service" in got["SystemCallFilter"]
    # The log's folder is writable: the working directory, where the default path lands.
    assert got["ReadWritePaths"] == got["WorkingDirectory"] == ["/var/lib/hbsm"]
    assert got["ExecStart"][0].split()[1:3] == ["run", "--config"]


def test_the_docs_show_the_unit_as_it_is():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```ini\n(.*?)```", doc, re.DOTALL)
    assert UNIT.read_text() in blocks


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path):
    # Pointed at an hbsm that exists here: verify checks that ExecStart is executable.
    hbsm = Path(sys.executable).with_name("hbsm")
    if not hbsm.exists():
        pytest.skip(f"no {hbsm}")
    unit = tmp_path / "hbsm.service"
    unit.write_text(UNIT.read_text().replace("/opt/hbsm/venv/bin/hbsm", str(hbsm)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # An unknown or misspelt key is only a warning to systemd (exit 0): no output at all.
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr
