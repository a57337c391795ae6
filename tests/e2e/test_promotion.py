"""Automatic rollouts end to end: a good candidate is promoted, a faulty one rolled back."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client.admin import AdminClient
from client.inference import InferenceClient
from models.build import build_classifier_faulty
from server.app import App
from tests.support.release import FAST_POLICY, Load, faulty_rows
from tests.support.servers import start_app
from tests.support.waiting import wait_for

TOKEN = "promo"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)  # loading needs the admin token
POLICY = FAST_POLICY


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    app = start_app(
        tmp_path,
        admin_tokens={"ops": TOKEN},
        promotion_tick_seconds=0.05,
        models={"classifier": {"stable": "1"}},
    )
    yield app
    app.stop(0)


def _wait_idle(admin: AdminClient, timeout: float = 60.0) -> None:
    """Wait until the controller has promoted or rolled back the candidate."""
    wait_for(
        lambda: not admin.get("classifier").candidate_version,
        timeout,
        message="the automatic rollout of classifier ended",
        poll=0.05,
    )


def _add_candidate(app: App, model: str, version: str = "1") -> None:
    """Version 3 (2 for the counter) of `model`: a copy of `version`, loaded."""
    repo = app.config.models_dir / model
    new = "3" if model == "classifier" else "2"
    shutil.copytree(repo / version, repo / new)
    with InferenceClient(f"127.0.0.1:{app.port}", metadata=OPERATOR) as c:
        c.load(model)


def test_identical_candidate_is_promoted_by_itself(server: App) -> None:
    _add_candidate(server, "classifier")
    with AdminClient(grpc.insecure_channel(f"127.0.0.1:{server.port}"), TOKEN) as admin:
        start = admin.start("classifier", "3", automatic=True, policy_json=json.dumps(POLICY))
        assert start.rollout.automatic and start.rollout.canary_weight_ppm == 100_000
        with Load(server) as load:
            _wait_idle(admin)
        final = admin.get("classifier")
        operations = [e.operation for e in admin.audit("classifier")]
    assert final.stable_version == "3"
    assert "auto_promote" in operations and "auto_rollback" not in operations
    assert operations.count("auto_advance") >= 1
    assert load.failed == 0


def test_faulty_candidate_is_rolled_back_and_explained(server: App) -> None:
    build_classifier_faulty(server.config.models_dir / "classifier" / "3" / "model.onnx")
    with InferenceClient(f"127.0.0.1:{server.port}", metadata=OPERATOR) as c:
        c.load("classifier")
    with AdminClient(grpc.insecure_channel(f"127.0.0.1:{server.port}"), TOKEN) as admin:
        strict = {**POLICY, "max_error_rate_increase": 0.01}
        admin.start("classifier", "3", automatic=True, policy_json=json.dumps(strict))
        with Load(server, rows=faulty_rows):
            _wait_idle(admin)
        final = admin.get("classifier")
        explained = admin.explain("classifier")
        rollback = [e for e in admin.audit("classifier") if e.operation == "auto_rollback"]
    assert final.stable_version == "1" and final.last_candidate_version == "3"
    assert explained.evaluated and explained.action == "rollback"
    gate = next(c for c in explained.checks if c.name == "error_rate")
    assert gate.status == "fail" and gate.observed > gate.threshold
    evidence = json.loads(rollback[0].extra_json)
    assert evidence["evidence"]["candidate"]["error_trace_ids"], "example trace ids recorded"


def test_no_traffic_holds_and_says_why(server: App) -> None:
    _add_candidate(server, "classifier")
    with AdminClient(grpc.insecure_channel(f"127.0.0.1:{server.port}"), TOKEN) as admin:
        admin.start("classifier", "3", automatic=True, policy_json=json.dumps(POLICY))
        # Several evaluations, past min_duration_s: only the missing traffic holds it.
        wait_for(
            lambda: server.promotion.counts[("classifier", "hold")] >= 4,
            message="four evaluations of classifier's rollout",
        )
        explained = admin.explain("classifier")
        rollout = admin.get("classifier")
    assert rollout.candidate_version == "3" and rollout.canary_weight_ppm == 100_000
    assert explained.action == "hold"
    assert "0 of 40" in explained.reason or "not enough" in explained.reason


def test_paused_rollout_is_left_alone(server: App) -> None:
    """While paused, a rollout with all the evidence it needs is not evaluated, tick after tick."""
    _add_candidate(server, "classifier")
    _add_candidate(server, "counter")  # an unpaused witness: its evaluations mark the ticks
    counts = server.promotion.counts
    with AdminClient(grpc.insecure_channel(f"127.0.0.1:{server.port}"), TOKEN) as admin:
        admin.start("classifier", "3", automatic=True, policy_json=json.dumps(POLICY))
        admin.transition("pause", "classifier")
        admin.start("counter", "2", automatic=True, policy_json=json.dumps(POLICY))
        # A tick may have evaluated classifier between start and pause (a busy machine); once a
        # tick has evaluated the witness, that one is over: count from there.
        wait_for(lambda: counts[("counter", "hold")] >= 1, message="a tick after the pause")
        before = {key: n for key, n in counts.items() if key[0] == "classifier"}
        with Load(server):
            wait_for(
                lambda: (
                    server.telemetry.windows.summary("classifier", "3", window_s=600).requests
                    >= 2 * POLICY["min_requests"]
                ),
                message="twice min_requests candidate calls",
            )
            witnessed = counts[("counter", "hold")]
            # Past min_duration_s with that traffic, and three ticks that evaluated the witness.
            wait_for(
                lambda: counts[("counter", "hold")] >= witnessed + 3,
                message="three more evaluations of the witness",
            )
        rollout = admin.get("classifier")
    assert rollout.candidate_version == "3" and rollout.canary_weight_ppm == 100_000
    # Never evaluated while paused.
    assert {key: n for key, n in counts.items() if key[0] == "classifier"} == before
