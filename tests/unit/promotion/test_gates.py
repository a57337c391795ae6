"""decide(), the pure promotion gates: each gate at its edges, the decisions, and properties."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.promotion.decision import (
    Action,
    Check,
    CheckStatus,
    Decision,
    Evidence,
    ShadowWindow,
    VersionWindow,
)
from server.promotion.documents import InvalidPromotionInput
from server.promotion.gates import decide, first_step
from server.promotion.policy import SHADOW_STEP, Policy

POLICY = Policy()
# 0 errors in 5,000: one-sided 95% upper bound 0.054%, so the error limit is 1.054%.
STABLE = VersionWindow(5000, 0, p50_ms=5.0, p95_ms=8.0, p99_ms=10.0, window_s=60.0)


def cand(
    requests: int = 400, errors: int = 0, p99: float | None = 10.0, traces: tuple[str, ...] = ()
) -> VersionWindow:
    return VersionWindow(requests, errors, 4.0, 7.0, p99, traces, 60.0)


def evidence(**changes: Any) -> Evidence:
    base = Evidence("clf", "1", "2", 0, 60.0, STABLE, cand())
    return dataclasses.replace(base, **changes)


def check(decision: Decision, name: str) -> Check:
    (found,) = [c for c in decision.checks if c.name == name]
    return found


def names(decision: Decision) -> list[str]:
    return [c.name for c in decision.checks]


# --- the gates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "stable", "status"),
    [
        (cand(300, 0), STABLE, CheckStatus.PASS),  # upper 0.89% <= 1.054%
        (cand(150, 8), STABLE, CheckStatus.FAIL),  # 5.3% of 150: lower 3.0% > 1.054%, early
        (cand(400, 10), STABLE, CheckStatus.FAIL),  # 2.5%: exact lower 1.36% > 1.054%
        (cand(400, 8), STABLE, CheckStatus.NO_DATA),  # 2%: exact lower 0.99%: not yet significant
        (cand(400, 6), STABLE, CheckStatus.NO_DATA),  # 1.5%: lower 0.78%, upper 2.9%: undecided
        (cand(150, 0), STABLE, CheckStatus.NO_DATA),  # clean so far, but under min_requests
        (cand(0, 0), STABLE, CheckStatus.NO_DATA),  # silence
        (cand(300, 0), VersionWindow(0, 0), CheckStatus.NO_DATA),  # no baseline
        (cand(150, 150), VersionWindow(0, 0), CheckStatus.NO_DATA),  # no baseline: cannot judge
        # A noisy stable raises the bar: 2% vs stable 2% passes with enough data.
        (cand(5000, 100), VersionWindow(5000, 100, p99_ms=10.0), CheckStatus.PASS),
    ],
)
def test_error_rate_gate(
    candidate: VersionWindow, stable: VersionWindow, status: CheckStatus
) -> None:
    """The error-rate gate fails on significance, passes within the limit, else waits."""
    c = check(decide(POLICY, evidence(candidate=candidate, stable=stable)), "error_rate")
    assert c.status is status
    assert c.threshold is not None and c.threshold > POLICY.max_error_rate_increase
    if candidate.requests:
        assert c.observed == pytest.approx(candidate.errors / candidate.requests)
    assert "95% bounds" in c.detail and "allowed 1.0%" in c.detail


def test_error_rate_gate_passes_exactly_at_min_requests() -> None:
    policy = Policy(max_error_rate_increase=0.02)  # 0 of 199 and 0 of 200 are both within it
    below = decide(policy, evidence(candidate=cand(199, 0)))
    at = decide(policy, evidence(candidate=cand(200, 0)))
    assert check(below, "error_rate").status is CheckStatus.NO_DATA
    assert check(below, "min_requests").status is CheckStatus.NO_DATA
    assert "199 of 200 candidate requests" in below.reason
    assert check(at, "error_rate").status is CheckStatus.PASS
    assert check(at, "min_requests").status is CheckStatus.PASS
    assert at.action is Action.ADVANCE


def test_failing_candidate_names_trace_ids() -> None:
    d = decide(POLICY, evidence(candidate=cand(150, 8, traces=("t1", "t2", "t3", "t4"))))
    assert d.action is Action.HOLD and d.failed_checks == 1
    assert d.reason.startswith("check failed 1 of 2 before rollback: error_rate failed")
    assert "5.3% (8 of 150" in d.reason and "t1, t2, t3" in d.reason and "t4" not in d.reason


@pytest.mark.parametrize(
    ("cand_n", "stable_n", "p99", "stable_p99", "status"),
    [
        (400, 5000, 13.0, 10.0, CheckStatus.PASS),  # exactly at the 1.3 ratio passes
        (400, 5000, 13.25, 10.0, CheckStatus.PASS),  # within the 0.25 ms slack above it
        (400, 5000, 13.3, 10.0, CheckStatus.FAIL),
        (400, 5000, 0.5, 0.3, CheckStatus.PASS),  # 1.67x, but 0.1 ms: noise at this scale
        (400, 5000, 5.0, 10.0, CheckStatus.PASS),
        (100, 100, 20.0, 10.0, CheckStatus.FAIL),  # exactly min_latency_samples on both sides
        (99, 5000, 20.0, 10.0, CheckStatus.NO_DATA),  # one short on the candidate side
        (400, 99, 20.0, 10.0, CheckStatus.NO_DATA),  # one short on the stable side
        (400, 5000, None, 10.0, CheckStatus.NO_DATA),
        (400, 5000, 20.0, None, CheckStatus.NO_DATA),
        (400, 5000, 20.0, 0.0, CheckStatus.NO_DATA),  # no ratio to a 0 ms stable
    ],
)
def test_latency_gate(
    cand_n: int, stable_n: int, p99: float | None, stable_p99: float | None, status: CheckStatus
) -> None:
    """The p99 gate compares like samples and allows the ratio plus a noise slack."""
    stable = VersionWindow(stable_n, 0, p99_ms=stable_p99)
    c = check(
        decide(POLICY, evidence(candidate=cand(cand_n, 0, p99), stable=stable)), "latency_p99"
    )
    assert c.status is status
    assert c.threshold == 1.3
    if status is not CheckStatus.NO_DATA:
        assert c.observed == pytest.approx(p99 / stable_p99)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("shadow", "status"),
    [
        (ShadowWindow(2000, 20, 0), CheckStatus.FAIL),  # 1%: lower bound 0.69% > 0.5%
        (ShadowWindow(2000, 0, 0), CheckStatus.PASS),  # upper bound 0.14%
        (ShadowWindow(2000, 2, 0), CheckStatus.PASS),  # upper bound 0.30%
        (ShadowWindow(2000, 5, 0), CheckStatus.NO_DATA),  # 0.12% .. 0.51%: undecided
        (ShadowWindow(400, 3, 0), CheckStatus.NO_DATA),
        (ShadowWindow(0, 0, 0), CheckStatus.NO_DATA),
        (None, CheckStatus.NO_DATA),
    ],
)
def test_shadow_disagreement_gate_on_the_shadow_step(
    shadow: ShadowWindow | None, status: CheckStatus
) -> None:
    d = decide(POLICY, evidence(step_index=SHADOW_STEP, candidate=cand(0, 0, None), shadow=shadow))
    c = check(d, "shadow_disagreement")
    assert c.status is status and c.required and c.threshold == 0.005
    if status is CheckStatus.FAIL:
        assert d.action is Action.HOLD and "20 of 2000 shadow comparisons disagree" in d.reason
    elif status is CheckStatus.PASS:
        assert d.action is Action.ADVANCE
    else:
        assert d.action is Action.HOLD and d.failed_checks == 0


def test_shadow_step_advances_to_step_zero_and_stops_shadowing() -> None:
    shadow = ShadowWindow(2000, 0, 0)
    d = decide(POLICY, evidence(step_index=SHADOW_STEP, candidate=cand(0, 0, None), shadow=shadow))
    assert d.action is Action.ADVANCE
    assert (d.next_step_index, d.next_canary_ppm, d.next_shadow_ppm) == (0, 10_000, 0)
    latency = check(d, "latency_p99")
    assert latency.status is CheckStatus.NO_DATA and not latency.required  # did not hold the step
    assert "2000 completed shadow comparisons" in check(d, "min_requests").detail


def test_shadow_step_counts_shadow_errors_and_comparisons() -> None:
    few = ShadowWindow(150, 0, 0)
    d = decide(POLICY, evidence(step_index=SHADOW_STEP, candidate=cand(0, 0, None), shadow=few))
    assert d.action is Action.HOLD
    assert "150 of 200 completed shadow comparisons" in d.reason
    crashing = ShadowWindow(300, 0, 60)  # 60 of 360 shadow runs raised
    d = decide(POLICY, evidence(step_index=SHADOW_STEP, candidate=cand(0, 0), shadow=crashing))
    assert check(d, "error_rate").status is CheckStatus.FAIL
    assert "shadow error rate 16.7% (60 of 360" in d.reason


def test_shadow_gate_on_a_canary_step_is_advisory_unless_it_fails() -> None:
    undecided = evidence(shadow=ShadowWindow(400, 3, 0))
    d = decide(POLICY, dataclasses.replace(undecided, candidate=cand(300, 0)))
    assert not check(d, "shadow_disagreement").required and d.action is Action.ADVANCE
    d = decide(POLICY, evidence(shadow=ShadowWindow(2000, 20, 0), candidate=cand(300, 0)))
    assert d.action is Action.HOLD and d.failed_checks == 1
    assert "shadow_disagreement" not in names(decide(POLICY, evidence(shadow=None)))


@pytest.mark.parametrize(
    ("seconds", "status"),
    [(30.0, CheckStatus.PASS), (29.999, CheckStatus.NO_DATA), (0.0, CheckStatus.NO_DATA)],
)
def test_min_duration(seconds: float, status: CheckStatus) -> None:
    """A step holds until min_duration_s has passed, then advances."""
    d = decide(POLICY, evidence(seconds_in_step=seconds))
    assert check(d, "min_duration").status is status
    assert d.action is (Action.ADVANCE if status is CheckStatus.PASS else Action.HOLD)


def test_min_requests_boundary() -> None:
    """min_requests passes at exactly the minimum, not one below."""
    policy = Policy(min_requests=300)
    for n, status in ((299, CheckStatus.NO_DATA), (300, CheckStatus.PASS)):
        c = check(decide(policy, evidence(candidate=cand(n, 0))), "min_requests")
        assert (c.status, c.observed, c.threshold) == (status, n, 300)


# --- decisions ---------------------------------------------------------------------------------


def test_zero_traffic_holds_forever() -> None:
    silent = VersionWindow(0, 0)
    for step in (SHADOW_STEP, 0, 2, 3):
        ev = evidence(step_index=step, stable=silent, candidate=silent, failed_checks=1)
        for seconds in (0.0, 31.0, 86_400.0 * 365):
            d = decide(POLICY, dataclasses.replace(ev, seconds_in_step=seconds))
            assert d.action is Action.HOLD and d.failed_checks == 1
            assert all(c.status is not CheckStatus.FAIL for c in d.checks)
            assert d.next_canary_ppm is None and d.next_shadow_ppm is None


def test_two_consecutive_failures_roll_back() -> None:
    bad = evidence(candidate=cand(150, 8))
    first = decide(POLICY, bad)
    assert (first.action, first.failed_checks) == (Action.HOLD, 1)
    second = decide(POLICY, dataclasses.replace(bad, failed_checks=first.failed_checks))
    assert (second.action, second.failed_checks) == (Action.ROLLBACK, 2)
    assert second.reason.startswith("rollback after 2 failed checks in a row: error_rate failed")
    assert "= 1.1%" in second.reason  # the threshold beside the observed 5.3%
    assert second.next_step_index is None and second.next_canary_ppm is None


def test_failure_count_resets_only_on_a_full_pass() -> None:
    assert decide(POLICY, evidence(failed_checks=1)).failed_checks == 0
    waiting = decide(POLICY, evidence(failed_checks=1, candidate=cand(10, 0)))
    assert (waiting.action, waiting.failed_checks) == (Action.HOLD, 1)
    assert waiting.reason.startswith("hold: 10 of 200 candidate requests in this step")
    assert decide(Policy(failure_threshold=1), evidence(candidate=cand(150, 8))).action is (
        Action.ROLLBACK
    )


def test_advance_through_every_step_then_promote() -> None:
    index, canary, shadow = first_step(POLICY)
    assert (index, canary, shadow) == (SHADOW_STEP, 0, 1_000_000)
    ev = evidence(step_index=index, candidate=cand(0, 0, None), shadow=ShadowWindow(2000, 0, 0))
    seen = []
    while True:
        d = decide(POLICY, ev)
        if d.action is Action.PROMOTE:
            break
        assert d.action is Action.ADVANCE and d.next_step_index is not None
        seen.append(d.next_canary_ppm)
        assert d.next_shadow_ppm == (0 if ev.step_index == SHADOW_STEP else None)
        ev = evidence(step_index=d.next_step_index)
    assert seen == list(POLICY.steps)
    assert ev.step_index == len(POLICY.steps) - 1
    assert (d.next_step_index, d.next_canary_ppm, d.next_shadow_ppm) == (None, None, None)
    assert d.reason == "promote: every gate passed at step 3 (50% canary), the last step"


def test_first_step_without_shadow() -> None:
    """Without a shadow rate the first step is the first canary weight."""
    assert first_step(Policy(shadow_ppm=0, steps=(500, 1000))) == (0, 500, 0)


def test_manual_steps_hold_until_approved() -> None:
    policy = Policy(manual_steps=(2, SHADOW_STEP))
    waiting = decide(policy, evidence(step_index=2))
    assert waiting.action is Action.HOLD
    assert waiting.reason == "hold: step 2 (25% canary) waits for an operator's approval"
    assert decide(policy, evidence(step_index=2, approved=True)).action is Action.ADVANCE
    assert "manual_approval" not in names(decide(policy, evidence(step_index=1)))
    # Approval does not override data: still too few requests.
    thin = decide(policy, evidence(step_index=2, approved=True, candidate=cand(5, 0)))
    assert thin.action is Action.HOLD


def test_step_index_must_be_in_the_policy() -> None:
    with pytest.raises(InvalidPromotionInput, match="step_index 5"):
        decide(POLICY, evidence(step_index=5))
    with pytest.raises(ValueError, match="step_index"):
        evidence(step_index=-2)


# --- properties --------------------------------------------------------------------------------

counts = st.integers(0, 3000)
latency = st.one_of(st.none(), st.floats(0.0, 1e4))


@st.composite
def windows(draw: st.DrawFn) -> VersionWindow:
    n = draw(counts)
    return VersionWindow(n, draw(st.integers(0, n)), p99_ms=draw(latency))


@st.composite
def shadows(draw: st.DrawFn) -> ShadowWindow | None:
    if draw(st.booleans()):
        return None
    n = draw(counts)
    return ShadowWindow(n, draw(st.integers(0, n)), draw(st.integers(0, 100)))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Policy, Evidence]:
    policy = Policy(
        min_requests=draw(st.integers(1, 500)),
        min_duration_s=draw(st.floats(0.0, 100.0)),
        failure_threshold=draw(st.integers(1, 4)),
        confidence=draw(st.sampled_from([0.8, 0.95, 0.99])),
        min_latency_samples=draw(st.integers(1, 200)),
        manual_steps=draw(st.sampled_from([(), (1,), (SHADOW_STEP, 3)])),
    )
    ev = Evidence(
        "m", "1", "2",
        step_index=draw(st.integers(SHADOW_STEP, len(policy.steps) - 1)),
        seconds_in_step=draw(st.floats(0.0, 200.0)),
        stable=draw(windows()),
        candidate=draw(windows()),
        shadow=draw(shadows()),
        failed_checks=draw(st.integers(0, 5)),
        approved=draw(st.booleans()),
    )  # fmt: skip
    return policy, ev


@settings(max_examples=500, deadline=None)
@given(cases())
def test_never_moves_on_without_data_and_never_rolls_back_without_a_failure(
    case: tuple[Policy, Evidence],
) -> None:
    policy, ev = case
    d = decide(policy, ev)
    failed = any(c.status is CheckStatus.FAIL for c in d.checks)
    if d.action in (Action.ADVANCE, Action.PROMOTE):
        assert ev.seconds_in_step >= policy.min_duration_s
        if ev.step_index != SHADOW_STEP:
            assert ev.candidate.requests >= policy.min_requests
        else:
            assert ev.shadow is not None and ev.shadow.completed >= policy.min_requests
        assert ev.step_index not in policy.manual_steps or ev.approved
        assert not failed and d.failed_checks == 0
    if d.action is Action.ROLLBACK:
        assert failed and d.failed_checks >= policy.failure_threshold
    if not failed:
        assert d.action is not Action.ROLLBACK
        assert d.failed_checks in (0, ev.failed_checks)
    else:
        assert d.failed_checks == ev.failed_checks + 1
    json.dumps(d.as_dict(), allow_nan=False)
