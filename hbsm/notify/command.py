"""`hbsm notify --test`: one test notice through every configured channel, one line for each.

Without --test, the channels are listed (masked as `hbsm config` shows them) and nothing is sent.
The test notice goes out as a real one would (webhook retries included) but is written to no
event log: a running monitor holds the log, and a test is no incident.

Exit codes: 0 every channel delivered, 1 a channel failed, 2 bad configuration or no channel
configured (nothing would reach anyone: a setup to fix, like a bad config).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

from hbsm.config.env import CONFIG_VAR
from hbsm.config.errors import ConfigError
from hbsm.config.load import DEFAULT_FILE, load_config
from hbsm.config.model import NotifyConfig
from hbsm.config.secrets import apprise_url_shown
from hbsm.events import Notification
from hbsm.notify.notice import Notice, iso_utc

__all__ = ["EXIT_BAD_CONFIG", "EXIT_FAILED", "add_parser", "channels", "run", "test_notice"]

EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "notify",
        help="list the notification channels, or send a test notice through each (--test)",
        description=(
            "List the notification channels of [notify] (webhooks, SMTP, Apprise URLs), or with "
            "--test send one test notice through each and print one line per channel: ok, or "
            "FAIL and why."
        ),
        epilog=(
            f"The file: --config, else ${CONFIG_VAR}, else ./{DEFAULT_FILE} if it exists. Exit "
            "codes: 0 every channel worked, 1 a channel failed, 2 bad configuration or no "
            "channel configured."
        ),
    )
    parser.add_argument("--test", action="store_true",
                        help="send a test notice through every channel")  # fmt: skip
    parser.add_argument("-c", "--config", dest="config_file", metavar="FILE",
                        help=f"the TOML file (default: ${CONFIG_VAR}, else "
                        f"./{DEFAULT_FILE})")  # fmt: skip
    parser.set_defaults(handler=run)
    return parser


def channels(config: NotifyConfig) -> list[tuple[str, str]]:
    """(config key, channel name) of every channel, in the order `Notifier.send` reports them."""
    # The channels' modules (httpx, smtplib) only for the channels there are: `hbsm --help`
    # imports this module.
    found: list[tuple[str, str]] = []
    if config.webhooks:
        from hbsm.notify.webhook import webhook_channel

        found += [
            (f"notify.webhooks[{i}]", webhook_channel(hook.url))
            for i, hook in enumerate(config.webhooks)
        ]
    if config.smtp is not None:
        from hbsm.notify.smtp import smtp_channel

        found.append(("notify.smtp", smtp_channel(config.smtp)))
    found += [
        (f"notify.apprise[{i}]", f"apprise:{apprise_url_shown(url)}")
        for i, url in enumerate(config.apprise)
    ]
    return found


def test_notice(now: float) -> Notice:
    """The notice `--test` sends: the monitor's own (no service), kind "test", level info."""
    host = socket.gethostname()
    return Notice(
        service="",
        kind="test",
        incident=f"test@{iso_utc(now)}",
        level="info",
        message=f"hbsm test notice from {host}: notifications reach this channel",
        ts=now,
        details={"host": host},
    )


def run(args: argparse.Namespace, *, env: Mapping[str, str] | None = None) -> int:
    environ = os.environ if env is None else env
    try:
        loaded = load_config(getattr(args, "config_file", None), environ)
    except ConfigError as exc:
        print(f"hbsm notify: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    config = loaded.config.notify
    listed = channels(config)
    if not listed:
        where = loaded.path or "no configuration file"
        print(
            f"hbsm notify: no notification channel configured in {where} "
            "(set notify.webhooks, notify.smtp or notify.apprise)",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    if not args.test:
        for key, channel in listed:
            print(f"{key}  {channel}")
        return 0
    results = asyncio.run(_send_test(config))
    failed = 0
    for (key, _), event in zip(listed, results, strict=True):
        if event.delivered:
            note = f" ({event.error})" if event.error else ""  # mail refused for some recipients
            print(f"ok    {key}  {event.channel}{note}")
        else:
            failed += 1
            print(f"FAIL  {key}  {event.channel}: {event.error or 'not delivered'}")
    worked = len(results) - failed
    print(f"{worked} of {len(results)} channel{'' if len(results) == 1 else 's'} worked")
    return EXIT_FAILED if failed else 0


async def _send_test(config: NotifyConfig) -> list[Notification]:
    from hbsm.notify.notifier import Notifier

    notifier = Notifier(config)
    try:
        return await notifier.send(test_notice(time.time()))
    finally:
        await notifier.aclose()
