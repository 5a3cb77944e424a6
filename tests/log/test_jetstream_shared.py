"""The log several nodes write (hbsm.log.jetstream_shared) on a real nats-server: the stream
numbers every node's events; a service's subject takes a node's writes only at the sequence it
expects, so a node that lost a service is refused and told, not interleaved; what any node saw
of a service goes through unfenced."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from support.nats_server import NatsServer

from hbsm.events import MonitorStarted, Probe, ProbeSeen, ServiceOwned
from hbsm.log.jetstream_read import read_stream
from hbsm.log.jetstream_shared import SharedStreamLog

_names = (f"S{n}" for n in itertools.count())


@pytest.fixture
def pair(module_nats_server: NatsServer) -> Iterator[tuple[SharedStreamLog, SharedStreamLog]]:
    """Nodes a and b on a fresh stream."""
    stream = next(_names)
    url = module_nats_server.url
    a = SharedStreamLog.open(url, node="a", stream=stream)
    b = SharedStreamLog.open(url, node="b", stream=stream)
    yield a, b
    a.close()
    b.close()


def probe(ok: bool = True) -> Probe:
    return Probe(service="web", ok=ok)


def test_the_stream_numbers_every_nodes_events(pair):
    a, b = pair
    a.own("web", 0)
    appended = a.append([MonitorStarted(pid=1), probe()])
    assert [e.seq for e in appended] == [0, 0] and all(e.ts > 0 for e in appended)
    a.flush()
    b.append([ProbeSeen(service="web", node="b", ok=False, error="timeout")])
    b.flush()
    history = list(read_stream(a.url, a.stream))
    assert [e.seq for e in history] == [1, 2, 3]
    assert [type(e) for e in history] == [MonitorStarted, Probe, ProbeSeen]
    assert a.take_refused() == {} and b.take_refused() == {}


def test_a_node_that_lost_a_service_is_refused_and_told(pair):
    a, b = pair
    a.own("web", 0)
    a.append([probe()])
    a.flush()  # web's subject: at seq 1
    # b takes web over from what it has read (seq 1), and writes.
    b.own("web", 1)
    b.append([ServiceOwned(service="web", node="b", previous="a")])
    b.flush()
    # a does not know yet: its next write expects the subject at seq 1, and is refused.
    a.append([probe(ok=False), probe(ok=False)])
    a.flush()
    refused = a.take_refused()
    assert list(refused) == ["web"] and "another node wrote web" in refused["web"]
    assert not a.owns("web") and a.take_refused() == {}
    history = list(read_stream(a.url, a.stream))
    assert [type(e) for e in history] == [Probe, ServiceOwned]  # nothing of a's after b's
    # b goes on from where it wrote.
    b.append([probe()])
    b.flush()
    assert b.take_refused() == {} and len(list(read_stream(a.url, a.stream))) == 3


def test_a_node_never_writes_a_service_it_does_not_own(pair):
    a, _ = pair
    a.append([probe()])
    a.flush()
    assert "a does not own web" in a.take_refused()["web"]
    assert list(read_stream(a.url, a.stream)) == []


def test_a_stale_fence_is_refused_even_before_anyone_wrote_since(pair):
    # Two nodes that both believe they own web from seq 0: the first write wins, the other is
    # refused. The stream decides; nobody's clock or lease view does.
    a, b = pair
    a.own("web", 0)
    b.own("web", 0)
    a.append([probe()])
    b.append([probe(ok=False)])
    a.flush()
    b.flush()
    assert a.take_refused() == {} and list(b.take_refused()) == ["web"]
    assert [e.ok for e in read_stream(a.url, a.stream)] == [True]  # type: ignore[union-attr]
