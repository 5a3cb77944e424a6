"""The three-node demo (examples/cluster/demo.py) run as a user runs it: a script in a process
of its own, which starts a real nats-server and real `hbsm run --node` processes. Its report is
checked against restarts.log, which the restart commands write themselves, and it leaves no
process behind, at its end or on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # `just test-slow` (CI runs it)

DEMO = Path(__file__).resolve().parents[2] / "examples" / "cluster" / "demo.py"
SLOW = 300.0  # only a hang reaches it

# A row of the report's table: service, owner, broke, healthy, restarted by, restarts.
ROW = re.compile(r"^  (svc-\d+)\s+(n\d)\s+\S+\s+\S+\s+(\S+)\s+(\d+)\b", re.MULTILINE)


def run_demo(keep: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(DEMO), "--keep", str(keep), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=SLOW, check=False)


def nats_port(output: str) -> int:
    found = re.search(r"nats-server on nats://127\.0\.0\.1:(\d+)", output)
    assert found, output
    return int(found.group(1))


def left_behind(keep: Path) -> list[str]:
    """Processes still running whose command line names the demo's folder (the nodes name
    its hbsm.toml, the nats-server its store, the restart commands its services)."""
    mine = str(keep).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            if mine in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_three_nodes_repair_each_fault_once_and_take_over_the_killed_node(tmp_path: Path) -> None:
    keep = tmp_path / "run"
    done = run_demo(keep, "--nodes", "3", "--services", "6", "--faults", "2")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert done.stderr == ""

    # Each fault repaired by exactly one restart carried out, as restarts.log says too.
    rows = ROW.findall(out)
    assert len(rows) == 2, out
    broken = [service for service, _, _, _ in rows]
    assert [count for _, _, _, count in rows] == ["1", "1"]
    logged = (keep / "services" / "restarts.log").read_text().split()[::2]
    assert sorted(logged) == sorted(broken)

    # The first fault's owner was killed in the middle of its restart; another node took
    # that service over, and the restart it carried out is the only one.
    first, owner, restarted_by, _ = rows[0]
    assert f"{owner} killed (SIGKILL) in the middle of restarting {first}" in out
    taken = re.search(rf"^    {first}\s+taken over by (n\d) [\d.]+s after the kill$", out, re.M)
    assert taken, out
    assert restarted_by == taken.group(1) != owner
    assert "NOT taken over" not in out
    assert re.search(rf"^  {owner} started again at [\d.]+s: took back (\d+) of its \1 ", out, re.M)

    assert re.search(r"^  hbsm replay --verify: verified \d+ events", out, re.M), out
    assert "nodes stopped (SIGTERM), exit codes: n1 0, n2 0, n3 0" in out
    assert "result: every fault repaired by exactly one restart" in out
    assert (keep / "cluster.jsonl").exists()
    assert left_behind(keep) == []
    assert not listening(nats_port(out))


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    keep = tmp_path / "run"
    argv = [sys.executable, str(DEMO), "--keep", str(keep), "--nodes", "2", "--services", "2",
            "--faults", "1"]  # fmt: skip
    demo = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:  # until a node runs its restart command: every process started
            lines.append(line)
            if "restart #1 started" in line:
                break
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=SLOW)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, "".join(lines) + out + err
    assert "interrupted; every process stopped" in err
    assert left_behind(keep) == []
    assert not listening(nats_port("".join(lines)))
