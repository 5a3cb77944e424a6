"""`hbsm run`: load the config, take the log, run the monitor until SIGTERM/SIGINT.

Exit codes: 0 stopped cleanly, 2 bad configuration, 3 the event log cannot be used (held by
another writer, corrupt), 1 anything unexpected. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import signal
import sys
import time
from pathlib import Path

from hbsm.config import ConfigError, LoadedConfig, load_config
from hbsm.events import Snapshot
from hbsm.log import FileEventLog, LogError
from hbsm.monitor.runtime import Monitor
from hbsm.notify import Notifier
from hbsm.probes import Prober
from hbsm.repair import RepairRunner, Supervisor

__all__ = ["add_parser", "run", "serve"]

EXIT_CONFIG = 2
EXIT_LOG = 3

log = logging.getLogger("hbsm")


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the monitor (probes, repairs, restarts) until stopped",
        description="Run the monitor until SIGTERM or SIGINT. Exit codes: 0 stopped cleanly, "
        "2 bad configuration, 3 the event log cannot be used, 1 unexpected error.",
    )
    parser.add_argument("--config", metavar="FILE", help="hbsm.toml (default: $HEARTBEAT_CONFIG "
                        "or ./hbsm.toml if present, else the built-in defaults)")  # fmt: skip
    parser.add_argument("--log", metavar="PATH", help="event log (overrides the config)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="stop by itself after this long (for demos and tests)")  # fmt: skip
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(f"hbsm run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config = loaded.config
    if args.log:
        import msgspec

        config = msgspec.structs.replace(
            config, log=msgspec.structs.replace(config.log, path=args.log)
        )
        loaded = LoadedConfig(config=config, sources=loaded.sources, path=loaded.path)
    _setup_logging(loaded)
    try:
        return asyncio.run(serve(loaded, duration=args.duration))
    except LogError as exc:
        print(f"hbsm run: {exc}", file=sys.stderr)
        return EXIT_LOG


async def serve(loaded: LoadedConfig, *, duration: float | None = None) -> int:
    config = loaded.config
    log_path = Path(config.log.path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    holder: list[Monitor] = []

    def snapshot(segment: int) -> Snapshot:
        # Each new log segment opens with the views as of now, so readers can start there.
        return holder[0].projection.snapshot(segment, time.time())

    store = FileEventLog.open(
        log_path,
        fsync=config.log.fsync,
        max_bytes=config.log.max_bytes,
        keep_segments=config.log.keep_segments,
        snapshot=snapshot,
    )
    try:
        supervisor = Supervisor(output_dir=log_path.parent)
        monitor = Monitor(
            config,
            store=store,
            prober=Prober(concurrency=config.concurrency),
            repairs=RepairRunner(supervisor=supervisor, log_dir=log_path.parent),
            supervisor=supervisor,
            notifier=Notifier(config.notify),
        )
        holder.append(monitor)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        reason = {"why": "stopped"}

        def on_signal(name: str) -> None:
            reason["why"] = name
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        await monitor.start()
        log.info("monitoring %d services; event log %s", len(monitor.services), log_path)
        try:
            await asyncio.wait_for(stop.wait(), timeout=duration)
        except TimeoutError:
            reason["why"] = f"ran for {duration:g} s as asked"
        log.info("stopping: %s", reason["why"])
        await monitor.stop(reason["why"])
    finally:
        store.close()
    return 0


def _setup_logging(loaded: LoadedConfig) -> None:
    cfg = loaded.config.log
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if cfg.file:
        Path(cfg.file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(cfg.file, maxBytes=10 * 2**20, backupCount=5)
        )
    logging.basicConfig(
        level=cfg.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # One INFO line per probe request from httpx would drown what matters: every probe is
    # in the event log already.
    logging.getLogger("httpx").setLevel(logging.WARNING)
