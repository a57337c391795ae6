"""Promotion on the fleet's telemetry: three real replicas on one real etcd publish their
windows under their leases; the leader decides on the merged windows of every live replica."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.inference import InferenceClient
from models.build import build_classifier_faulty
from server.app import App
from server.rollout.router import route
from tests.support.fleet import Etcd, etcd, leads, operator_cli
from tests.support.release import FAST, Load, faulty_rows
from tests.support.servers import start_app
from tests.support.waiting import wait_for

__all__ = ["etcd"]  # the fixture, imported

TOKEN = "tok-a"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)


def replica(tmp: Path, etcd: Etcd, name: str) -> App:
    # Every stable call traced (not the default sample), so a few dozen calls per replica
    # give the latency gate its stable samples.
    return start_app(
        tmp / name,
        store=etcd.url("fleet"),
        state_dir=tmp / name / "state",
        admin_tokens={"alice": TOKEN},
        leader_ttl_seconds=2,
        promotion_tick_seconds=0.05,
        stable_trace_ratio=1.0,
        models={"classifier": {"stable": "1"}},
    )


@pytest.fixture
def fleet(tmp_path: Path, etcd: Etcd) -> Iterator[list[App]]:
    apps: list[App] = []
    try:
        for i in range(3):
            apps.append(replica(tmp_path, etcd, f"r{i}"))
        wait_for(lambda: sum(leads(a) for a in apps) == 1, message="one leader")
        yield apps
    finally:
        for app in apps:
            app.stop(0)


def admin(app: App) -> AdminClient:
    return AdminClient(open_channel(f"127.0.0.1:{app.port}"), TOKEN)


def fleet_heard(client: AdminClient) -> None:
    """Wait until the rollout's evidence merges all three replicas' publications (each
    publishes within a second of seeing the rollout)."""
    wait_for(
        lambda: len(client.explain("classifier").replicas) == 3,
        message="three replicas publish their windows",
        poll=0.05,
    )


def add_version(fleet: list[App], faulty: bool) -> None:
    """Version 3 of the classifier in every replica's own model directory, loaded through
    the first replica (the fleet repository loads it on the others)."""
    for app in fleet:
        target = app.config.models_dir / "classifier" / "3"
        if faulty:
            build_classifier_faulty(target / "model.onnx")
        else:
            shutil.copytree(app.config.models_dir / "classifier" / "1", target)
    with InferenceClient(f"127.0.0.1:{fleet[0].port}", metadata=OPERATOR) as c:
        c.load("classifier")
    member = fleet[0].fleet
    assert member is not None
    wait_for(
        lambda: all("3" in m["classifier"] for m in member.repository.readiness().values()),
        message="every replica publishes version 3 as ready",
    )


def test_a_faulty_candidate_is_rolled_back_once_by_the_leader_on_merged_evidence(
    fleet: list[App],
) -> None:
    add_version(fleet, faulty=True)
    follower = next(app for app in fleet if not leads(app))
    policy = {**FAST, "max_error_rate_increase": 0.01}
    with admin(follower) as client:
        client.start("classifier", "3", automatic=True, policy_json=json.dumps(policy))
        fleet_heard(client)
        # Each replica sees a third of the traffic (one client each, as a load balancer would).
        loads = [Load(app, rows=faulty_rows) for app in fleet]
        for load in loads:
            load.__enter__()
        try:
            wait_for(
                lambda: not client.get("classifier").candidate_version,
                60.0,
                message="the faulty candidate is rolled back",
                poll=0.05,
            )
        finally:
            for load in loads:
                load.__exit__()
        rollbacks = [e for e in client.audit("classifier") if e.operation == "auto_rollback"]
        explained = client.explain("classifier")
    assert len(rollbacks) == 1 and rollbacks[0].actor == "promotion"
    # Only the leader acted: it alone counted the rollback among its own actions.
    acted = [app for app in fleet if app.promotion.counts[("classifier", "rollback")]]
    assert len(acted) == 1 and leads(acted[0])
    evidence = json.loads(rollbacks[0].extra_json)["evidence"]
    identities = sorted(app.election.identity for app in fleet if app.election is not None)
    assert evidence["replicas"] == identities
    assert explained.evaluated and sorted(explained.replicas) == identities
    # Every replica's own calls are in the merged windows the decision was made on.
    assert all(load.by_version.get("3", 0) > 0 for load in loads)
    shown = operator_cli(f"127.0.0.1:{follower.port}", TOKEN, "rollout", "explain", "classifier")
    assert f"evidence merged from 3 replicas: {', '.join(identities)}" in shown


def test_no_replica_alone_has_enough_calls_but_the_merged_windows_do(fleet: list[App]) -> None:
    add_version(fleet, faulty=False)
    policy = {**FAST, "steps": [500_000], "min_requests": 60, "min_latency_samples": 10}
    with admin(fleet[0]) as client:
        client.start("classifier", "3", automatic=True, policy_json=json.dumps(policy))
        wait_for(
            lambda: all(a.rollouts.get("classifier").candidate == "3" for a in fleet),
            message="every replica routes the rollout",
        )
        fleet_heard(client)
        table = fleet[0].dataplane.table
        keys = [f"user-{i}" for i in range(400)]
        on_candidate = [k for k in keys if route(table, "classifier", k, {}, None).version == "3"]
        on_stable = [k for k in keys if k not in on_candidate]
        x = np.zeros((1, 4), dtype=np.float32)
        # 25 candidate calls (and 25 stable ones) per replica: 75 in the fleet, 60 needed.
        for i, app in enumerate(fleet):
            with InferenceClient(f"127.0.0.1:{app.port}") as c:
                for key in on_candidate[25 * i : 25 * (i + 1)] + on_stable[25 * i : 25 * (i + 1)]:
                    c.infer("classifier", {"input": x}, routing_key=key)
        for app in fleet:
            local = app.telemetry.windows.summary("classifier", "3", window_s=600)
            assert local.requests == 25 < policy["min_requests"]
        wait_for(
            lambda: client.get("classifier").stable_version == "3",
            30.0,
            message="the candidate is promoted on the fleet's calls",
            poll=0.05,
        )
        promoted = next(e for e in client.audit("classifier") if e.operation == "auto_promote")
    evidence = json.loads(promoted.extra_json)["evidence"]
    assert evidence["candidate"]["requests"] == 75
    assert len(evidence["replicas"]) == 3


def test_the_shadow_report_sums_every_replicas_counters(fleet: list[App]) -> None:
    add_version(fleet, faulty=False)
    with admin(fleet[1]) as client:
        client.start("classifier", "3", shadow_ppm=1_000_000, no_guard=True)
        member = fleet[1].fleet
        assert member is not None
        wait_for(
            lambda: len(member.telemetry.replicas("classifier")) == 3,
            message="three replicas publish",
        )
        x = np.zeros((1, 4), dtype=np.float32)
        for i, app in enumerate(fleet):
            with InferenceClient(f"127.0.0.1:{app.port}") as c:
                for n in range(10 * (i + 1)):  # 10, 20 and 30 calls: unequal shares
                    c.infer("classifier", {"input": x}, routing_key=f"r{i}-{n}")

        def local(name: str) -> int:
            stats = [app.shadow.stats("classifier", "3") for app in fleet]
            return sum(getattr(s, name) for s in stats if s is not None)

        # Each replica samples every call it serves (shadow at 100 %); the report through
        # replica 1 sums all three, once their publications (every second) caught up.
        wait_for(
            lambda: (
                (r := client.shadow_report("classifier")).sampled == 60 == local("sampled")
                and r.completed == local("completed")
            ),
            message="the fleet's shadow counts",
            poll=0.1,
        )
        report = client.shadow_report("classifier")
        shown = operator_cli(f"127.0.0.1:{fleet[1].port}", TOKEN, "shadow", "classifier")
    identities = sorted(app.election.identity for app in fleet if app.election is not None)
    assert sorted(report.replicas) == identities
    assert json.loads(report.report_json)["fleet"]["replicas"] == identities
    assert "counts summed over 3 replicas" in shown
