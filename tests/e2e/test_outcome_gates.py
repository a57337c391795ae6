"""Outcome gates end to end: a real server runs an automatic rollout while a client serves
keyed requests with ids and reports a conversion for each by request id; a candidate that
converts far worse is rolled back and explained, an equal one is promoted."""

from __future__ import annotations

import json
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from client.admin import AdminClient
from client.inference import InferenceClient
from client.outcomes import OutcomesClient
from server.app import App
from tests.support.release import FAST_POLICY
from tests.support.servers import start_app
from tests.support.waiting import wait_for

TOKEN = "promo"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)
X = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
POLICY = {
    **FAST_POLICY,
    "steps": [200_000, 500_000],
    "outcomes": [{"name": "conversion", "max_drop": 0.25, "min_samples": 100}],
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    app = start_app(
        tmp_path,
        admin_tokens={"ops": TOKEN},
        promotion_tick_seconds=0.05,
        models={"classifier": {"stable": "1"}},
    )
    repo = app.config.models_dir / "classifier"
    shutil.copytree(repo / "1", repo / "3")  # an identical candidate: only outcomes differ
    with InferenceClient(f"127.0.0.1:{app.port}", metadata=OPERATOR) as c:
        c.load("classifier")
    yield app
    app.stop(0)


class Shop:
    """Keyed requests with ids in a thread; each is followed by a conversion, reported by
    request id, drawn at the rate of the version that served it."""

    def __init__(self, app: App, rates: dict[str, float]) -> None:
        self.target = f"127.0.0.1:{app.port}"
        self.rates = rates
        self.stop = threading.Event()
        self.reported: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        rng = random.Random(0)
        with InferenceClient(self.target) as c, OutcomesClient(self.target) as o:
            i = 0
            while not self.stop.is_set():
                r = c.infer("classifier", {"input": X}, routing_key=f"u{i}", request_id=f"o{i}")
                converted = rng.random() < self.rates[r.version]
                o.report("classifier", "conversion", converted, request_id=r.id)
                self.reported[r.version] = self.reported.get(r.version, 0) + 1
                i += 1

    def __enter__(self) -> Shop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run_rollout(app: App, rates: dict[str, float]) -> tuple[AdminClient, Shop]:
    admin = AdminClient(grpc.insecure_channel(f"127.0.0.1:{app.port}"), TOKEN)
    admin.start("classifier", "3", automatic=True, policy_json=json.dumps(POLICY))
    with Shop(app, rates) as shop:
        wait_for(
            lambda: not admin.get("classifier").candidate_version,
            120,
            message="the automatic rollout of classifier ended",
            poll=0.05,
        )
    return admin, shop


def test_a_candidate_that_converts_worse_is_rolled_back_and_explained(server: App) -> None:
    admin, shop = run_rollout(server, {"1": 0.6, "3": 0.05})
    with admin:
        final = admin.get("classifier")
        explained = admin.explain("classifier")
        rows = [e for e in admin.audit("classifier") if e.operation == "auto_rollback"]
    assert final.stable_version == "1" and final.last_candidate_version == "3"
    assert explained.action == "rollback" and "outcome:conversion failed" in explained.reason
    gate = next(c for c in explained.checks if c.name == "outcome:conversion")
    assert gate.status == "fail" and gate.observed > gate.threshold == 0.25
    evidence = json.loads(rows[0].extra_json)["evidence"]["outcomes"][0]
    assert evidence["name"] == "conversion" and evidence["candidate_n"] >= 100
    assert shop.reported["3"] >= 100


def test_an_equal_candidate_is_promoted(server: App) -> None:
    admin, _ = run_rollout(server, {"1": 0.6, "3": 0.6})
    with admin:
        final = admin.get("classifier")
        operations = [e.operation for e in admin.audit("classifier")]
    assert final.stable_version == "3"
    assert "auto_promote" in operations and "auto_rollback" not in operations
