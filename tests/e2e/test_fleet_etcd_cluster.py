"""A fleet on a three-member etcd cluster: a replica given every member's endpoint
(`etcd://h:p1,h:p2,h:p3/prefix`) survives the loss of the member it watches through — its watch
moves to another member and changes made through other replicas still reach it, its writes
go through, and it never fails an inference call."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from server.app import App
from server.fleet.store import EtcdStore
from tests.conftest import start_app
from tests.support.fleet import Etcd, EtcdCluster, etcd_cluster, eventually

__all__ = ["etcd_cluster"]  # the fixture, imported

TOKENS = {"alice": "tok-a"}
X = np.zeros((1, 4), dtype=np.float32)


def watchers(member: Etcd) -> int:
    """How many watches the member serves (etcd's own gauge, on its client port)."""
    if member.process is None:
        return 0
    with urllib.request.urlopen(f"http://{member.endpoint}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^etcd_debugging_mvcc_watcher_total (\d+)", text, flags=re.M)
    assert found is not None, "etcd no longer exports its watcher gauge"
    return int(found.group(1))


def replica(tmp: Path, url: str, name: str) -> App:
    return start_app(
        tmp / name, store=url, state_dir=tmp / name / "state", admin_tokens=TOKENS,
        leader_ttl_seconds=2,
    )  # fmt: skip


def reaches_etcd(app: App) -> bool:
    """Whether the replica's store (and its watch) last reached etcd."""
    assert isinstance(app.store, EtcdStore)
    return app.store.available


def admin(app: App) -> AdminClient:
    return AdminClient(open_channel(f"127.0.0.1:{app.port}"), "tok-a")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[App]]:
    apps: list[App] = []
    yield apps
    for app in apps:
        app.stop(0)


def test_a_replica_fails_over_when_the_member_it_watches_through_stops(
    tmp_path: Path, etcd_cluster: EtcdCluster, replicas: list[App]
) -> None:
    members = etcd_cluster.members
    b = replica(tmp_path, etcd_cluster.url("fleet"), "b")
    replicas.append(b)
    eventually(lambda: sum(map(watchers, members)) == 1, what="b watches through one member")
    (watched,) = (m for m in members if watchers(m) == 1)
    # A, given the members in the other order, watches through another one (or the same:
    # either way it keeps writing through the members that stay).
    a = replica(tmp_path, etcd_cluster.url("fleet", members[::-1]), "a")
    replicas.append(a)
    eventually(lambda: sum(map(watchers, members)) == 2, what="a watches too")

    watched.stop()
    survivors = [m for m in members if m is not watched]

    def start_through_a() -> bool:
        try:
            with admin(a) as via_a:
                via_a.start("classifier", "1", canary_ppm=50_000)
            return True
        except ClientError as exc:  # UNAVAILABLE while the cluster elects a new raft leader
            assert exc.code == "UNAVAILABLE", exc
            return False

    eventually(start_through_a, timeout=30, what="a write through a after the member stopped")
    started = a.rollouts.get("classifier")
    eventually(
        lambda: b.rollouts.get("classifier").revision == started.revision,
        timeout=15,
        what="a's change reached b through another member",
    )
    eventually(lambda: sum(map(watchers, survivors)) == 2, what="b's watch moved to a survivor")

    # b writes through the members that stay, and a follows.
    with admin(b) as via_b:
        changed = via_b.set_weight("classifier", 100_000).rollout
    eventually(
        lambda: a.rollouts.get("classifier").revision == changed.revision,
        what="b's change reached a",
    )
    assert b.dataplane.table.models["classifier"].rollout is not None
    with InferenceClient(f"127.0.0.1:{b.port}") as client:
        for i in range(50):
            assert client.infer("classifier", {"input": X}, routing_key=f"k{i}").version


def test_a_member_that_loses_its_leader_ends_the_watch_and_the_replica_catches_up_after(
    tmp_path: Path, etcd_cluster: EtcdCluster, replicas: list[App]
) -> None:
    members = etcd_cluster.members
    b = replica(tmp_path, etcd_cluster.url("fleet"), "b")
    replicas.append(b)
    eventually(lambda: sum(map(watchers, members)) == 1, what="b watches through one member")
    (watched,) = (m for m in members if watchers(m) == 1)
    others = [m for m in members if m is not watched]
    assert reaches_etcd(b)

    # The member b watches through stays up but loses its quorum, so its view stops
    # advancing: it must say so (etcd's require-leader watch) rather than go quiet.
    for member in others:
        member.stop()
    eventually(
        lambda: not reaches_etcd(b),
        timeout=20,
        what="b notices that its member has no leader",
    )
    with InferenceClient(f"127.0.0.1:{b.port}") as client:  # fail static: serving goes on
        assert client.infer("classifier", {"input": X}, routing_key="k").version

    for member in others:
        member.launch()
    for member in members:
        member.wait_ready()
    eventually(lambda: reaches_etcd(b), timeout=20, what="b's watch is back")

    def start_through_b() -> bool:
        try:
            with admin(b) as via_b:
                via_b.start("classifier", "1", canary_ppm=50_000)
            return True
        except ClientError as exc:
            assert exc.code == "UNAVAILABLE", exc
            return False

    eventually(start_through_b, timeout=30, what="a write through b once etcd has a quorum")
    assert b.rollouts.get("classifier").candidate == "1"
