"""`hbsm replay --store`: the replay of a log kept in a JetStream stream of a real nats-server is
the replay of the same stream exported to a file (`hbsm export`), in every mode; what it
cannot read it says in one line, exit 3."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
from replay_scenarios import run_cli
from support.nats_server import NatsServer

from hbsm.cli import main
from hbsm.events import Event
from hbsm.log import read_history
from hbsm.log.jetstream import JetStreamLog

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "samples"
_streams = (f"REPLAY{n}" for n in itertools.count())


def _stream_of(url: str, sample: Path) -> tuple[str, list[Event]]:
    """A new stream holding the sample's events, as a writer appends them (seq and ts kept)."""
    events = [e for e in read_history(sample) if isinstance(e, Event)]
    stream = next(_streams)
    with JetStreamLog.open(url, stream=stream) as log:
        log.append(events)
        log.flush()
    return stream, events


def _hbsm(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _same_report(store_out: str, file_out: str, store_name: str, file_name: str) -> None:
    """The reports match but for the name of what was read."""
    if store_out.startswith(("{", "[")):
        store, exported = json.loads(store_out), json.loads(file_out)
        assert store.pop("files", [store_name]) == [store_name]
        assert exported.pop("files", [file_name]) == [file_name]
        assert store == exported
    else:
        assert store_out == file_out.replace(file_name, store_name)


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.jsonl")), ids=lambda p: p.stem)
def test_the_stream_replays_as_its_export(
    sample: Path, module_nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = module_nats_server.url
    stream, events = _stream_of(url, sample)
    exported = tmp_path / "exported.jsonl"
    code, _, err = _hbsm(capsys, "export", "--store", url, "--stream", stream, "-o", str(exported))
    assert code == 0, err
    service = next(e.service for e in events if getattr(e, "service", None))
    middle = str(events[len(events) // 2].ts)
    modes = [
        [],
        ["--json"],
        ["--service", service, "--since", middle, "--json"],
        ["--until", middle],
        ["--verify"],
        ["--verify", "--json"],
        ["--set", "max_retries=5"],
    ]
    store_name = f"{url} (stream {stream})"
    for mode in modes:
        store = _hbsm(capsys, "replay", "--store", url, "--stream", stream, *mode)
        from_file = _hbsm(capsys, "replay", str(exported), *mode)
        assert store[0] == from_file[0] == 0, (mode, store[2], from_file[2])
        _same_report(store[1], from_file[1], store_name, str(exported))
        assert store[2] == from_file[2].replace(str(exported), store_name), mode
    code, out, _ = _hbsm(capsys, "replay", "--store", url, "--stream", stream, "--verify")
    assert out.startswith(f"verified {len(events)} events")


def test_the_default_stream_is_hbsm(
    module_nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = module_nats_server.url
    events = [e for e in read_history(SAMPLES / "flapping.jsonl") if isinstance(e, Event)]
    with JetStreamLog.open(url) as log:
        log.append(events)
    code, out, err = _hbsm(capsys, "replay", "--store", url, "--json")
    assert code == 0, err
    assert json.loads(out)["files"] == [f"{url} (stream HBSM)"]
    assert json.loads(out)["events"] == len(events)


def test_what_it_cannot_read_is_one_line_exit_3(module_nats_server: NatsServer) -> None:
    for store, stream, words in (
        ("nats://127.0.0.1:1", "HBSM", "cannot connect"),  # nothing listens there
        (module_nats_server.url, "NOPE", "no stream NOPE"),
    ):
        done = run_cli("replay", "--store", store, "--stream", stream)
        assert done.returncode == 3, done.stderr
        assert done.stderr.startswith("hbsm replay: ") and words in done.stderr
        assert store in done.stderr and stream in done.stderr
        assert len(done.stderr.splitlines()) == 1 and done.stdout == ""


def test_files_or_a_store_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    for args, words in (
        (["replay", "--store", "nats://127.0.0.1:1", "x.jsonl"], "not both"),
        (["replay"], "name a FILE"),
        (["replay", "--stream", "HBSM", "x.jsonl"], "--stream names a stream of --store"),
    ):
        code, out, err = _hbsm(capsys, *args)
        assert code == 2 and words in err and out == "", (args, err)


@pytest.mark.parametrize("command", ["replay", "dashboard", "export"])
def test_without_the_nats_extra_it_says_which_to_install(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The module that needs nats-py, unimportable as it is without the extra.
    monkeypatch.setitem(sys.modules, "hbsm.log.jetstream_read", None)
    code, out, err = _hbsm(capsys, command, "--store", "nats://127.0.0.1:4222")
    assert code == 3 and out == ""
    assert err.startswith(f"hbsm {command}: --store nats://127.0.0.1:4222 needs the nats extra")
    assert "pip install 'hbsm[nats]'" in err and len(err.splitlines()) == 1
