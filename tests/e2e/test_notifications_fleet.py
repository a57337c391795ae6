"""Notifications in a fleet on a real etcd: each event reaches a receiver once, sent by the
replica that made the change, however many replicas take it from the store."""

from __future__ import annotations

from pathlib import Path

from benchmarks.receivers import WebhookReceiver
from client.admin import AdminClient
from client.channel import open_channel
from server.app import App
from tests.conftest import start_app
from tests.support.fleet import Etcd, etcd
from tests.support.waiting import WAIT, wait_for

__all__ = ["etcd"]  # the fixture, imported

TOKEN = "tok-a"


def replica(tmp: Path, etcd: Etcd, name: str, receiver: WebhookReceiver) -> App:
    return start_app(
        tmp / name,
        store=etcd.url("notify"),
        state_dir=tmp / name / "state",
        admin_tokens={"alice": TOKEN},
        leader_ttl_seconds=2,
        notifications={"webhooks": [{"url": receiver.url, "secret": "s"}]},
    )


def admin(app: App) -> AdminClient:
    return AdminClient(open_channel(f"127.0.0.1:{app.port}"), TOKEN)


def test_each_change_is_sent_once_by_the_replica_that_made_it(tmp_path: Path, etcd: Etcd) -> None:
    with WebhookReceiver() as receiver:
        apps: list[App] = []
        try:
            apps = [replica(tmp_path, etcd, f"r{i}", receiver) for i in range(2)]
            first, second = apps
            with admin(first) as a:
                a.start("classifier", "1", canary_ppm=10_000, reason="via r0")
            with admin(second) as b:
                wait_for(lambda: b.get("classifier").candidate_version == "1")
                b.set_weight("classifier", 20_000, reason="via r1")
            with admin(first) as a:
                wait_for(lambda: a.get("classifier").canary_weight_ppm == 20_000)
                a.kill_switch(reason="via r0")
            # Both replicas hold the last change, and neither has anything left to send.
            for app in apps:
                wait_for(lambda app=app: not app.rollouts.get("classifier").active)
                assert app.notifier.force_flush(WAIT)
        finally:
            for app in apps:
                app.stop(0)
    events = receiver.events()
    assert [(e["type"], e["reason"]) for e in events] == [
        ("rollout.started", "via r0"),
        ("rollout.stepped", "via r1"),
        ("rollout.kill_switch", "via r0"),
    ]
    assert len({e["id"] for e in events}) == 3
