"""A monitor as one node of several sharing a log in NATS JetStream (docs/cluster.md).

Every node probes every service. What it does with a result depends on whether it owns the
service, i.e. holds its lease:

* the owner decides, as a single monitor does, on its own probe judged together with the other
  vantage points' latest facts (hbsm.cluster.quorum), and carries the repairs out; its events go
  to the service's fenced subject, so once the lease has moved they are refused, not recorded;
* any other node records what it saw as a `probe.seen` fact (a failure, or the first success
  after one), and decides nothing.

`ClusterRole` keeps this node alive in the members' bucket, holds the leases of the services
that hash to it among the live nodes (hbsm.cluster.placement), gives up those that hash
elsewhere once no repair of theirs is in flight, and folds the whole stream (every node's
events) into the monitor's projection, which the API serves. Taking a service over resumes it
from that projection, once it has folded the service's subject up to its last message: the
state the last owner left, with its cooldowns and budgets, and its interrupted work taken up.

The KV and stream calls run on the log's own loop thread (nats-py is bound to one loop); this
role awaits them from the monitor's loop without blocking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import msgspec
import nats.errors
import nats.js.errors

from hbsm.cluster.leases import Leases
from hbsm.cluster.members import Members
from hbsm.cluster.placement import preferred_node
from hbsm.cluster.quorum import judge, quorum_now, vote_window, votes_of
from hbsm.events import Event, Probe, ProbeSeen, ServiceOwned
from hbsm.log.errors import LogError
from hbsm.log.jetstream import service_subject
from hbsm.log.jetstream_read import JetStreamFollower
from hbsm.log.jetstream_shared import SharedStreamLog
from hbsm.monitor.startup import take_up

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from hbsm.monitor.runtime import Monitor

__all__ = ["ClusterRole"]

log = logging.getLogger("hbsm.monitor")

T = TypeVar("T")

# How often what other nodes wrote is folded in (the API's and the votes' freshness).
FOLLOW_EVERY = 0.05
_BUSY = frozenset({"repairing", "restarting"})


class _Round(NamedTuple):
    """What one round of lease keeping found (on the log's loop)."""

    live: list[str]
    lost: list[str]  # held, and the renewal failed: another node has it now
    released: list[str]  # handed over to the node they hash to
    ready: dict[str, int]  # held, not yet taken over here: the last seq of their subject


class ClusterRole:
    def __init__(self, monitor: Monitor, store: SharedStreamLog, ttl: float) -> None:
        self.m = monitor
        self.store = store
        self.node = store.node
        self.ttl = ttl
        # Services this node has taken over: it holds the lease, and its ServiceOwned is in.
        self.owned: set[str] = set()
        self.live: list[str] = []
        self._seen_ok: dict[str, bool] = {}  # what this node last recorded as a vantage point
        self._members: Members | None = None
        self._leases: Leases | None = None
        self._follower: JetStreamFollower | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Join: follow the stream from what the monitor resumed, keep the leases."""
        js = self.store.js
        ttl = self.ttl
        try:
            self._members = await self._on_log_loop(Members.open(js, self.node, ttl=ttl))
            self._leases = await self._on_log_loop(Leases.open(js, self.node, ttl=ttl))
        except (nats.errors.Error, TimeoutError) as exc:
            # `hbsm run` exits 3 on a log it cannot use, in one line: these buckets are part of it.
            why = str(exc) or type(exc).__name__
            raise LogError(
                f"{self.store.where}: cannot open the cluster's KV buckets: {why}"
            ) from None
        follower = self.store.follow(self.m.projection.monitor.last_seq)
        assert isinstance(follower, JetStreamFollower)
        self._follower = follower
        self._tasks = [
            asyncio.create_task(self._follow(), name="hbsm-cluster-follow"),
            asyncio.create_task(self._keep_leases(), name="hbsm-cluster-leases"),
        ]

    async def stop(self) -> None:
        """Leave: the leases are released and this node's key deleted, so the others take its
        services over at their next round rather than at the leases' expiry."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # What is buffered about the services it owns goes out while it still owns them: once
        # disowned, their events would be dropped unwritten.
        self.m.recorder.flush()
        stopping = [name for name in list(self.owned) if self.disown(name)]
        if stopping:
            log.info("handing %s over: this node is stopping", _some(stopping))
        with contextlib.suppress(Exception):
            await self._on_log_loop(self._leave())
        if self._follower is not None:
            self._follower.close()

    async def _leave(self) -> None:
        assert self._leases is not None and self._members is not None
        for name in list(self._leases.held):
            await self._leases.release(name)
        await self._members.leave()

    # --- what a probe becomes -----------------------------------------------------------------

    def decides(self, service: str) -> bool:
        return service in self.owned

    def observe(self, probe: Probe) -> list[Event]:
        """Record a probe this node made: decided on if it owns the service, else a vantage
        point's fact when it says something new."""
        m = self.m
        name = probe.service
        probe = msgspec.structs.replace(probe, node=self.node, ts=probe.ts or m.clock())
        if name in self.owned:
            policy = m.policies[name]
            view = m.projection.services.get(name)
            others = votes_of(view.seen if view is not None else {}, at=probe.ts,
                              window=vote_window(policy), besides=self.node)  # fmt: skip
            quorum = quorum_now(policy, len(self.live))
            return m.recorder.record(judge(probe, others, quorum))
        if probe.ok and self._seen_ok.get(name):
            return []  # still passing: nothing the owner needs to hear
        self._seen_ok[name] = probe.ok
        seen = ProbeSeen(
            ts=probe.ts, service=name, node=self.node, ok=probe.ok, latency_ms=probe.latency_ms,
            status=probe.status, error=probe.error, detail=probe.detail,
        )  # fmt: skip
        return m.recorder.append([seen])

    # --- taking over and handing over ---------------------------------------------------------

    def adopt(self, name: str, last_subject_seq: int) -> bool:
        """Take `name` over from the state the stream holds (folded up to `last_subject_seq`,
        its subject's last message): write that this node owns it, fenced at that seq, then
        take up what the last owner left in flight. Whether it is this node's now."""
        m = self.m
        view = m.projection.services.get(name)
        previous = view.owner if view is not None else None
        m.states[name] = m.projection.state_of(name)
        self.store.own(name, last_subject_seq)
        self.owned.add(name)
        why = f"taken over from {previous}" if previous and previous != self.node else "taken"
        m.recorder.append([ServiceOwned(ts=m.clock(), service=name, node=self.node,
                                        previous=previous, reason=why),
                           m.registration(name)])  # fmt: skip
        if not m.recorder.flush() or name not in self.owned:
            return False  # not written (an outage, or refused): tried again at the next round
        log.debug("%s: %s (%s)", name, why, m.states[name].state)
        take_up(m, name)
        return True

    def disown(self, name: str, why: str | None = None) -> bool:
        """Stop deciding `name`; `why` is said (a warning) when it was not this node's choice."""
        if name not in self.owned:
            return False
        self.owned.discard(name)
        self.store.disown(name)
        self._seen_ok.pop(name, None)
        if why is not None:
            log.warning("%s: no longer decided here: %s", name, why)
        return True

    def refused(self, refusals: dict[str, str]) -> None:
        """The stream refused this node's events about these services (Recorder.flush)."""
        for name, why in refusals.items():
            self.disown(name, why)

    # --- the loops ----------------------------------------------------------------------------

    async def _follow(self) -> None:
        follower = self._follower
        assert follower is not None
        projection = self.m.projection
        while True:
            events = follower.arrived()
            if events:
                projection.apply_all(events)
            await asyncio.sleep(FOLLOW_EVERY)

    async def _keep_leases(self) -> None:
        failing = False
        while True:
            try:
                await self.keep_leases()
            except Exception as exc:  # NATS away: the leases expire; said once, tried again
                if not failing:
                    why = str(exc) or type(exc).__name__
                    log.warning("cluster: cannot keep the leases (%s); trying again", why)
                failing = True
            else:
                if failing:
                    log.warning("cluster: keeping the leases again")
                failing = False
            await asyncio.sleep(self.ttl / 3)

    async def keep_leases(self) -> None:
        """One round: beat, renew, hand over, take; then take over what is ready."""
        m = self.m
        # What is buffered goes out first, while this node still owns what it is about (a
        # service handed over below could no longer be written).
        m.recorder.flush()
        busy = {n for n in self.owned if m.states[n].state in _BUSY}
        # Stopped by an operator (/admin/heartbeat/stop): the node leaves, handing its services
        # to the others, and takes none until it is started again.
        wanted = list(m.services) if m.heartbeat_running else []
        rounds = self._round(wanted, busy, set(self.owned))
        found = await self._on_log_loop(rounds, self.ttl)
        self.live = found.live
        for name in found.lost:
            self.disown(name, "its lease expired or moved (this node could not renew it)")
        # Handovers and take-overs are the cluster at work: one line a round, not one a service
        # (a node joining a cluster of 1,000 services takes a third of them at once).
        released = [name for name in found.released if self.disown(name)]
        if released:
            to = "another node" if found.live else "nobody: this node is stopped"
            log.info("handed %s over to %s", _some(released), to)
        folded = m.projection.monitor.last_seq
        taken = [name for name, last in found.ready.items()
                 if last <= folded and self.adopt(name, last)]  # else at a later round  # fmt: skip
        if taken:
            log.info("took %s over", _some(taken))

    async def _round(self, services: list[str], busy: set[str], owned: set[str]) -> _Round:
        members, leases = self._members, self._leases
        assert members is not None and leases is not None
        if services:
            await members.beat()
        else:
            await members.leave()
        live = await members.live()
        held = list(leases.held)
        renewed = await asyncio.gather(*(leases.renew(n) for n in held))
        lost = [n for n, lease in zip(held, renewed, strict=True) if lease is None]
        released = []
        for name in list(leases.held):
            if name not in busy and (not services or preferred_node(name, live) != self.node):
                await leases.release(name)
                released.append(name)
        wanted = [n for n in services
                  if n not in leases.held and preferred_node(n, live) == self.node]  # fmt: skip
        await asyncio.gather(*(leases.take(n) for n in wanted))
        adopting = [name for name in leases.held if name not in owned]
        lasts = await asyncio.gather(*(self._last_subject_seq(name) for name in adopting))
        return _Round(live, lost, released, dict(zip(adopting, lasts, strict=True)))

    async def _last_subject_seq(self, name: str) -> int:
        subject = service_subject(self.store.prefix, name)
        try:
            msg = await self.store.js.get_last_msg(self.store.stream, subject)
        except nats.js.errors.NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def _on_log_loop(self, work: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return await asyncio.wait_for(asyncio.wrap_future(self.store.submit(work)), timeout)


def _some(names: list[str], shown: int = 5) -> str:
    """ "3 services (a, b, c)", or "40 services (a, b, c, d, e, ...)"."""
    listed = ", ".join(sorted(names)[:shown]) + (", ..." if len(names) > shown else "")
    return f"{len(names)} service{'s' if len(names) != 1 else ''} ({listed})"
