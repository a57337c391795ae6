"""Outcome gates in a seeded simulation: the real promotion controller, rollout controller and
outcome windows on a fake clock, fed simulated traffic and conversions tick by tick.

A candidate converting 20 % worse than stable (8 % against 10 %) must be rolled back; an
equal one must be promoted, and rolled back by mistake in fewer runs than the policy's
confidence allows (1 - 0.95 = 5 %), although the controller looks at the evidence again on
every interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from server.outcomes.windows import OutcomeWindows
from server.promotion.controller import PromotionController
from server.promotion.gates import first_step
from server.promotion.outcome_gate import OutcomeGate
from server.promotion.policy import Policy
from server.rollout.controller import RolloutController
from server.rollout.state import Phase, StartRollout
from server.shadow.executor import ShadowExecutor
from server.testing import FakeClock, MemoryStore
from tests.support.spans import inference_span, window_processor
from tests.support.waiting import WAIT

BASE_RATE = 0.10
USERS_PER_TICK = 10_000  # keyed requests per evaluation interval, each followed by an outcome
MAX_TICKS = 200
SEEDS = 200
#: Runs of an equal candidate under a gate that cannot pass it (max_drop 0): each looks 100 times.
STRICT_SEEDS = 30
POLICY = Policy(
    shadow_ppm=0,
    steps=(100_000, 250_000, 500_000),
    min_requests=20,
    min_duration_s=10.0,
    interval_s=5.0,
    failure_threshold=2,
    max_error_rate_increase=0.05,
    min_latency_samples=20,
    outcomes=(OutcomeGate("conversion", "binary", max_drop=0.01, min_samples=1_000),),
)


#: One finished call of each version, fed again and again (building a span is slow).
CANDIDATE_SPAN = inference_span("m", "2")
STABLE_SPAN = inference_span("m", "1")


@dataclass(frozen=True)
class Run:
    verdict: str  # "promoted", "rolled_back" or "undecided"
    ticks: int


def simulate(
    seed: int, candidate_rate: float, policy: Policy = POLICY, max_ticks: int = MAX_TICKS
) -> Run:
    """One automatic rollout of v2 over stable v1, to its end (or MAX_TICKS)."""
    rng = np.random.default_rng(seed)
    clock = FakeClock(now=1_000.0)
    rollouts = RolloutController(
        MemoryStore(),
        ready_versions=lambda model: frozenset({"1", "2"}),
        publish=lambda table: None,
        clock=clock,
        salt_factory=lambda: "salt",
    )
    rollouts.adopt({"m": "1"})
    windows = window_processor(clock)
    outcomes = OutcomeWindows(clock=clock)
    shadow = ShadowExecutor()
    controller = PromotionController(rollouts, windows, shadow, clock=clock, outcomes=outcomes)
    _, canary, shadow_ppm = first_step(policy)
    start = StartRollout("2", shadow_ppm=shadow_ppm, canary_ppm=canary, policy=policy.as_dict())
    rollouts.execute("m", start, actor="ops", reason="simulation")
    try:
        for tick in range(max_ticks):
            state = rollouts.get("m")
            if state.phase is Phase.ROLLED_BACK:
                return Run("rolled_back", tick)
            if not state.active:
                return Run("promoted" if state.stable == "2" else "undecided", tick)
            n_c = int(rng.binomial(USERS_PER_TICK, state.canary_ppm / 1_000_000))
            n_s = USERS_PER_TICK - n_c
            k_c = int(rng.binomial(n_c, candidate_rate))
            k_s = int(rng.binomial(n_s, BASE_RATE))
            outcomes.add_sums("m", "2", "conversion", n_c, k_c, k_c, True)
            outcomes.add_sums("m", "1", "conversion", n_s, k_s, k_s, True)
            # Healthy calls for the error and latency gates (a sample is enough for them).
            for _ in range(min(n_c, 30)):
                windows.on_end(CANDIDATE_SPAN)
            for _ in range(60):
                windows.on_end(STABLE_SPAN)
            clock.advance(policy.interval_s)
            controller.evaluate_due()
        return Run("undecided", max_ticks)
    finally:
        assert shadow.shutdown(WAIT)


def test_a_candidate_converting_20_percent_worse_is_rolled_back() -> None:
    runs = [simulate(seed, BASE_RATE * 0.8) for seed in range(SEEDS)]
    rolled_back = sum(r.verdict == "rolled_back" for r in runs)
    promoted = sum(r.verdict == "promoted" for r in runs)
    print(f"worse candidate: {rolled_back}/{SEEDS} rolled back, {promoted} promoted")
    assert promoted == 0
    assert rolled_back >= 0.9 * SEEDS


def test_an_equal_candidate_is_promoted_and_rarely_rolled_back() -> None:
    runs = [simulate(1_000 + seed, BASE_RATE) for seed in range(SEEDS)]
    rolled_back = sum(r.verdict == "rolled_back" for r in runs)
    promoted = sum(r.verdict == "promoted" for r in runs)
    rate = rolled_back / SEEDS
    print(f"equal candidate: {promoted}/{SEEDS} promoted, false-rollback rate {rate:.1%}")
    assert rate <= 1 - POLICY.confidence
    assert promoted >= 0.9 * SEEDS


def test_with_no_tolerance_an_equal_candidate_is_not_rolled_back_more_than_alpha() -> None:
    """max_drop 0: the gate can pass only on a candidate that is no worse, so an equal one
    holds or, by chance, fails; 100 looks must still keep false rollbacks within alpha (fixed
    95 % bounds rolled back 32 % of such runs)."""
    gate = OutcomeGate("conversion", "binary", max_drop=0.0, min_samples=1_000)
    strict = Policy(**{**POLICY.__dict__, "outcomes": (gate,)})
    runs = [simulate(2_000 + seed, BASE_RATE, strict, 100) for seed in range(STRICT_SEEDS)]
    rate = sum(r.verdict == "rolled_back" for r in runs) / STRICT_SEEDS
    print(f"equal candidate, max_drop 0: false-rollback rate {rate:.1%}")
    assert rate <= 1 - POLICY.confidence


@pytest.mark.parametrize("seed", [7])
def test_the_simulation_is_deterministic_per_seed(seed: int) -> None:
    assert simulate(seed, BASE_RATE * 0.8) == simulate(seed, BASE_RATE * 0.8)
