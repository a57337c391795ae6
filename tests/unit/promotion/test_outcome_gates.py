"""Outcome gates in decide(): parsed from the policy, judged on the evidence, explained."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.outcomes.stats import uniform_confidence
from server.promotion.decision import Action, Check, CheckStatus, Evidence, VersionWindow
from server.promotion.documents import InvalidPromotionInput
from server.promotion.gates import decide
from server.promotion.outcome_gate import OutcomeGate, OutcomeWindow
from server.promotion.policy import SHADOW_STEP, Policy

GATE = OutcomeGate("conversion", "binary", max_drop=0.01, min_samples=1000)
POLICY = Policy(outcomes=(GATE,))
STABLE = VersionWindow(5000, 0, p50_ms=5.0, p95_ms=8.0, p99_ms=10.0, window_s=60.0)
CANDIDATE = VersionWindow(400, 0, 4.0, 7.0, 10.0, (), 60.0)


def conversions(stable: tuple[int, int], candidate: tuple[int, int]) -> OutcomeWindow:
    (ks, ns), (kc, nc) = stable, candidate
    return OutcomeWindow("conversion", "binary", ns, ks, ks, nc, kc, kc)


def evidence(*outcomes: OutcomeWindow, **changes: Any) -> Evidence:
    base = Evidence("clf", "1", "2", 0, 60.0, STABLE, CANDIDATE, outcomes=outcomes)
    return dataclasses.replace(base, **changes)


def gate_check(policy: Policy, ev: Evidence) -> Check:
    (found,) = [c for c in decide(policy, ev).checks if c.name == "outcome:conversion"]
    return found


@pytest.mark.parametrize(
    ("stable", "candidate", "status"),
    [
        ((3000, 30_000), (3000, 30_000), CheckStatus.PASS),  # equal, plenty of data
        ((1000, 10_000), (700, 10_000), CheckStatus.FAIL),  # 7 % vs 10 %: 3 points worse
        ((1000, 10_000), (930, 10_000), CheckStatus.NO_DATA),  # 0.7 points: cannot tell yet
        ((100, 999), (100, 999), CheckStatus.NO_DATA),  # under min_samples
        ((1000, 10_000), (1200, 10_000), CheckStatus.PASS),  # better is never a drop
        ((1000, 10_000), (1000, 10_000), CheckStatus.NO_DATA),  # equal, but bounds +-1.29
    ],
)
def test_the_binary_gate(
    stable: tuple[int, int], candidate: tuple[int, int], status: CheckStatus
) -> None:
    c = gate_check(POLICY, evidence(conversions(stable, candidate)))
    assert c.status is status, c.detail
    assert c.threshold == 0.01
    assert "conversion: candidate" in c.detail and "vs stable" in c.detail
    if status is not CheckStatus.NO_DATA or "bound" in c.detail:
        assert "time-uniform bounds" in c.detail and "max drop 1.00 points" in c.detail


def test_a_failing_outcome_gate_rolls_back_after_the_failure_threshold() -> None:
    ev = evidence(conversions((1000, 10_000), (700, 10_000)))
    first = decide(POLICY, ev)
    assert first.action is Action.HOLD and "outcome:conversion failed" in first.reason
    second = decide(POLICY, dataclasses.replace(ev, failed_checks=first.failed_checks))
    assert second.action is Action.ROLLBACK
    assert "7.00% (700 of 10000)" in second.reason and "10.00% (1000 of 10000)" in second.reason


def test_a_gate_without_enough_outcomes_holds_the_step() -> None:
    d = decide(POLICY, evidence(conversions((10, 100), (10, 100))))
    assert d.action is Action.HOLD
    assert "needs 1000 randomized reports each" in d.reason


def test_no_reports_at_all_hold_a_live_step_but_not_the_shadow_step() -> None:
    live = gate_check(POLICY, evidence())
    assert (live.status, live.required) == (CheckStatus.NO_DATA, True)
    shadow = gate_check(POLICY, evidence(step_index=SHADOW_STEP))
    assert (shadow.status, shadow.required) == (CheckStatus.NO_DATA, False)


def test_an_optional_gate_does_not_hold() -> None:
    optional = Policy(outcomes=(dataclasses.replace(GATE, required=False),))
    assert not gate_check(optional, evidence()).required


def test_lower_is_better_turns_the_direction() -> None:
    returns = OutcomeGate("conversion", "binary", max_drop=0.01, min_samples=1000,
                          higher_is_better=False)  # fmt: skip
    policy = Policy(outcomes=(returns,))
    more = evidence(conversions((1000, 10_000), (1300, 10_000)))  # 3 points more returns
    assert gate_check(policy, more).status is CheckStatus.FAIL
    fewer = evidence(conversions((1000, 10_000), (700, 10_000)))
    assert gate_check(policy, fewer).status is CheckStatus.PASS


def test_the_real_valued_gate_uses_means() -> None:
    revenue = OutcomeGate("revenue", "real", max_drop=0.5, min_samples=100)
    policy = Policy(outcomes=(revenue,))

    def window(mean_c: float) -> OutcomeWindow:  # n 1000 each, sd 2
        ss = lambda mean: 1000 * mean * mean + 999 * 4.0  # noqa: E731
        return OutcomeWindow("revenue", "real", 1000, 10_000.0, ss(10), 1000, 1000 * mean_c,
                             ss(mean_c))  # fmt: skip

    def status(mean_c: float) -> CheckStatus:
        (c,) = [c for c in decide(policy, evidence(window(mean_c))).checks if "revenue" in c.name]
        return c.status

    assert status(10.0) is CheckStatus.PASS
    assert status(8.5) is CheckStatus.FAIL
    assert status(9.6) is CheckStatus.NO_DATA


def test_evidence_with_outcomes_round_trips_through_json() -> None:
    ev = evidence(conversions((1000, 10_000), (700, 10_000)))
    assert Evidence.from_json(ev.to_json()) == ev
    d = decide(POLICY, ev)
    assert type(d).from_json(d.to_json()) == d


def test_the_policy_reads_outcome_gates_from_a_document() -> None:
    doc = {"outcomes": [{"name": "conversion", "max_drop": 0.02, "min_samples": 300}]}
    policy = Policy.from_dict(doc)
    assert policy.outcomes == (OutcomeGate("conversion", "binary", 0.02, 300),)
    assert Policy.from_dict(policy.as_dict()) == policy


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        ([{"name": "c", "kind": "ordinal"}], "kind must be one of"),
        ([{"name": "c", "max_drop": 1.5}], "max_drop"),
        ([{"name": "c", "min_samples": 1}], "min_samples"),
        ([{"name": "c"}, {"name": "c"}], "twice"),
        ([{"kind": "binary"}], "missing the key 'name'"),
        ([{"name": "c", "max_dorp": 0.1}], "unknown OutcomeGate key"),
        ("conversion", "must be a list"),
    ],
)
def test_bad_outcome_gates_are_refused_with_the_key(outcomes: object, message: str) -> None:
    with pytest.raises(InvalidPromotionInput, match=message):
        Policy.from_dict({"outcomes": outcomes})


@given(st.integers(1, 10**7), st.integers(1, 10**5), st.floats(0.6, 0.99))
def test_time_uniform_bounds_are_wider_than_fixed_ones(n: int, tuned: int, conf: float) -> None:
    assert uniform_confidence(n, tuned, conf) > conf


def test_in_a_fleet_an_outcome_check_says_how_many_replicas_reports_it_merges() -> None:
    """The verdict is the same; the detail says whose reports it read."""
    window = conversions((3000, 30_000), (3000, 30_000))
    alone = gate_check(POLICY, evidence(window))
    fleet = gate_check(POLICY, evidence(dataclasses.replace(window, replicas=3)))
    assert "replicas" not in alone.detail
    assert fleet.detail == alone.detail + " (outcome reports of 3 replicas)"
    assert fleet.status is alone.status
    assert OutcomeWindow.from_dict(window.as_dict()) == window  # an audit row round-trips
    old = {k: v for k, v in window.as_dict().items() if k != "replicas"}
    assert OutcomeWindow.from_dict(old) == window  # rows written before the field still load
