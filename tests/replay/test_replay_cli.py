"""`hbsm replay` through the real command line: reports, filters, --stats, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from replay_scenarios import T0, Recorder, outage, run_cli, write_log

from hbsm import __version__
from hbsm.events import Event


def history() -> list[Event]:
    rec = Recorder()
    rec.start()
    rec.register("api")
    rec.register("web")
    outage(rec)
    rec.probes("web", "...x..xx.", T0 + 5)
    return rec.stamped()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write_log(tmp_path / "heartbeat.jsonl", history(), stamped=True)


def test_text_report_has_timeline_incidents_and_mttr(log: Path) -> None:
    done = run_cli("replay", log)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert out.startswith(f"replay of {log}: {len(history())} events (seq 1..")
    assert re.search(
        r"2026-11-01T03:01:00\.000Z +#\d+ +api +healthy -> degraded \(probe_failed\)", out
    )
    assert "repair run 1: step 1/3 diagnose started" in out
    assert "incidents (3: 3 recovered, 0 ongoing)" in out
    api_incident = next(line for line in out.splitlines() if line.strip().startswith("api  2026"))
    assert "2026-11-01T03:01:00.000Z" in api_incident and "2m 30s" in api_incident
    assert "detect 1m 00s" in api_incident and "restarts 1" in api_incident
    mttr = {line.split()[0]: line.split() for line in out.splitlines()[-3:]}
    assert mttr["api"][:4] == ["api", "healthy", "1", "1"] and "2m" in mttr["api"]
    assert mttr["web"][4:6] == ["45.0", "s"]  # (30 s + 60 s) / 2
    assert mttr["all"][1:3] == ["3", "3"]


def test_json_report(log: Path) -> None:
    done = run_cli("replay", log, "--json")
    assert done.returncode == 0, done.stderr
    report = msgspec.json.decode(done.stdout)
    assert set(report) >= {"files", "events", "timeline", "incidents", "services", "totals"}
    assert report["events"] == len(history()) and report["files"] == [str(log)]
    api = next(i for i in report["incidents"] if i["service"] == "api")
    assert api["duration_s"] == 150.0 and api["detect_s"] == 60.0 and api["ongoing"] is False
    assert api["start_time"] == "2026-11-01T03:01:00.000Z"
    services = {s["service"]: s for s in report["services"]}
    assert services["api"]["mttr_s"] == 150.0 and services["web"]["mttr_s"] == 45.0
    assert report["totals"]["mttr_s"] == 80.0  # (150 + 30 + 60) / 3
    transition = next(e for e in report["timeline"] if e["type"] == "transition")
    assert transition["event"]["dst"] == "healthy" and transition["time"].endswith("Z")


def test_filters_narrow_the_report(log: Path) -> None:
    done = run_cli(
        "replay", log, "--json", "--service", "web",
        "--since", "2026-11-01T03:02:30Z", "--until", str(T0 + 300),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = msgspec.json.decode(done.stdout)
    assert report["services_filter"] == ["web"]
    assert report["since"] == "2026-11-01T03:02:30.000Z"
    assert report["until"] == "2026-11-01T03:05:00.000Z"
    assert {e["service"] for e in report["timeline"]} == {"web"}
    assert all(T0 + 150 <= e["ts"] <= T0 + 300 for e in report["timeline"])
    assert [(i["service"], i["duration_s"]) for i in report["incidents"]] == [("web", 60.0)]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--service", "db"], "unknown service 'db'; services in this history: api, web"),
        (["--since", "last tuesday"], "--since 'last tuesday' is neither ISO-8601"),
        (["--since", str(T0 + 10), "--until", str(T0)], "--since is later than --until"),
        (["--stats", "--service", "api"], "--stats counts the whole history"),
        (["--verify", "--since", str(T0)], "--verify checks the whole history"),
    ],
)
def test_bad_filters_exit_2_with_one_line(log: Path, args: list[str], needle: str) -> None:
    done = run_cli("replay", log, *args)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("hbsm replay: ") and needle in line


STATS_LAST = re.compile(r"replayed (\d+) events in (\d+\.\d+) s \(([\d,]+) events/s\)")


def test_stats_counts_and_ends_with_the_rate_line(log: Path) -> None:
    done = run_cli("replay", log, "--stats")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    match = STATS_LAST.fullmatch(lines[-1])
    assert match, lines[-1]
    events = history()
    assert int(match[1]) == len(events)
    counts = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}
    probes = sum(type(e).__name__ == "Probe" for e in events)
    assert counts["probe"] == str(probes) and counts["restart.started"] == "1"
    assert counts["healthy"] == "2"  # services by final state


def test_stats_json(log: Path) -> None:
    done = run_cli("replay", log, "--stats", "--json")
    assert done.returncode == 0, done.stderr
    stats = msgspec.json.decode(done.stdout)
    assert stats["events"] == len(history()) and stats["states"] == {"healthy": 2}
    assert stats["counts"]["service.registered"] == 2 and stats["events_per_s"] > 0


def test_a_torn_last_line_replays_with_a_notice(log: Path) -> None:
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"type":"probe","seq":999,"ts":1793510000.0,"serv')
    done = run_cli("replay", log, "--stats")
    assert done.returncode == 0, done.stderr
    (notice,) = done.stderr.splitlines()
    assert notice.startswith(f"hbsm replay: notice: {log}: ignored a torn last line (")
    assert f"at offset {len(whole)}" in notice
    assert STATS_LAST.fullmatch(done.stdout.splitlines()[-1])
    assert f"replayed {len(history())} events" in done.stdout


def test_garbage_in_the_middle_names_file_and_line(log: Path) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    lines.insert(9, b"this is not an event\n")
    log.write_bytes(b"".join(lines))
    done = run_cli("replay", log)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"hbsm replay: {log}:10: ")

    done = run_cli("replay", log, "--skip-bad", "--json")
    assert done.returncode == 0, done.stderr
    assert msgspec.json.decode(done.stdout)["skipped"] == 1
    assert msgspec.json.decode(done.stdout)["events"] == len(history())
    assert "skipped 1 bad line" in done.stderr


def test_an_event_that_does_not_validate_is_corrupt(log: Path) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    lines[4] = b'{"type":"probe","seq":5,"ts":1793502000.0,"service":"api","ok":"maybe"}\n'
    log.write_bytes(b"".join(lines))
    done = run_cli("replay", log)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert f"{log}:5: " in line and "probe" in line


def test_missing_file_or_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    done = run_cli("replay", missing)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("hbsm replay: ") and str(missing) in line
    done = run_cli("replay", tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert f"{tmp_path}: is a directory; name the log file" in line


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
        ("notes.txt", b"remember to restart the api\nand the web\n"),
        ("data.jsonl", b'{"name": "not an event"}\n'),
        ("array.json", b"[1, 2, 3]\n"),
    ],
)
def test_not_a_log_exits_2_with_one_line(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    done = run_cli("replay", path)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"hbsm replay: {path}") and "not an hbsm event log" in line


def test_several_files_are_separate_logs_each_verified_on_its_own(tmp_path: Path) -> None:
    # Two complete histories of the same service: as one history the second would start from
    # the first one's final state and diverge; as separate logs both verify.
    one = write_log(tmp_path / "one.jsonl", history(), stamped=True)
    two = write_log(tmp_path / "two.jsonl", history(), stamped=True)
    done = run_cli("replay", one, two, "--verify")
    assert done.returncode == 0, done.stderr
    assert f"==> {one} <==" in done.stdout and f"==> {two} <==" in done.stdout
    assert done.stdout.count("verified") == 2

    done = run_cli("replay", one, two, "--json")
    assert done.returncode == 0, done.stderr
    reports = msgspec.json.decode(done.stdout)
    assert isinstance(reports, list) and len(reports) == 2
    assert reports[0]["incidents"] == reports[1]["incidents"]


def test_with_several_logs_the_exit_code_is_the_worst(tmp_path: Path) -> None:
    good = write_log(tmp_path / "good.jsonl", history(), stamped=True)
    missing = tmp_path / "missing.jsonl"
    done = run_cli("replay", good, missing, "--verify")
    assert done.returncode == 2
    assert "verified" in done.stdout
    assert str(missing) in done.stderr


def test_version_help_and_usage() -> None:
    done = run_cli("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"hbsm {__version__}")
    done = run_cli("--help")
    assert done.returncode == 0 and "replay" in done.stdout and "exit codes:" in done.stdout
    done = run_cli("replay", "--help")
    assert done.returncode == 0
    assert "--verify" in done.stdout and "max_retries" in done.stdout
    assert "2  bad usage or bad input" in done.stdout
    assert run_cli().returncode == 2
    assert run_cli("replay").returncode == 2
    assert run_cli("replay", "x.jsonl", "--stats", "--verify").returncode == 2
