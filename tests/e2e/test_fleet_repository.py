"""The fleet-wide model repository on a real etcd with real replicas: a version loaded or
unloaded through one replica is loaded or unloaded on every replica (each from its own model
directory); a rollout waits until its candidate is ready on every live replica, and a replica
without the candidate serves stable and says so."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from server.app import App
from server.rollout.router import route
from tests.support.fleet import Etcd, etcd, operator_cli
from tests.support.servers import start_app
from tests.support.waiting import wait_for

__all__ = ["etcd"]  # the fixture, imported

TOKEN = "tok-a"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)
X = np.zeros((1, 4), dtype=np.float32)


def replica(tmp: Path, etcd: Etcd, name: str, **overrides: object) -> App:
    return start_app(
        tmp / name,
        store=etcd.url("fleet"),
        state_dir=tmp / name / "state",
        admin_tokens={"alice": TOKEN},
        leader_ttl_seconds=2,
        models={"classifier": {"stable": "1"}},
        **overrides,
    )


@pytest.fixture
def fleet(tmp_path: Path, etcd: Etcd) -> Iterator[list[App]]:
    apps: list[App] = []
    try:
        for name in ("a", "b", "c"):
            apps.append(replica(tmp_path, etcd, name))
        yield apps
    finally:
        for app in apps:
            app.stop(0)


def admin(app: App) -> AdminClient:
    return AdminClient(open_channel(f"127.0.0.1:{app.port}"), TOKEN)


def put_version_on_disk(app: App, version: str = "3") -> None:
    """A copy of version 1 as `version` in this replica's own model directory (not loaded)."""
    models = app.config.models_dir / "classifier"
    shutil.copytree(models / "1", models / version)


def ready(app: App, version: str = "3") -> bool:
    return version in app.registry.ready_versions("classifier")


def status_text(app: App) -> str:
    """What `canaryserve status classifier` prints through `app`."""
    return operator_cli(f"127.0.0.1:{app.port}", TOKEN, "status", "classifier")


def followed(apps: list[App]) -> bool:
    """Every replica of `apps` has followed the fleet's current desired set of classifier."""
    fleets = [app.fleet for app in apps]
    assert all(fleets)
    revision = fleets[0].repository.desired("classifier")[0]  # type: ignore[union-attr]
    return all(f.repository.followed("classifier") == revision for f in fleets)  # type: ignore[union-attr]


def identity(app: App) -> str:
    assert app.fleet is not None
    return app.fleet.identity


def test_a_version_loaded_through_one_replica_becomes_ready_on_every_replica(
    fleet: list[App],
) -> None:
    a, b, c = fleet
    for app in fleet:
        put_version_on_disk(app)
    assert not any(ready(app) for app in fleet)  # on disk, not loaded: nobody serves it
    with admin(a) as via_a:
        via_a.load("classifier", "3", reason="fleet load")
    assert ready(a)
    wait_for(lambda: ready(b) and ready(c), message="version 3 ready on B and C")
    # status through any replica shows, per replica, that it is ready there.
    with admin(c) as via_c:
        wait_for(
            lambda: (
                sorted(r.replica for r in via_c.readiness("classifier") if "3" in r.ready_versions)
                == sorted(identity(app) for app in fleet)
            ),
            message="every replica publishes version 3 as ready",
        )
        via_c.unload("classifier", "3", reason="fleet unload")
    wait_for(lambda: not any(ready(app) for app in fleet), message="version 3 unloaded everywhere")
    assert all(ready(app, "1") and ready(app, "2") for app in fleet)


def test_a_whole_model_oip_unload_through_one_replica_unloads_it_on_every_replica(
    fleet: list[App],
) -> None:
    """Stable included, as a whole-model unload does locally (no rollout is active)."""
    a, b, c = fleet
    with InferenceClient(f"127.0.0.1:{c.port}", metadata=OPERATOR) as oip:
        oip.unload("classifier")
    assert not c.registry.ready_versions("classifier")
    wait_for(
        lambda: (
            not a.registry.ready_versions("classifier")
            and not b.registry.ready_versions("classifier")
        ),
        message="every version of classifier unloaded on A and B",
    )
    with InferenceClient(f"127.0.0.1:{a.port}", metadata=OPERATOR) as oip:
        oip.load("classifier")  # back through A: every replica follows again
    wait_for(
        lambda: all(ready(app, "1") and ready(app, "2") for app in fleet),
        message="classifier loaded again everywhere",
    )


def test_loads_of_two_versions_through_two_replicas_both_stay_desired(
    fleet: list[App],
) -> None:
    """Each call changes the desired set by what it loaded, never by the caller's whole
    ready set: version 4 (on B's disk only) is not taken off B by a load of 3 through A."""
    a, b, _ = fleet
    for app in fleet:
        put_version_on_disk(app, "3")
    put_version_on_disk(b, "4")
    with admin(b) as via_b:
        via_b.load("classifier", "4")
    with admin(a) as via_a:
        via_a.load("classifier", "3")
    wait_for(lambda: all(ready(app) for app in fleet), message="version 3 ready everywhere")
    # B has followed the load of 3 in full (A and C keep trying 4, not on their disks).
    wait_for(lambda: followed([b]), message="B follows the load of 3")
    assert ready(b, "4") and not ready(a, "4")


