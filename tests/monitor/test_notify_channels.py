"""A real monitor notifying through every kind of channel at once (a webhook and Apprise URLs to
local receivers): the once-per-incident rule holds on each, and a channel that fails is
recorded as a failed `notification` event without holding back the others."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from notify.servers import WebhookReceiver
from support.configs import make_config, service
from support.waiting import wait_for

from hbsm.config import Config, NotifyConfig
from hbsm.events import Event, Notification, OpaqueEvent, RepairFinished

from .conftest import Harness
from .support import SwitchableTarget, of

pytest.importorskip("apprise")

StartMonitor = Callable[[Config], Awaitable[Harness]]


async def test_one_incident_is_told_once_on_every_channel(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    good, bad = WebhookReceiver().start(), WebhookReceiver().start()
    bad.status = 500
    try:
        notify = msgspec.convert(
            {
                "webhooks": [{"url": good.url("/hook"), "retries": 0}],
                "apprise": [
                    f"json://127.0.0.1:{good.port}/json/s3cr3t",
                    f"form://127.0.0.1:{good.port}/form/s3cr3t",
                    f"json://127.0.0.1:{bad.port}/down/s3cr3t",
                ],
            },
            NotifyConfig,
        )
        # A repair whose command always fails: every run fails again within one incident.
        web = service(
            "web",
            target.svc_url("web"),
            ladder=["diagnose", "command"],
            steps={"command": {"argv": ["false"]}},
        )
        config = make_config(tmp_path / "events" / "heartbeat.jsonl", [web], notify=notify)
        h = await start_monitor(config)
        await h.wait_state("web", "healthy")
        target.modes["web"] = "/status/500"

        def failed_runs(history: list[Event | OpaqueEvent]) -> set[int]:
            return {e.run for e in of(history, RepairFinished, "web") if not e.ok}

        await wait_for(lambda: len(failed_runs(h.history())) >= 3, "three failed repair runs")
        target.modes.clear()
        await h.wait_state("web", "healthy")
        await wait_for(
            lambda: (
                sum(
                    e.message.startswith("web recovered")
                    for e in of(h.history(), Notification, "web")
                )
                == 4
            ),
            "the recovery's outcome on all four channels",
        )
        history = await h.stop()
    finally:
        good.stop()
        bad.stop()

    sent = of(history, Notification, "web")
    channels = Counter(e.channel for e in sent)
    port, down = good.port, bad.port
    # Two notices (the first failed repair step, the recovery), each once on every channel,
    # however many repair runs failed in between.
    assert channels == {
        f"webhook:http://127.0.0.1:{port}": 2,
        f"apprise:json://127.0.0.1:{port}/***": 2,
        f"apprise:form://127.0.0.1:{port}/***": 2,
        f"apprise:json://127.0.0.1:{down}/***": 2,
    }
    kinds = [e.message.split(" ")[1] for e in sent if e.channel.startswith("webhook:")]
    assert kinds == ["repair", "recovered"]  # "web: repair step ..." / "web recovered after ..."
    assert len(failed_runs(history)) >= 3
    # What each receiver got: the same two notices per path.
    assert Counter(r.path for r in good.requests) == {
        "/hook": 2,
        "/json/s3cr3t": 2,
        "/form/s3cr3t": 2,
    }
    assert [r.path for r in bad.requests] == ["/down/s3cr3t"] * 2
    # The channel that failed is recorded, with why, once per notice; the others delivered.
    for event in sent:
        if event.channel.endswith(f"{down}/***"):
            assert not event.delivered and "500" in event.error
        else:
            assert event.delivered, event
        assert "s3cr3t" not in event.error + event.channel
    # Nor anywhere in the log: the config recorded in monitor.started shows the URLs masked.
    assert "s3cr3t" not in h.path.read_text()
    assert f"json://127.0.0.1:{down}/***" in h.path.read_text()
