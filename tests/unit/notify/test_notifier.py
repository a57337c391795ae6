"""The one event source: the rollout controller's audit rows, manual and automatic alike,
reach the receivers that want them, in order, with one log line each."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.notify.metrics import NotificationCollector
from server.notify.notifier import Notifier
from server.notify.settings import NotificationConfig, WebhookConfig
from server.rollout.state import Pause, Rollback, SetWeight, StartRollout
from server.testing import FakeClock
from tests.support.waiting import WAIT
from tests.unit.promotion.test_controller import POLICY, Rig


class Inbox:
    """A fake transport: every POST's event, by receiver URL."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, object]]] = {}

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        self.events.setdefault(url, []).append(json.loads(body))
        return 200

    def types(self, url: str) -> list[object]:
        return [e["type"] for e in self.events.get(url, [])]


@pytest.fixture
def wired() -> Iterator[tuple[Rig, Notifier, Inbox]]:
    inbox = Inbox()
    config = NotificationConfig(
        webhooks=(
            WebhookConfig("http://all"),
            WebhookConfig("http://pager", events=("rollout.rolled_back", "rollout.kill_switch")),
        )
    )
    notifier = Notifier(config, transport=inbox, clock=FakeClock(1.0))
    rig = Rig()
    rig.rollouts._on_audit = notifier.on_audit  # the composition root passes it at build time
    notifier.start()
    yield rig, notifier, inbox
    notifier.shutdown()
    rig.shadow.shutdown(WAIT)


def test_manual_changes_notify_in_commit_order_and_filters_apply(
    wired: tuple[Rig, Notifier, Inbox],
) -> None:
    rig, notifier, inbox = wired
    rig.rollouts.execute("m", StartRollout("2", canary_ppm=10_000), actor="alice", reason="try")
    rig.rollouts.execute("m", SetWeight(50_000), actor="alice", reason="more")
    rig.rollouts.execute("m", Pause(), actor="alice", reason="look")
    rig.rollouts.execute("m", Rollback(), actor="bob", reason="bad")
    rig.rollouts.execute("idle", StartRollout("2", canary_ppm=1), actor="c", reason="")
    rig.rollouts.kill_switch(actor="oncall", reason="stop everything")
    assert notifier.force_flush(WAIT)
    assert inbox.types("http://all") == [
        "rollout.started",
        "rollout.stepped",
        "rollout.paused",
        "rollout.rolled_back",
        "rollout.started",
        "rollout.kill_switch",
    ]
    assert inbox.types("http://pager") == ["rollout.rolled_back", "rollout.kill_switch"]
    rolled_back = inbox.events["http://pager"][0]
    assert (rolled_back["actor"], rolled_back["reason"], rolled_back["model"]) == (
        "bob",
        "bad",
        "m",
    )


def test_an_automatic_rollback_notifies_with_the_evidence_and_trace_ids(
    wired: tuple[Rig, Notifier, Inbox],
) -> None:
    rig, notifier, inbox = wired
    rig.start()
    rig.traffic(candidate=40, code="INTERNAL")
    rig.controller.evaluate_due()
    rig.clock.advance(POLICY.interval_s)
    rig.controller.evaluate_due()
    assert notifier.force_flush(WAIT)
    assert inbox.types("http://all") == ["rollout.started", "rollout.held", "rollout.rolled_back"]
    event = inbox.events["http://all"][-1]
    assert (event["severity"], event["actor"]) == ("critical", "promotion")
    details = event["details"]
    assert isinstance(details, dict)
    assert details["decision"]["evidence"]["candidate"]["errors"] == 40
    assert len(details["trace_ids"]) == 5
    assert str(details["trace_ids"][0]) in str(event["text"])


def test_every_event_is_one_log_line_with_its_fields(
    wired: tuple[Rig, Notifier, Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    rig, _, _ = wired
    with caplog.at_level(logging.INFO, logger="canaryserve.events"):
        rig.rollouts.execute("m", StartRollout("2", canary_ppm=10_000), actor="alice", reason="r")
        rig.rollouts.execute("m", Rollback(), actor="alice", reason="bad")
    records = [r for r in caplog.records if r.name == "canaryserve.events"]
    assert [(r.levelname, r.__dict__["event"]) for r in records] == [
        ("INFO", "rollout.started"),
        ("WARNING", "rollout.rolled_back"),
    ]
    assert records[1].__dict__["model"] == "m" and records[1].__dict__["version"] == "2"


def test_metrics_count_per_receiver() -> None:
    config = NotificationConfig(webhooks=(WebhookConfig("http://a", name="a"),), queue_size=1)
    notifier = Notifier(config, transport=Inbox())
    rig = Rig()
    rig.rollouts._on_audit = notifier.on_audit
    rig.rollouts.execute("m", StartRollout("2", canary_ppm=10_000), actor="x", reason="")
    rig.rollouts.execute("m", SetWeight(20_000), actor="x", reason="")  # no worker: one dropped
    families = {f.name: f for f in text_string_to_metric_families(_exposition(notifier))}
    dropped = families["canaryserve_notifications_dropped"].samples[0]
    assert (dropped.labels, dropped.value) == ({"receiver": "a"}, 1.0)
    assert families["canaryserve_notifications_queued"].samples[0].value == 1.0
    assert _exposition(Notifier(NotificationConfig())) == ""
    rig.shadow.shutdown(WAIT)


def _exposition(notifier: Notifier) -> str:
    registry = CollectorRegistry()
    registry.register(NotificationCollector(notifier))
    return generate_latest(registry).decode()
