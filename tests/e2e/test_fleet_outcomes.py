"""Business outcomes across a fleet: three real replicas on one real etcd each publish their
outcome windows under their leases; the leader's outcome gate decides on every replica's
reports, `ab` through any replica shows the merged counts, and a report by request id that
reaches a replica which did not serve the request joins by its fallback routing key."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from client.outcomes import Outcome, OutcomesClient
from server.app import App
from server.rollout.router import route
from tests.support.fleet import Etcd, etcd, leads, operator_cli
from tests.support.release import FAST
from tests.support.servers import start_app
from tests.support.waiting import wait_for

__all__ = ["etcd"]  # the fixture, imported

TOKEN = "tok-a"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)
X = np.zeros((1, 4), dtype=np.float32)
MIN_SAMPLES = 2000
POLICY = {
    **FAST,
    "steps": [500_000],
    "outcomes": [{"name": "conversion", "max_drop": 0.01, "min_samples": MIN_SAMPLES}],
}
#: Conversion rates: the candidate converts 20 % worse than stable (40 % against 50 %).
RATES = {"1": 0.5, "3": 0.4}


@pytest.fixture
def fleet(tmp_path: Path, etcd: Etcd) -> Iterator[list[App]]:
    apps: list[App] = []
    try:
        for i in range(3):
            app = start_app(
                tmp_path / f"r{i}",
                store=etcd.url("fleet"),
                state_dir=tmp_path / f"r{i}" / "state",
                admin_tokens={"alice": TOKEN},
                leader_ttl_seconds=2,
                promotion_tick_seconds=0.05,
                models={"classifier": {"stable": "1"}},
            )
            apps.append(app)
            repo = app.config.models_dir / "classifier"
            shutil.copytree(repo / "1", repo / "3")  # an identical model: only outcomes differ
        wait_for(lambda: sum(leads(a) for a in apps) == 1, message="one leader")
        with InferenceClient(f"127.0.0.1:{apps[0].port}", metadata=OPERATOR) as c:
            c.load("classifier")
        member = apps[0].fleet
        assert member is not None
        wait_for(
            lambda: all("3" in m["classifier"] for m in member.repository.readiness().values()),
            message="every replica publishes version 3 as ready",
        )
        yield apps
    finally:
        for app in apps:
            app.stop(0)


def target(app: App) -> str:
    return f"127.0.0.1:{app.port}"


def cross_replica_reports(fleet: list[App]) -> int:
    """Requests with ids served by each replica, their outcomes reported to the next one:
    by request id alone NOT_FOUND there, with the routing key as fallback joined to the
    version that served them. Returns how many were counted."""
    counted = 0
    for i, app in enumerate(fleet):
        other = fleet[(i + 1) % 3]
        with InferenceClient(target(app)) as c, OutcomesClient(target(other)) as o:
            for n in range(20):
                key, rid = f"x{i}-{n}", f"req-{i}-{n}"
                served = c.infer("classifier", {"input": X}, routing_key=key, request_id=rid)
                if n == 0:
                    with pytest.raises(ClientError) as unknown:
                        o.report("classifier", "conversion", True, request_id=rid)
                    assert unknown.value.code == "NOT_FOUND"
                    assert "fallback_routing_key" in unknown.value.details
                a = o.report("classifier", "conversion", True, request_id=rid, routing_key=key)
                assert (a.version, a.joined_by, a.gates) == (served.version, "routing_key", True)
                counted += 1
    return counted


def test_the_leaders_outcome_gate_rolls_back_on_every_replicas_reports(
    fleet: list[App],
) -> None:
    leader = next(app for app in fleet if leads(app))
    follower = next(app for app in fleet if not leads(app))
    with AdminClient(open_channel(target(follower)), TOKEN) as admin:
        admin.start("classifier", "3", automatic=True, policy_json=json.dumps(POLICY))
        wait_for(
            lambda: all(a.rollouts.get("classifier").candidate == "3" for a in fleet),
            message="every replica routes the rollout",
        )
        wait_for(
            lambda: len(leader.outcome_view.replicas("classifier")) == 3,
            message="three replicas publish their outcome windows",
        )
        sent = cross_replica_reports(fleet)
        # Seeded conversions by routing key, reported round-robin to the three replicas
        # (as a load balancer spreads them), in batches.
        table = fleet[0].dataplane.table
        rng = random.Random(20261130)
        batches: list[list[Outcome]] = [[], [], []]
        for i in range(6000):
            key = f"user-{i}"
            version = route(table, "classifier", key, {}, None).version
            converted = rng.random() < RATES[version]
            batches[i % 3].append(Outcome("classifier", "conversion", converted, routing_key=key))
        for start in range(0, 2000, 250):
            for app, batch in zip(fleet, batches, strict=True):
                with OutcomesClient(target(app)) as o:
                    assert o.report_many(batch[start : start + 250]).accepted == 250
        sent += 6000
        wait_for(
            lambda: not admin.get("classifier").candidate_version,
            60.0,
            message="the candidate that converts worse is rolled back",
            poll=0.05,
        )
        rollbacks = [e for e in admin.audit("classifier") if e.operation == "auto_rollback"]
    assert len(rollbacks) == 1 and rollbacks[0].actor == "promotion"
    acted = [app for app in fleet if app.promotion.counts[("classifier", "rollback")]]
    assert acted == [leader]
    evidence = json.loads(rollbacks[0].extra_json)["evidence"]
    (gate,) = evidence["outcomes"]
    assert gate["replicas"] == 3
    # No replica alone had enough reports of the candidate for the gate to judge.
    local = [
        app.outcomes.windows.series("classifier", "3", "conversion", 3600).randomized.n
        for app in fleet
    ]
    assert max(local) < MIN_SAMPLES <= gate["candidate_n"]
    assert gate["candidate_total"] / gate["candidate_n"] < gate["stable_total"] / gate["stable_n"]

    # `ab` through any replica shows every replica's reports.
    def merged_counts(app: App) -> int:
        with OutcomesClient(target(app)) as o:
            answer = o.compare("classifier")
        assert len(answer.replicas) == 3
        return sum(v.reported for c in answer.outcomes for v in c.versions)

    for app in fleet:
        wait_for(lambda app=app: merged_counts(app) == sent, message="ab shows merged counts")
    local_sum = sum(
        app.outcomes.windows.series("classifier", v, "conversion", 86_400).reported
        for app in fleet
        for v in ("1", "3")
    )
    assert local_sum == sent
    shown = operator_cli(target(fleet[2]), TOKEN, "ab", "classifier")
    assert "reports merged from 3 replicas" in shown
