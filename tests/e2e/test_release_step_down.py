"""Step down instead of bail out: a failing step goes back one step (up to step_down_limit
times per rollout) before a failure rolls the candidate back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from models.build import FAULTY_THRESHOLD, build_classifier_faulty
from server.promotion.controller import PromotionController
from server.promotion.decision import Action, Evidence, VersionWindow
from server.promotion.documents import InvalidPromotionInput
from server.promotion.gates import decide
from server.promotion.policy import Policy
from server.rollout.controller import RolloutController
from server.rollout.state import StartRollout
from server.telemetry.windows import WindowSummary
from server.testing import FakeClock, MemoryStore
from tests.support.release import FAST, Load, admin, reload, serve
from tests.support.waiting import wait_for

POLICY = Policy(
    shadow_ppm=0,
    steps=(10_000, 50_000, 250_000),
    min_requests=100,
    min_duration_s=10.0,
    interval_s=5.0,
    failure_threshold=2,
    step_down_limit=1,
)
STABLE = VersionWindow(5000, 0, 5.0, 8.0, 10.0, (), 60.0)
GOOD = VersionWindow(400, 0, 4.0, 7.0, 10.0, (), 60.0)
BAD = VersionWindow(150, 8, 4.0, 7.0, 10.0, ("t",), 60.0)  # 5.3 % of 150: fails at once


def ev(step: int, candidate: VersionWindow, failed: int = 0, downs: int = 0) -> Evidence:
    return Evidence(
        "m", "1", "2", step, 60.0, STABLE, candidate, failed_checks=failed, step_downs=downs
    )


# -- the pure decision --------------------------------------------------------------------------


def test_the_threshold_steps_down_instead_of_rolling_back() -> None:
    assert decide(POLICY, ev(2, BAD)).action is Action.HOLD
    d = decide(POLICY, ev(2, BAD, failed=1))
    assert d.action is Action.STEP_DOWN
    assert (d.next_step_index, d.next_canary_ppm, d.next_shadow_ppm) == (1, 50_000, None)
    assert (d.failed_checks, d.step_downs) == (0, 1)
    assert d.reason.startswith("step down to step 1 (5% canary) after 2 failed checks")
    assert Policy.from_dict(POLICY.as_dict()) == POLICY
    assert type(d).from_dict(json.loads(d.to_json())) == d


def test_rollback_once_the_step_downs_are_spent_or_at_step_zero() -> None:
    spent = decide(POLICY, ev(2, BAD, failed=1, downs=1))
    assert spent.action is Action.ROLLBACK and "all 1 step-downs spent" in spent.reason
    assert decide(POLICY, ev(0, BAD, failed=1)).action is Action.ROLLBACK
    assert decide(Policy(shadow_ppm=0), ev(2, BAD, failed=1)).action is Action.ROLLBACK


def test_step_down_limit_validates() -> None:
    with pytest.raises(InvalidPromotionInput, match="step_down_limit"):
        Policy.from_dict({"step_down_limit": -1})


# -- the controller on a fake clock -------------------------------------------------------------


class FakeWindows:
    """Per-version windows the test sets, as the span processor would have summed them."""

    bucket_s = 1.0

    def __init__(self) -> None:
        self.now: dict[str, VersionWindow] = {"1": STABLE, "2": GOOD}

    def summary(self, model: str, version: str, window_s: float, since: float = 0.0) -> Any:
        w = self.now[version]
        return WindowSummary(
            w.requests, w.errors, w.p50_ms, w.p95_ms, w.p99_ms, w.error_trace_ids, w.window_s
        )


class NoShadow:
    def stats(self, model: str, candidate: str | None = None) -> None:
        return None


def test_step_down_then_recovery_then_rollback_on_a_fake_clock() -> None:
    clock = FakeClock(1_000.0)
    rollouts = RolloutController(
        MemoryStore(),
        ready_versions=lambda m: frozenset({"1", "2"}),
        publish=lambda t: None,
        clock=clock,
    )
    rollouts.adopt({"m": "1"})
    windows = FakeWindows()
    pc = PromotionController(rollouts, windows, NoShadow(), clock=clock)  # type: ignore[arg-type]
    start = StartRollout("2", canary_ppm=10_000, policy=POLICY.as_dict())
    rollouts.execute("m", start, actor="t", reason="")

    def tick(seconds: float = 11.0) -> Action:
        clock.advance(seconds)
        decision = pc.evaluate("m")
        assert decision is not None
        return decision.action

    assert tick() is Action.ADVANCE and tick() is Action.ADVANCE
    assert rollouts.get("m").canary_ppm == 250_000
    windows.now["2"] = BAD
    assert tick(5.0) is Action.HOLD and tick(5.0) is Action.STEP_DOWN
    assert rollouts.get("m").canary_ppm == 50_000
    windows.now["2"] = GOOD  # recovered: climbs again
    assert tick() is Action.ADVANCE and rollouts.get("m").canary_ppm == 250_000
    windows.now["2"] = BAD  # fails again: the one step-down is spent
    assert tick(5.0) is Action.HOLD and tick(5.0) is Action.ROLLBACK
    state = rollouts.get("m")
    assert state.candidate is None and state.last_candidate == "2"
    ops = [e.operation for e in rollouts.audit("m")]
    assert ops.count("auto_step_down") == 1 and ops[-1] == "auto_rollback"
    assert "all 1 step-downs spent" in rollouts.audit("m")[-1].reason


# -- end to end ---------------------------------------------------------------------------------


def test_step_down_then_recovery_against_a_server(tmp_path: Path) -> None:
    app = serve(tmp_path)
    build_classifier_faulty(app.config.models_dir / "classifier" / "3" / "model.onnx")
    reload(app)
    faulty = {"on": False}

    def rows(rng: np.random.Generator) -> npt.NDArray[np.float32]:
        x = rng.standard_normal((1, 4)).astype(np.float32)
        x[0, 0] = min(float(x[0, 0]), 1.0)  # below the faulty model's threshold: clean
        if faulty["on"] and rng.random() < 0.3:
            x[0, 0] = FAULTY_THRESHOLD + 1.0
        return x

    policy = {**FAST, "steps": [100_000, 300_000, 600_000], "step_down_limit": 1}
    try:
        with admin(app) as ops, Load(app, rows):
            ops.start("classifier", "3", automatic=True, policy_json=json.dumps(policy))
            wait_for(lambda: ops.get("classifier").canary_weight_ppm == 300_000, timeout=60.0)
            faulty["on"] = True
            wait_for(
                lambda: ops.get("classifier").canary_weight_ppm == 100_000, timeout=60.0, poll=0.01
            )
            faulty["on"] = False
            wait_for(lambda: not ops.get("classifier").candidate_version, timeout=60.0)
            final = ops.get("classifier")
            audit = ops.audit("classifier")
    finally:
        app.stop(0)
    operations = [e.operation for e in audit]
    assert final.stable_version == "3", "\n".join(f"{e.operation}: {e.reason}" for e in audit)
    (down,) = [e for e in audit if e.operation == "auto_step_down"]
    assert "error_rate failed" in down.reason and json.loads(down.extra_json)["step_downs"] == 1
    assert operations.index("auto_step_down") < operations.index("auto_promote")
