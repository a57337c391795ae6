"""A fleet on one real etcd: replicas share rollout state, route every key alike, kill switch
and compare-and-set across replicas, fail static while etcd is gone, one promotion leader."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from server.app import App
from server.config import ConfigError
from server.errors import RevisionMismatch
from server.fleet.client import parse_store_url
from server.fleet.store import EtcdStore
from server.rollout.router import route
from server.rollout.state import Phase, initial_state
from server.rollout.store import AuditEntry
from tests.conftest import start_app
from tests.support.fleet import Etcd, etcd, eventually, leads

__all__ = ["etcd"]  # the fixture, imported

TOKENS = {"alice": "tok-a"}
X = np.zeros((1, 4), dtype=np.float32)
KEYS = [f"user-{i}" for i in range(10_000)]


def replica(tmp: Path, etcd: Etcd, name: str, prefix: str = "fleet") -> App:
    return start_app(
        tmp / name,
        store=etcd.url(prefix),
        state_dir=tmp / name / "state",
        admin_tokens=TOKENS,
        leader_ttl_seconds=2,
    )


@pytest.fixture
def fleet(tmp_path: Path, etcd: Etcd) -> Iterator[list[App]]:
    apps: list[App] = []
    try:
        for i in range(3):
            apps.append(replica(tmp_path, etcd, f"r{i}"))
        yield apps
    finally:
        for app in apps:
            app.stop(0)


def admin(app: App) -> AdminClient:
    return AdminClient(open_channel(f"127.0.0.1:{app.port}"), "tok-a")


def versions(app: App) -> list[str]:
    table = app.dataplane.table
    return [route(table, "classifier", key, {}, None).version for key in KEYS]


def converged(apps: list[App], revision: int) -> bool:
    return all(app.rollouts.get("classifier").revision == revision for app in apps)


# -- the store URL and the store itself ------------------------------------------------------


def test_a_server_that_cannot_reach_its_store_at_start_names_it(tmp_path: Path) -> None:
    from tests.support.fleet import free_port

    url = f"etcd://127.0.0.1:{free_port()}/x"
    with pytest.raises(ConfigError, match=f"state store {url} is unavailable"):
        start_app(tmp_path, store=url)


def test_etcd_store_commits_by_revision_and_pages_its_audit_log(etcd: Etcd) -> None:
    store = EtcdStore(parse_store_url(etcd.url("unit")))
    try:
        state = initial_state("m", "1", 1.0)
        row = AuditEntry(0, 1.0, "t", "m", "adopt", None, state.to_json(), "first")
        first = store.commit(state, None, row)
        with pytest.raises(RevisionMismatch):
            store.commit(state, None, row)  # exists already
        later = state.__class__(**{**state.__dict__, "revision": 2})
        with pytest.raises(RevisionMismatch, match="at revision 1, not 5"):
            store.commit(later, 5, row)
        second = store.commit(later, 1, row)
        other = store.append_audit(AuditEntry(0, 2.0, "t", "*", "note", None, None, "x"))
        assert first.id < second.id < other.id
        assert store.load() == {"m": later}
        assert [e.id for e in store.audit()] == [first.id, second.id, other.id]
        assert [e.id for e in store.audit("m")] == [first.id, second.id]
        assert [e.id for e in store.audit(limit=1)] == [other.id]  # the tail
        assert [e.id for e in store.audit(after_id=first.id, limit=1)] == [second.id]  # a page
    finally:
        store.close()


# -- one fleet -------------------------------------------------------------------------------


def test_every_replica_routes_every_key_the_same_way(fleet: list[App]) -> None:
    a, b, c = fleet
    with admin(a) as via_a, admin(b) as via_b:
        started = via_a.start("classifier", "1", canary_ppm=100_000).rollout
        eventually(lambda: converged(fleet, started.revision), what="start reached every replica")
        rollouts = [app.dataplane.table.models["classifier"].rollout for app in fleet]
        assert len({r.salt for r in rollouts if r is not None}) == 1
        before = versions(a)
        assert versions(b) == before and versions(c) == before
        assert 500 < before.count("1") < 1_500  # ~10 % on the candidate

        changed = via_b.set_weight("classifier", 400_000).rollout
        eventually(lambda: converged(fleet, changed.revision), what="weight reached every one")
        after = versions(c)
        assert versions(a) == after and versions(b) == after
        # Raising the weight only moves keys onto the candidate, the same keys everywhere.
        assert all(new == "1" for old, new in zip(before, after, strict=True) if old == "1")
        # The admin route RPC of each replica agrees too.
        for key in KEYS[:50]:
            answers = set()
            for app in fleet:
                with admin(app) as client:
                    answers.add(client.route("classifier", key).version)
            assert len(answers) == 1


def test_kill_switch_through_any_replica_rolls_back_everywhere(fleet: list[App]) -> None:
    a, _b, c = fleet
    with admin(a) as via_a, admin(c) as via_c:
        started = via_a.start("classifier", "1", canary_ppm=500_000).rollout
        eventually(lambda: converged(fleet, started.revision), what="start reached every replica")
        via_c.kill_switch(reason="fleet-wide stop")
        for app in fleet:
            eventually(
                lambda app=app: app.dataplane.table.models["classifier"].rollout is None,
                what="rolled back everywhere",
            )
            assert app.rollouts.get("classifier").phase is Phase.ROLLED_BACK
        operations = [e.operation for e in via_a.audit("classifier")]
        assert operations[-1] == "kill_switch"  # one audit log for the fleet


def test_of_concurrent_writers_on_two_replicas_exactly_one_wins(fleet: list[App]) -> None:
    a, b, _c = fleet
    with admin(a) as via_a, admin(b) as via_b:
        started = via_a.start("classifier", "1", canary_ppm=10_000).rollout
        eventually(lambda: converged(fleet, started.revision), what="start reached every replica")
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def write(client: AdminClient, ppm: int) -> None:
            barrier.wait()
            try:
                client.set_weight("classifier", ppm, expected_revision=started.revision)
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.code)

        threads = [
            threading.Thread(target=write, args=(via_a, 20_000)),
            threading.Thread(target=write, args=(via_b, 30_000)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["ABORTED", "ok"]


# -- fail static -----------------------------------------------------------------------------


def test_without_etcd_replicas_serve_on_and_refuse_writes_then_catch_up(
    tmp_path: Path, etcd: Etcd
) -> None:
    apps = [replica(tmp_path, etcd, "a"), replica(tmp_path, etcd, "b")]
    a, b = apps
    try:
        with admin(a) as via_a, admin(b) as via_b:
            started = via_a.start("classifier", "1", canary_ppm=300_000).rollout
            eventually(lambda: converged(apps, started.revision), what="start reached b")
            expected = versions(a)
            eventually(lambda: any(leads(app) for app in apps), what="a leader")

            etcd.stop()
            failed = 0
            for app in apps:
                with InferenceClient(f"127.0.0.1:{app.port}") as infer:
                    for key in KEYS[:200]:
                        try:
                            infer.infer("classifier", {"input": X}, routing_key=key)
                        except ClientError:
                            failed += 1
            assert failed == 0
            assert versions(a) == expected and versions(b) == expected  # the last snapshot
            with pytest.raises(ClientError) as info:
                via_b.set_weight("classifier", 400_000)
            assert info.value.code == "UNAVAILABLE"
            assert etcd.url("fleet") in info.value.details
            # The promotion controller holds: no replica believes it leads without etcd.
            eventually(lambda: not any(leads(app) for app in apps), what="step down")

            etcd.start()  # same ports, same data
            changed = via_a.set_weight("classifier", 400_000)
            revision = changed.rollout.revision
            eventually(lambda: converged(apps, revision), 15, "b catches up after the outage")
            assert versions(a) == versions(b)
            eventually(lambda: any(leads(app) for app in apps), 15, "a new leader")
    finally:
        for app in apps:
            app.stop(0)


# -- one promotion leader --------------------------------------------------------------------


def test_one_replica_leads_and_another_takes_over_when_it_dies(tmp_path: Path, etcd: Etcd) -> None:
    apps = [replica(tmp_path, etcd, "a"), replica(tmp_path, etcd, "b")]
    try:
        elections = [app.election for app in apps]
        assert all(e is not None for e in elections)

        def leaders() -> list[int]:
            return [i for i, e in enumerate(elections) if e is not None and e.is_leader()]

        eventually(lambda: len(leaders()) == 1, what="one leader")
        time.sleep(1.0)
        assert len(leaders()) == 1  # and only one, over several renewals
        leader = leaders()[0]
        follower = 1 - leader
        assert elections[follower].leader() == elections[leader].identity
        # The leader dies without a word (no lease revoke): its lease runs out.
        dead = elections[leader]
        assert dead is not None
        dead._stop.set()  # its renewals stop, as when the process is killed
        survivor = elections[follower]
        assert survivor is not None
        eventually(survivor.is_leader, 2 * 2 + 2, "the follower takes over within the lease")
    finally:
        for app in apps:
            app.stop(0)


POLICY = {
    "shadow_ppm": 0,
    "steps": [100_000, 500_000],
    "min_requests": 40,
    "min_duration_s": 0.3,
    "interval_s": 0.2,
    "failure_threshold": 2,
}


def test_only_the_leader_acts_while_every_replica_explains(tmp_path: Path, etcd: Etcd) -> None:
    apps = [
        start_app(
            tmp_path / name,
            store=etcd.url("fleet"),
            state_dir=tmp_path / name / "state",
            admin_tokens=TOKENS,
            promotion_tick_seconds=0.05,
        )
        for name in ("a", "b")
    ]
    try:
        eventually(lambda: sum(leads(app) for app in apps) == 1, what="one leader")
        follower = next(app for app in apps if not leads(app))
        with admin(follower) as via_follower:
            via_follower.start("classifier", "1", automatic=True, policy_json=json.dumps(POLICY))
            # No traffic: every replica decides "hold" and explains it ...
            for app in apps:
                with admin(app) as client:
                    eventually(lambda c=client: c.explain("classifier").evaluated, what="explained")
                    assert client.explain("classifier").action == "hold"
            time.sleep(1.0)  # several intervals
            # ... but only the leader acts: a hold is audited when its reason changes, once for
            # the fleet (two acting replicas would each audit every reason).
            holds = [
                e.reason for e in via_follower.audit("classifier") if e.operation == "auto_hold"
            ]
            assert holds and len(holds) == len(set(holds))
    finally:
        for app in apps:
            app.stop(0)
