"""Reading `hbsm.toml` again while the monitor runs: SIGHUP, `POST /admin/config/reload`,
`hbsm reload`.

The file is loaded and checked as at start (`load_config`: a bad file is refused with the one
line `hbsm config --check` gives, and the running configuration stays). Then what changed is
applied, and recorded first as one `config.reloaded` event naming the services added, removed
and changed (with the keys that changed) and the configuration's new version:

* an added service is registered (`service.registered`) and probed from its first slot; a
  supervised one has its process started;
* a removed service is taken off the schedule and recorded gone (`service.removed`); a process
  hbsm supervised for it is stopped. Its history stays in the log;
* a changed service is registered again with its new policy: the next probe is decided by it.

A service in the middle of a repair run (repairing, restarting, or waiting in cooldown to
restart) keeps its configuration until the run ends: a run finishes under the policy it started
with. Its change is listed as `deferred` and its `service.registered` (or `service.removed`)
is recorded the moment the run ends, so `hbsm replay --verify` re-decides every fact by the
policy the log shows in force at that point.

Settings the running process cannot take over (the API's address and limits, the log, the
notifiers, the cluster, the concurrency) are not applied: they are named as needing a restart
in the answer, the event and the process's stderr. With several nodes (`cluster.node`), a
reload is refused: which node owns which service is settled by leases over a fixed set of
services, so each node is restarted in turn instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from hbsm.config import Config, ConfigError, LoadedConfig, ServiceConfig
from hbsm.config.validate import steps_named
from hbsm.errors import HbsmError
from hbsm.events import ConfigReloaded, Event, ProcessStarted, ProcessStopped, ServiceRemoved
from hbsm.repair import SupervisorError, load_steps
from hbsm.state import Policy, ServiceState

if TYPE_CHECKING:
    from hbsm.monitor.runtime import Monitor

__all__ = [
    "RESTART_ONLY",
    "ConfigDiff",
    "ReloadResult",
    "ReloadUnavailableError",
    "Reloader",
    "config_digest",
    "diff_configs",
    "in_repair_run",
]

log = logging.getLogger("hbsm.monitor")

# Top-level settings the running process was built with: a change to them waits for a restart.
RESTART_ONLY = (
    "enabled",
    "auto_start",
    "host",
    "port",
    "login_url",
    "concurrency",
    "api",
    "log",
    "notify",
    "cluster",
)

_SERVICE_KEYS = tuple(f for f in ServiceConfig.__struct_fields__ if f != "name")


class ReloadUnavailableError(HbsmError):
    """This monitor cannot reload (no file to read again, or one node of several)."""


@dataclass(frozen=True)
class ConfigDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    needs_restart: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did, as its answer tells it."""

    ok: bool
    message: str
    version: int
    hash: str
    event: ConfigReloaded | None = None


def config_digest(config: Config) -> str:
    """A digest of the configuration in force (the file with the environment applied): equal
    for equal configurations, whatever the file's layout."""
    return hashlib.sha256(msgspec.json.encode(config)).hexdigest()[:12]


def in_repair_run(state: ServiceState) -> bool:
    """Whether a repair run is under way: its configuration must not change under it."""
    return (
        state.state in ("repairing", "restarting")
        or state.in_flight is not None
        or (state.state == "cooldown" and state.restart_pending)
    )


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """What differs between two configurations: services added and removed, the keys that
    changed for each service (its own settings and its thresholds as in force), and the
    settings that only a restart applies. Pure."""
    before = {s.name: s for s in old.services}
    after = {s.name: s for s in new.services}
    changed: dict[str, list[str]] = {}
    # Thresholds left alone at the top: a service whose own table is the same is the same (the
    # common case, cheap: 10,000 policies are not built twice to find that out).
    same_top = all(getattr(old, k) == getattr(new, k) for k in Policy.__struct_fields__)
    for name, svc in after.items():
        was = before.get(name)
        if was is None or (same_top and was == svc):
            continue
        keys = {k for k in _SERVICE_KEYS if getattr(was, k) != getattr(svc, k)}
        keys -= set(Policy.__struct_fields__)  # compared as in force, below
        old_policy, new_policy = old.policy_for(was), new.policy_for(svc)
        if old_policy != new_policy:
            keys |= {k for k in Policy.__struct_fields__
                     if getattr(old_policy, k) != getattr(new_policy, k)}  # fmt: skip
        if keys:
            changed[name] = sorted(keys)
    return ConfigDiff(
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        changed=changed,
        needs_restart=_restart_only_changes(old, new),
    )