def test_concurrent_loads_through_two_replicas_both_survive(fleet: list[App]) -> None:
    for app in fleet:
        put_version_on_disk(app, "3")
        put_version_on_disk(app, "4")
    a, b, _ = fleet

    def load_through(app: App, version: str) -> None:
        with admin(app) as client:
            client.load("classifier", version)

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(load_through, a, "3"), pool.submit(load_through, b, "4")]
        for future in done:
            future.result()
    wait_for(
        lambda: all(ready(app, "3") and ready(app, "4") for app in fleet),
        message="versions 3 and 4 ready everywhere",
    )
    wait_for(lambda: followed(fleet), message="every replica follows both loads")
    assert all(ready(app, "3") and ready(app, "4") for app in fleet)


def test_a_version_polled_on_one_replica_survives_a_load_through_another(
    tmp_path: Path, etcd: Etcd, fleet: list[App]
) -> None:
    a = fleet[0]
    polling = replica(tmp_path, etcd, "polling", poll_models_seconds=0.2)
    try:
        put_version_on_disk(polling, "4")  # on its disk only: its poller loads it
        wait_for(lambda: ready(polling, "4"), message="version 4 polled")
        for app in [*fleet, polling]:
            put_version_on_disk(app, "3")
        with admin(a) as via_a:
            via_a.load("classifier", "3")
        wait_for(lambda: followed([a, polling]), message="the polling replica follows the load")
        assert ready(polling, "3") and ready(polling, "4")
    finally:
        polling.stop(0)


def test_a_rollout_to_a_version_missing_on_one_replica_is_refused_naming_it(
    fleet: list[App],
) -> None:
    a, b, c = fleet
    put_version_on_disk(a)
    put_version_on_disk(b)  # not on C's disk
    with admin(a) as via_a:
        via_a.load("classifier", "3")
        wait_for(
            lambda: sum("3" in r.ready_versions for r in via_a.readiness("classifier")) == 2,
            message="A and B publish version 3 as ready",
        )
        with pytest.raises(ClientError) as refused:
            via_a.start("classifier", "3", canary_ppm=100_000)
        assert refused.value.code == "FAILED_PRECONDITION"
        assert identity(c) in refused.value.details
        assert identity(a) not in refused.value.details
        assert identity(b) not in refused.value.details
        assert "1 replica" in refused.value.details
        status = {r.replica: list(r.ready_versions) for r in via_a.readiness("classifier")}
        assert "3" not in status[identity(c)] and "3" in status[identity(a)]
        # Once C has it too (its operator copies it there), the same call goes through.
        put_version_on_disk(c)
        with admin(c) as via_c:
            via_c.load("classifier", "3")
        wait_for(
            lambda: all("3" in r.ready_versions for r in via_a.readiness("classifier")),
            message="every replica publishes version 3",
        )
        started = via_a.start("classifier", "3", canary_ppm=100_000)
    assert started.rollout.candidate_version == "3"


def test_a_late_replica_without_the_candidate_serves_stable_and_blocks_steps_up(
    tmp_path: Path, etcd: Etcd, fleet: list[App]
) -> None:
    a = fleet[0]
    for app in fleet:
        put_version_on_disk(app)
    with admin(a) as via_a:
        via_a.load("classifier", "3")
        wait_for(
            lambda: all("3" in r.ready_versions for r in via_a.readiness("classifier")),
            message="every replica publishes version 3",
        )
        via_a.start("classifier", "3", canary_ppm=500_000)
        late = replica(tmp_path, etcd, "late")  # joins now; version 3 is not on its disk
        try:
            wait_for(lambda: late.rollouts.get("classifier").candidate == "3", message="synced")
            keys = [f"user-{i}" for i in range(200)]
            table = a.dataplane.table
            to_candidate = [
                k for k in keys if route(table, "classifier", k, {}, None).version == "3"
            ]
            assert to_candidate  # half of them, on the replicas that have it
            with InferenceClient(f"127.0.0.1:{late.port}") as c:
                for key in to_candidate[:20]:
                    result = c.infer("classifier", {"input": X}, routing_key=key)
                    assert (result.version, result.reason) == ("1", "candidate_not_ready")
            assert late.telemetry.windows.summary("classifier", "3", 600).requests == 0
            # No step up while it lacks the candidate; a step down is always allowed.
            with pytest.raises(ClientError) as refused:
                via_a.set_weight("classifier", 900_000)
            assert refused.value.code == "FAILED_PRECONDITION"
            assert identity(late) in refused.value.details
            with pytest.raises(ClientError):
                via_a.transition("promote", "classifier")
            assert via_a.set_weight("classifier", 100_000).rollout.canary_weight_ppm == 100_000
            lines = {r.replica: r.candidate_ready for r in via_a.readiness("classifier")}
            assert lines[identity(late)] is False and lines[identity(a)] is True
            shown = status_text(a)
            assert f"replica {identity(late)}: ready 1, 2  (candidate NOT ready" in shown
            assert f"replica {identity(a)}: ready 1, 2, 3\n" in shown + "\n"
        finally:
            late.stop(0)
        # Once it is gone (its lease revoked), the fleet may step up again.
        wait_for(
            lambda: identity(late) not in {r.replica for r in via_a.readiness("classifier")},
            message="the late replica's readiness vanishes with its lease",
        )
        assert via_a.set_weight("classifier", 900_000).rollout.canary_weight_ppm == 900_000


def test_a_drill_in_a_fleet_is_refused_and_leaves_nothing_behind(fleet: list[App]) -> None:
    a, b, c = fleet
    with admin(a) as via_a:
        with pytest.raises(ClientError) as refused:
            via_a.start_drill("classifier", error_ppm=50_000)
        rollout = via_a.get("classifier")
    assert refused.value.code == "FAILED_PRECONDITION"
    assert identity(b) in refused.value.details and identity(c) in refused.value.details
    assert not rollout.candidate_version
    assert a.registry.ready_versions("classifier") == frozenset({"1", "2"})  # the copy is gone
