"""The Flask embedding as nodes of a cluster: two processes of a Flask app, each running
`init_heartbeat` with its own node name on one stream of a real nats-server. Each serves the
whole cluster from its blueprint, sends an operator to the owner, and one SIGKILLed, the other
takes its services over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from monitor.support import http_get, write_toml_config
from support.nats_server import NatsServer
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.cluster.placement import preferred_node

from .support import Services, fold, http_post

APP = """\
import sys
from flask import Flask
from hbsm.flask import init_heartbeat

app = Flask(__name__)
init_heartbeat(app, sys.argv[2])
app.run(host="127.0.0.1", port=int(sys.argv[1]))
"""


def owners(url: str) -> dict[str, str | None]:
    return {name: view.owner for name, view in fold(url).services.items()}


def test_two_flask_apps_are_two_nodes_of_one_cluster(
    tmp_path: Path, server: NatsServer, services: Services
) -> None:
    names = [f"svc-{i}" for i in range(6)]
    config = write_toml_config(
        tmp_path / "hbsm.toml", [services.table(n) for n in names],
        log={"store": server.url, "path": str(tmp_path / "out" / "x.jsonl")},
        cluster={"lease_ttl": 2.0}, check_interval=0.5,
    )  # fmt: skip
    (tmp_path / "app.py").write_text(APP)
    apps: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for node in ("f1", "f2"):
            port = free_port()
            env = {**os.environ, "HEARTBEAT_NODE": node}
            with (tmp_path / f"{node}.err").open("wb") as err:
                proc = subprocess.Popen([sys.executable, str(tmp_path / "app.py"), str(port),
                                         str(config)], stdout=err, stderr=err, env=env,
                                        cwd=tmp_path)  # fmt: skip
            apps[node] = (proc, port)
        expected = {n: preferred_node(n, ["f1", "f2"]) for n in names}
        wait_for_sync(lambda: owners(server.url) == expected,
                      "each service owned by the app it hashes to", 60, every=0.25)  # fmt: skip

        # Each app's blueprint serves the whole cluster, and sends an operator to the owner.
        name = names[0]
        owner = expected[name]
        other = "f2" if owner == "f1" else "f1"
        for _, port in apps.values():
            status, text = http_get(f"http://127.0.0.1:{port}/health/detailed")
            body = json.loads(text)["services"]
            assert status == 200 and {n: body[n]["owner"] for n in names} == expected
        for node, status in ((other, 409), (owner, 200)):
            url = f"http://127.0.0.1:{apps[node][1]}/admin/service/{name}/probe-now"
            assert http_post(url)[0] == status, node

        # The owner's app dies: the other takes its services over.
        apps[owner][0].kill()
        apps[owner][0].wait(10)
        wait_for_sync(lambda: set(owners(server.url).values()) == {other},
                      f"{other} owns every service", 60, every=0.25)  # fmt: skip
    finally:
        for proc, _ in apps.values():
            proc.kill()
            proc.wait(10)
