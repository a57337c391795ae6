"""Guard rails on manual rollouts: a decisively failing gate rolls a manual canary back."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.build import build_classifier_faulty
from server.app import App
from server.promotion.decision import Action, CheckStatus, Evidence, VersionWindow
from server.promotion.gates import decide, guard
from server.promotion.policy import Policy
from tests.support.release import FAST, Load, admin, faulty_rows, reload, serve
from tests.support.waiting import wait_for

STABLE = VersionWindow(5000, 0, p50_ms=5.0, p95_ms=8.0, p99_ms=10.0, window_s=60.0)


def _evidence(requests: int, errors: int, failed: int = 0) -> Evidence:
    candidate = VersionWindow(requests, errors, 4.0, 7.0, 10.0, ("t1",), 60.0)
    return Evidence("clf", "1", "2", 1, 60.0, STABLE, candidate, failed_checks=failed)


# -- the pure guard --------------------------------------------------------------------------


def test_guard_never_steps_or_promotes() -> None:
    ev = _evidence(5000, 0)
    assert decide(Policy(), ev).action is Action.ADVANCE
    d = guard(Policy(), ev)
    assert d.action is Action.HOLD and d.next_canary_ppm is None
    assert "no gate fails" in d.reason and d.failed_checks == 0


def test_guard_rolls_back_on_the_same_gates_and_threshold_as_decide() -> None:
    first = guard(Policy(), _evidence(150, 8))  # 5.3% of 150: significant at once
    assert first.action is Action.HOLD and first.failed_checks == 1
    assert "check failed 1 of 2" in first.reason and first.reason.startswith("guard rails: ")
    second = guard(Policy(), dataclasses.replace(_evidence(150, 8), failed_checks=1))
    assert second.action is Action.ROLLBACK
    gate = next(c for c in second.checks if c.name == "error_rate")
    assert gate.status is CheckStatus.FAIL
    assert decide(Policy(), _evidence(150, 8, failed=1)).action is Action.ROLLBACK


def test_guard_is_silent_without_data() -> None:
    d = guard(Policy(), _evidence(0, 0))
    assert d.action is Action.HOLD and d.failed_checks == 0


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    app = serve(tmp_path, models={"classifier": {"stable": "1", "promotion": FAST}})
    build_classifier_faulty(app.config.models_dir / "classifier" / "3" / "model.onnx")
    reload(app)
    yield app
    app.stop(0)


def test_a_failing_manual_canary_is_rolled_back_by_its_guard_rails(server: App) -> None:
    with admin(server) as ops:
        started = ops.start("classifier", "3", canary_ppm=200_000, reason="try v3")
        assert started.rollout.guarded and not started.rollout.automatic
        assert json.loads(started.rollout.guard_policy_json)["interval_s"] == 0.2
        with Load(server, rows=faulty_rows):
            wait_for(lambda: not ops.get("classifier").candidate_version, timeout=60.0)
        final = ops.get("classifier")
        explained = ops.explain("classifier")
        audit = ops.audit("classifier")
    assert final.stable_version == "1" and final.last_candidate_version == "3"
    assert final.phase == 4  # PHASE_ROLLED_BACK
    start = next(e for e in audit if e.operation == "start")
    assert json.loads(start.extra_json)["guard_rails"] == "on"
    (rollback,) = [e for e in audit if e.operation == "guard_rollback"]
    assert rollback.actor == "promotion" and rollback.reason.startswith("guard rails: rollback")
    evidence = json.loads(rollback.extra_json)
    assert evidence["action"] == "rollback" and evidence["evidence"]["candidate"]["errors"] > 0
    assert explained.evaluated and explained.action == "rollback"
    assert any(c.name == "error_rate" and c.status == "fail" for c in explained.checks)


def test_no_guard_keeps_traffic_and_is_audited(server: App) -> None:
    with admin(server) as ops:
        started = ops.start("classifier", "3", canary_ppm=200_000, no_guard=True)
        assert not started.rollout.guarded
        with Load(server) as load:
            wait_for(lambda: load.failed >= 30, timeout=60.0)
        rollout = ops.get("classifier")
        audit = ops.audit("classifier")
        explained = ops.explain("classifier")
    assert rollout.candidate_version == "3" and rollout.canary_weight_ppm == 200_000
    assert json.loads(audit[-1].extra_json)["guard_rails"] == "off (no_guard)"
    assert not explained.evaluated


def test_default_guard_is_the_default_policy(tmp_path: Path) -> None:
    app = serve(tmp_path)
    try:
        (app.config.models_dir / "classifier" / "2").rename(
            app.config.models_dir / "classifier" / "3"
        )
        reload(app)
        with admin(app) as ops:
            rollout = ops.start("classifier", "3", canary_ppm=50_000).rollout
            assert json.loads(rollout.guard_policy_json) == json.loads(Policy().to_json())
            with pytest.raises(Exception, match="no_guard is for manual rollouts"):
                ops.transition("rollback", "classifier")
                ops.start("classifier", "3", automatic=True, no_guard=True)
    finally:
        app.stop(0)
