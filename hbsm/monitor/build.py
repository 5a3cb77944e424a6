"""Wiring a Monitor to its real parts: the event log (a file, or a JetStream stream), probes,
repairs, supervisor, notifier.

`hbsm run` and the Flask blueprint's embedded mode both start a monitor this way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from hbsm.config import Config
from hbsm.config.validate import steps_named
from hbsm.events import Snapshot
from hbsm.log import EventStore, FileEventLog, LogError
from hbsm.monitor.runtime import Monitor
from hbsm.notify import Notifier
from hbsm.probes import Prober
from hbsm.projection import Projection
from hbsm.repair import RepairRunner, Supervisor, load_steps

__all__ = ["open_monitor"]


def open_monitor(
    config: Config, *, clock: Callable[[], float] = time.time
) -> tuple[EventStore, Monitor]:
    """Open the event log (the file, taking its writer lock, or the JetStream stream that
    `log.store` names) and build the Monitor that writes it.

    Raises LogError when the log cannot be used (another writer holds it, or its directory
    cannot be made or reached). The caller closes the log after `monitor.stop()`.
    """
    log_path = Path(config.log.path)
    projection = Projection()

    def snapshot(segment: int) -> Snapshot:
        # Each new log segment opens with the views as of now, so readers can start there.
        return projection.snapshot(segment, clock())

    store: EventStore
    if config.log.store:
        try:
            from hbsm.log.jetstream import JetStreamLog  # the `nats` extra: only when asked for
        except ImportError as exc:
            raise LogError(
                f"log.store = {config.log.store!r} needs the nats extra "
                f"(pip install 'hbsm[nats]'): {exc}"
            ) from None

        node = config.cluster.node
        where = {"stream": config.log.stream, "replicas": config.log.replicas, "clock": clock}
        if node is None:
            store = JetStreamLog.open(config.log.store, **where)
        else:
            from hbsm.log.jetstream_shared import SharedStreamLog

            store = SharedStreamLog.open(config.log.store, node=node, **where)
    else:
        store = FileEventLog.open(
            log_path,
            fsync=config.log.fsync,
            max_bytes=config.log.max_bytes,
            keep_segments=config.log.keep_segments,
            snapshot=snapshot,
            mode=0o640 if config.log.group_read else 0o600,
        )
    try:
        supervisor = Supervisor(output_dir=log_path.parent)
        monitor = Monitor(
            config,
            store=store,
            prober=Prober(concurrency=config.concurrency),
            repairs=RepairRunner(
                supervisor=supervisor,
                steps=load_steps(steps_named(config)),
                log_dir=log_path.parent,
            ),
            supervisor=supervisor,
            notifier=Notifier(config.notify),
            clock=clock,
            projection=projection,
        )
        if config.log.store and config.cluster.node is not None:
            from hbsm.log.jetstream_shared import SharedStreamLog
            from hbsm.monitor.cluster import ClusterRole

            assert isinstance(store, SharedStreamLog)
            monitor.cluster = ClusterRole(monitor, store, config.cluster.lease_ttl)
    except BaseException:
        store.close()
        raise
    return store, monitor
