"""A node of several (`hbsm run --node` on a shared stream) refuses to reload, saying why and
what to do instead, and goes on monitoring under the configuration it started with."""

from __future__ import annotations

import contextlib
import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from probes.servers import SwitchableTarget
from support.nats_server import NatsServer
from support.net import free_port

from hbsm.events import ConfigReloaded, Event, OpaqueEvent, Probe
from hbsm.log import LogError
from hbsm.log.jetstream import read_stream

from .conftest import HbsmRun
from .support import of, write_toml_config

REFUSAL = "reloading is not available with several nodes (this is node n1)"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def history(url: str) -> list[Event | OpaqueEvent]:
    with contextlib.suppress(LogError):  # no stream yet
        return list(read_stream(url))
    return []


def test_a_node_of_several_refuses_to_reload_and_goes_on(
    tmp_path: Path, nats_server: NatsServer, hbsm_run: Callable[..., HbsmRun]
) -> None:
    target = SwitchableTarget()
    target.start()
    try:
        port = free_port()
        web, api = ({"name": n, "url": target.svc_url(n)} for n in ("web", "api"))
        config = write_toml_config(tmp_path / "hbsm.toml", [web], check_interval=0.2, port=port)
        url = nats_server.url
        run = hbsm_run(config, None, args=["--store", url, "--node", "n1"])
        run.until(lambda: of(history(url), Probe, "web"), "web probed")
        write_toml_config(tmp_path / "hbsm.toml", [web, api], check_interval=0.2, port=port)

        run.signal(signal.SIGHUP)
        run.until(lambda: REFUSAL in run.err(), "the refusal on stderr")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/admin/config/reload",
                                         data=b"", method="POST")  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 409
        assert REFUSAL in json.loads(refused.value.read())["error"]
        assert "restart the nodes one at a time" in run.err()

        before = len(of(history(url), Probe, "web"))
        run.until(lambda: len(of(history(url), Probe, "web")) > before + 2, "web probed on")
        assert not of(history(url), Probe, "api") and not of(history(url), ConfigReloaded)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.err()
    finally:
        target.stop()