def _restart_only_changes(old: Config, new: Config) -> list[str]:
    keys = []
    for key in RESTART_ONLY:
        a, b = getattr(old, key), getattr(new, key)
        if a == b:
            continue
        if isinstance(a, msgspec.Struct):
            keys += [f"{key}.{k}" for k in a.__struct_fields__ if getattr(a, k) != getattr(b, k)]
        else:
            keys.append(key)
    if old.admin_token and not new.admin_token:
        # Dropping the token may leave an API beyond loopback open: only a restart (and its
        # check of the address) does that.
        keys.append("admin_token")
    return keys


def in_force(old: Config, new: Config, diff: ConfigDiff) -> Config:
    """`new`, but with the settings that need a restart as the running process has them."""
    kept: dict[str, Any] = {key: getattr(old, key) for key in RESTART_ONLY}
    if "admin_token" in diff.needs_restart:
        kept["admin_token"] = old.admin_token
    return msgspec.structs.replace(new, **kept)


class Reloader:
    """The reloads of one monitor, one at a time, and the changes waiting for a repair run to
    end."""

    def __init__(self, monitor: Monitor, loader: Callable[[], LoadedConfig] | None) -> None:
        self.m = monitor
        # Reads the file again as `hbsm run` read it at start (its command-line overrides too);
        # None: this monitor's configuration was not read from a file it can read again.
        self.loader = loader
        self.version = 1
        self.hash = config_digest(monitor.config)
        self.path = ""
        # Service -> its new configuration (None: removed), applied when its repair run ends.
        self.pending: dict[str, ServiceConfig | None] = {}
        self._lock = asyncio.Lock()

    async def reload(self, *, source: str, who: str = "") -> ReloadResult:
        """Read the file again and apply it; a bad file is refused, recorded, and changes
        nothing. Raises ReloadUnavailableError (no file, several nodes)."""
        m = self.m
        if self.loader is None:
            raise ReloadUnavailableError(
                "this monitor's configuration was given in code, not read from a file: "
                "restart it to change the configuration"
            )
        if m.cluster is not None:
            raise ReloadUnavailableError(
                f"reloading is not available with several nodes (this is node {m.node}): "
                "which node owns which service is settled over a fixed set of services; "
                "restart the nodes one at a time to change the configuration"
            )
        async with self._lock:
            try:
                # Off the loop: a file of 10,000 services takes a while to read and check.
                loaded = await asyncio.to_thread(self.loader)
            except ConfigError as exc:
                return self._refused(str(exc), source, who)
            return await self._apply(loaded, source, who)

    def _refused(self, message: str, source: str, who: str) -> ReloadResult:
        m = self.m
        log.error("config reload refused, the running configuration stays: %s", message)
        event = ConfigReloaded(ts=m.clock(), version=self.version, hash=self.hash,
                               path=self.path, source=source, who=who, error=message,
                               node=m.node)  # fmt: skip
        recorded = m.recorder.append([event])
        m.recorder.flush()
        return ReloadResult(False, message, self.version, self.hash, _first(recorded))

    async def _apply(self, loaded: LoadedConfig, source: str, who: str) -> ReloadResult:
        m = self.m
        old = m.config
        diff = diff_configs(old, loaded.config)
        new = in_force(old, loaded.config, diff)
        digest = config_digest(new)
        self.path = str(loaded.path) if loaded.path is not None else ""
        if digest != self.hash:
            self.version += 1
            self.hash = digest
        services = {s.name: s for s in new.services}
        needed = steps_named(new) - set(m.repairs.steps)
        if needed:
            m.repairs.steps.update(load_steps(needed))
        # Back in the file while its removal waits for its run to end: a change, deferred too.
        returning = [n for n in diff.added if n in self.pending]
        deferred = [n for n in [*diff.changed, *diff.removed] if in_repair_run(m.states[n])]
        deferred += returning
        event = ConfigReloaded(
            ts=m.clock(), version=self.version, hash=self.hash, path=self.path,
            added=diff.added, removed=diff.removed, changed=diff.changed, deferred=deferred,
            needs_restart=diff.needs_restart, source=source, who=who, node=m.node,
        )  # fmt: skip
        m.config = new
        now = m.clock()
        events: list[Event] = [event]
        for name in diff.added:
            if name in returning:
                self.pending[name] = services[name]
                continue
            self._put(name, services[name])
            m.states[name] = m.projection.state_of(name)
            events.append(m.registration(name, now))
        for name in diff.changed:
            self.pending.pop(name, None)
            if name in deferred:
                self.pending[name] = services[name]
            else:
                self._put(name, services[name])
                events.append(m.registration(name, now))
        recorded = m.recorder.append(events)
        m.recorder.flush()
        for name in diff.removed:
            if name in deferred:
                self.pending[name] = None
            else:
                await self._retire(name)
        for name in diff.added:
            if name not in returning:
                await self._first_start(name)
        if diff.needs_restart:
            log.warning("config reload: needs a restart to apply: %s",
                        ", ".join(diff.needs_restart))  # fmt: skip
        message = _summary(event)
        log.info("%s", message)
        return ReloadResult(True, message, self.version, self.hash, _first(recorded))

    def _put(self, name: str, svc: ServiceConfig) -> None:
        """`svc` in force for `name` from its next probe."""
        m = self.m
        before = m.policies.get(name)
        m.services[name] = svc
        m.policies[name] = policy = m.config.policy_for(svc)
        if m.heartbeat_running and (
            before is None or before.check_interval != policy.check_interval
        ):
            m.scheduler.add(name, policy.check_interval)

    async def _retire(self, name: str) -> None:
        """Stop monitoring `name`: off the schedule, its process (if supervised) stopped, and
        recorded gone. Nothing of it is decided after this."""
        m = self.m
        svc = m.services.pop(name)
        m.policies.pop(name, None)
        m.states.pop(name, None)
        m.scheduler.remove(name)
        events: list[Event] = []
        if svc.restart.kind == "supervise":
            pid = m.supervisor.pid(name)
            await m.supervisor.stop(name, grace=svc.restart.grace)
            if pid is not None:
                events.append(ProcessStopped(ts=m.clock(), service=name, pid=pid,
                                             reason="removed from the configuration"))  # fmt: skip
        events.append(ServiceRemoved(ts=m.clock(), service=name,
                                     reason="removed from the configuration"))  # fmt: skip
        m.recorder.append(events)
        m.recorder.flush()

    async def _first_start(self, name: str) -> None:
        m = self.m
        svc = m.services.get(name)
        if svc is None or svc.restart.kind != "supervise":
            return
        try:
            pid = await m.supervisor.start(name, svc.restart)
        except SupervisorError as exc:
            log.error("%s", exc)  # its probes fail, and its ladder retries the start
            return
        m.record(ProcessStarted(ts=m.clock(), service=name, pid=pid, argv=list(svc.restart.argv)))

    def run_ended(self, name: str) -> None:
        """Called after each fact about `name` is recorded: a change deferred while a repair
        run was under way is applied once the run is over."""
        if name not in self.pending or in_repair_run(self.m.states[name]):
            return
        svc = self.pending.pop(name)
        m = self.m
        if svc is None:
            m.effects.spawn(self._retire(name))
            return
        self._put(name, svc)
        m.recorder.append([m.registration(name, m.clock())])


def _first(events: list[Event]) -> ConfigReloaded | None:
    first = events[0] if events else None
    return first if isinstance(first, ConfigReloaded) else None


def _summary(e: ConfigReloaded) -> str:
    from hbsm.describe import describe

    return describe(e)
