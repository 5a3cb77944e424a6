"""The built-in steps check_config, http, signal and diagnose, against real files, sockets, an
HTTP server and a child process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.waiting import wait_for

from hbsm.config.model import StepConfig
from hbsm.events import Probe

from .support import probe_returning, py, runner, service_to_repair, started

NO_PROBE = probe_returning()


async def run(tmp_path, step: str, settings: StepConfig | None = None, **kwargs):
    svc = service_to_repair(steps={step: settings} if settings is not None else {})
    return await runner(tmp_path).run_step(svc, started(step), **kwargs)


# --- check_config -------------------------------------------------------------------------------


async def test_check_config_good_files_are_ok(tmp_path):
    (tmp_path / "app.toml").write_text('[server]\nport = 8080\nname = "api"\n')
    (tmp_path / "extra.json").write_text('{"workers": 4}')
    (tmp_path / "nginx.conf").write_text("server { listen 80; }\n")
    settings = StepConfig(files=["app.toml", "extra.json", "nginx.conf"], cwd=str(tmp_path))
    done = await run(tmp_path, "check_config", settings, failure=None, probe=NO_PROBE)
    assert done.ok, done.output
    assert f"{tmp_path / 'app.toml'}: ok (TOML)" in done.output
    assert f"{tmp_path / 'extra.json'}: ok (JSON)" in done.output
    assert f"{tmp_path / 'nginx.conf'}: ok" in done.output


async def test_check_config_missing_file_fails_naming_it(tmp_path):
    (tmp_path / "app.toml").write_text("a = 1\n")
    missing = tmp_path / "secrets.toml"
    settings = StepConfig(files=[str(tmp_path / "app.toml"), str(missing)])
    done = await run(tmp_path, "check_config", settings, failure=None, probe=NO_PROBE)
    assert not done.ok
    assert f"{missing}: missing" in done.output
    assert "1 of 2 files broken" in done.output


async def test_check_config_broken_toml_names_file_and_line(tmp_path):
    bad = tmp_path / "app.toml"
    bad.write_text('[server]\nport = 8080\nname = "api\nworkers = 2\n')  # unterminated string
    done = await run(
        tmp_path, "check_config", StepConfig(files=[str(bad)]), failure=None, probe=NO_PROBE
    )
    assert not done.ok
    assert f"{bad}: invalid TOML" in done.output
    assert "line 3" in done.output


async def test_check_config_broken_json_names_file_and_line(tmp_path):
    bad = tmp_path / "app.json"
    bad.write_text('{\n  "a": 1,\n  "b": ,\n}\n')
    done = await run(
        tmp_path, "check_config", StepConfig(files=[str(bad)]), failure=None, probe=NO_PROBE
    )
    assert not done.ok
    assert f"{bad}: invalid JSON at line 3" in done.output


async def test_check_config_reports_a_bound_port(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        done = await run(
            tmp_path, "check_config", StepConfig(port=port), failure=None, probe=NO_PROBE
        )
    assert done.ok
    assert f"port {port}: bound" in done.output


async def test_check_config_reports_a_free_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        done = await run(
            tmp_path, "check_config", StepConfig(port=port), failure=None, probe=NO_PROBE
        )
    assert done.ok
    assert f"port {port}: free" in done.output


async def test_check_config_with_nothing_configured_says_so(tmp_path):
    done = await run(tmp_path, "check_config", failure=None, probe=NO_PROBE)
    assert done.ok and "nothing to check" in done.output


# --- http ---------------------------------------------------------------------------------------


@pytest.fixture
def hook_server():
    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.command, self.path, body))
            status = 500 if self.path == "/fail" else 200
            answer = b"reload failed: db locked" if status == 500 else b"reloaded"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


async def test_http_hook_200_is_ok_and_gets_the_json_body(tmp_path, hook_server):
    base, received = hook_server
    settings = StepConfig(url=f"{base}/reload", body={"reason": "hbsm"})
    done = await run(tmp_path, "http", settings, failure=None, probe=NO_PROBE)
    assert done.ok, done.output
    assert "reloaded" in done.output and f"POST {base}/reload: 200 OK" in done.output
    assert len(received) == 1
    method, path, body = received[0]
    assert (method, path) == ("POST", "/reload")
    assert json.loads(body) == {"reason": "hbsm"}


async def test_http_hook_500_fails_with_status_and_body(tmp_path, hook_server):
    base, _ = hook_server
    done = await run(tmp_path, "http", StepConfig(url=f"{base}/fail"), failure=None, probe=NO_PROBE)
    assert not done.ok
    assert "reload failed: db locked" in done.output
    assert done.output.endswith(f"POST {base}/fail: 500 Internal Server Error")


async def test_http_hook_unreachable_fails_clearly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/reload"
        done = await run(tmp_path, "http", StepConfig(url=url), failure=None, probe=NO_PROBE)
    assert not done.ok
    assert f"POST {url}: ConnectError" in done.output


async def test_http_without_url_fails_clearly(tmp_path):
    done = await run(tmp_path, "http", failure=None, probe=NO_PROBE)
    assert not done.ok and "no url" in done.output


# --- signal -------------------------------------------------------------------------------------


async def test_signal_reaches_the_process_in_the_pidfile(tmp_path):
    marker = tmp_path / "reloaded"
    code = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGHUP, lambda *a: open({str(marker)!r}, 'w').write('hup'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen(py(code), stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        pidfile = tmp_path / "api.pid"
        pidfile.write_text(f"{child.pid}\n")
        settings = StepConfig(pidfile=str(pidfile), signal="HUP")
        done = await run(tmp_path, "signal", settings, failure=None, probe=NO_PROBE)
        assert done.ok, done.output
        assert done.output == f"sent SIGHUP to pid {child.pid} (from {pidfile})"
        await wait_for(lambda: marker.exists() and marker.read_text() == "hup", "SIGHUP handled")
        assert child.poll() is None  # handled, not killed
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("name", ["USR1", "SIGUSR1", "usr1", str(int(signal.SIGUSR1))])
async def test_signal_names_in_every_spelling(tmp_path, name):
    child = subprocess.Popen(
        py("import signal, time; signal.signal(signal.SIGUSR1, signal.SIG_IGN); "
           "print('ready', flush=True); time.sleep(30)"),
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        (tmp_path / "p.pid").write_text(str(child.pid))
        settings = StepConfig(pidfile=str(tmp_path / "p.pid"), signal=name)
        done = await run(tmp_path, "signal", settings, failure=None, probe=NO_PROBE)
        assert done.ok and "SIGUSR1" in done.output
    finally:
        child.kill()
        child.wait()


async def test_signal_with_a_missing_pidfile_fails_clearly(tmp_path):
    pidfile = tmp_path / "nope.pid"
    done = await run(
        tmp_path, "signal", StepConfig(pidfile=str(pidfile)), failure=None, probe=NO_PROBE
    )
    assert not done.ok
    assert done.output == f"pidfile {pidfile} is missing: is the service running?"


@pytest.mark.parametrize("content", ["", "garbage\n", "-1", "0"])
async def test_signal_with_a_pidfile_not_holding_a_pid_fails(tmp_path, content):
    pidfile = tmp_path / "api.pid"
    pidfile.write_text(content)
    done = await run(
        tmp_path, "signal", StepConfig(pidfile=str(pidfile)), failure=None, probe=NO_PROBE
    )
    assert not done.ok
    assert f"pidfile {pidfile} does not hold a pid" in done.output


async def test_signal_to_a_gone_pid_fails(tmp_path):
    child = subprocess.Popen(["true"])
    child.wait()
    (tmp_path / "api.pid").write_text(str(child.pid))
    settings = StepConfig(pidfile=str(tmp_path / "api.pid"))
    done = await run(tmp_path, "signal", settings, failure=None, probe=NO_PROBE)
    assert not done.ok
    assert f"pid {child.pid}" in done.output and "is gone" in done.output


async def test_signal_with_an_unknown_signal_name_fails(tmp_path):
    (tmp_path / "api.pid").write_text("1")
    settings = StepConfig(pidfile=str(tmp_path / "api.pid"), signal="RELOAD")
    done = await run(tmp_path, "signal", settings, failure=None, probe=NO_PROBE)
    assert not done.ok and "unknown signal 'RELOAD'" in done.output


# --- diagnose -----------------------------------------------------------------------------------

URL = "GET http://127.0.0.1:9000/health"


@pytest.mark.parametrize(
    ("fresh", "cls"),
    [
        (Probe(service="api", ok=False, error="refused", detail=f"{URL}: connection refused"),
         "refused"),
        (Probe(service="api", ok=False, error="timeout", detail=f"{URL}: no answer in 5 s"),
         "timeout"),
        (Probe(service="api", ok=False, error="dns", detail="no such host"), "dns"),
        (Probe(service="api", ok=False, error="tls", detail="certificate expired"), "tls"),
        (Probe(service="api", ok=False, error="http_5xx", status=503, detail=URL), "http_5xx"),
        (Probe(service="api", ok=False, error="http_4xx", status=404, detail=URL), "http_4xx"),
        (Probe(service="api", ok=False, error="body_mismatch", status=200, detail="no 'ok'"),
         "body_mismatch"),
        (Probe(service="api", ok=False, error="slow", latency_ms=2400.0, detail=URL), "slow"),
        (Probe(service="api", ok=False, error=None), "other"),
        (Probe(service="api", ok=False, error="cosmic_rays"), "other"),
    ],
)  # fmt: skip
async def test_diagnose_classifies_a_fresh_probe(tmp_path, fresh, cls):
    probe = probe_returning(fresh)
    done = await run(tmp_path, "diagnose", failure=None, probe=probe)
    assert done.ok
    assert done.error_class == cls
    assert done.output.startswith(f"{cls}: ")
    assert len(probe.calls) == 1  # exactly one fresh probe


async def test_diagnose_output_names_the_failure(tmp_path):
    fresh = Probe(service="api", ok=False, error="refused", detail=f"{URL}: connection refused")
    done = await run(tmp_path, "diagnose", failure=fresh, probe=probe_returning(fresh))
    assert done.output == f"refused: {URL}: connection refused"


async def test_diagnose_reports_a_recovery_without_a_class(tmp_path):
    failure = Probe(service="api", ok=False, error="timeout", detail=URL)
    fresh = Probe(service="api", ok=True, status=200, latency_ms=12.0, detail=URL)
    done = await run(tmp_path, "diagnose", failure=failure, probe=probe_returning(fresh))
    assert done.ok and done.error_class is None
    assert done.output.startswith("recovered: ")
    assert "status 200" in done.output and "12 ms" in done.output


async def test_diagnose_mentions_an_earlier_different_failure(tmp_path):
    failure = Probe(service="api", ok=False, error="timeout", detail="no answer")
    fresh = Probe(service="api", ok=False, error="refused", detail="connection refused")
    done = await run(tmp_path, "diagnose", failure=failure, probe=probe_returning(fresh))
    assert done.error_class == "refused"
    assert "the failure before: timeout: no answer" in done.output


async def test_diagnose_whose_probe_raises_is_a_failed_step(tmp_path):
    async def broken_probe():
        raise OSError("probe machinery broke")

    done = await run(tmp_path, "diagnose", failure=None, probe=broken_probe)
    assert not done.ok
    assert "probe machinery broke" in done.output


async def test_diagnose_takes_the_failure_just_seen_instead_of_probing_again(tmp_path):
    # The probe that decided the run, recorded a moment ago: on a hung service another probe
    # would only wait out the same timeout once more.
    seen = Probe(seq=41, service="api", ok=False, error="timeout", detail=f"{URL}: no answer")
    probe = probe_returning(Probe(service="api", ok=True))
    done = await run(tmp_path, "diagnose", failure=seen, probe=probe, seen=seen)
    assert probe.calls == []
    assert done.ok and done.error_class == "timeout"
    assert done.output == f"timeout: {URL}: no answer (reused probe #41: not probed again)"
    assert done.verify is False  # it changed nothing: the failure stands, no probe to wait for


async def test_diagnose_probes_when_nothing_failed_just_now(tmp_path):
    fresh = Probe(service="api", ok=False, error="refused", detail="connection refused")
    probe = probe_returning(fresh)
    done = await run(tmp_path, "diagnose", failure=None, probe=probe, seen=None)
    assert len(probe.calls) == 1 and "reused" not in done.output
    assert done.error_class == "refused" and done.verify is False


async def test_diagnose_that_finds_it_recovered_leaves_the_verification_to_a_probe(tmp_path):
    fresh = Probe(service="api", ok=True, status=200, detail=URL)
    done = await run(tmp_path, "diagnose", failure=None, probe=probe_returning(fresh))
    assert done.error_class is None and done.verify is True


@pytest.mark.parametrize("good", [True, False])
async def test_check_config_needs_no_verification_probe(tmp_path, good):
    path = tmp_path / "app.json"
    path.write_text('{"a": 1}' if good else "{")
    settings = StepConfig(files=[str(path)])
    done = await run(tmp_path, "check_config", settings, failure=None, probe=NO_PROBE)
    assert done.ok is good and done.verify is False


async def test_a_step_that_acts_is_verified_by_a_probe(tmp_path):
    done = await run(tmp_path, "command", StepConfig(argv=["true"]), failure=None, probe=NO_PROBE)
    assert done.ok and done.verify is True
