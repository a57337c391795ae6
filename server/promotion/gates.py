"""decide(): a pure function from one step's evidence to a promotion decision.

No clock, no threads, no I/O, no grpc. The periodic controller gathers an `Evidence` from the
per-version windows, calls `decide()`, carries out the returned `Action` through the rollout stage
machine and stores `Decision.as_dict()` in the audit log. Rates are judged with ONE-SIDED Wilson
score bounds at `Policy.confidence` (z = 1.645 at 0.95): each bound alone holds with that
probability. The records it reads and returns are in `server.promotion.policy` and
`server.promotion.decision`; docs/promotion.md explains the gates in plain words.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import NormalDist

from server.intervals import clopper_pearson_lower, wilson_interval
from server.promotion.decision import Action, Check, CheckStatus, Decision, Evidence, ShadowWindow
from server.promotion.documents import InvalidPromotionInput
from server.promotion.outcome_checks import outcome_checks
from server.promotion.policy import SHADOW_STEP, Policy

__all__ = ["decide", "first_step", "guard"]


def first_step(policy: Policy) -> tuple[int, int, int]:
    """(step_index, canary_ppm, shadow_ppm) to start a rollout with: the shadow step if any."""
    if policy.shadow_ppm > 0:
        return SHADOW_STEP, 0, policy.shadow_ppm
    return 0, policy.steps[0], 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%" if x < 0.01 else f"{x * 100:.1f}%"


def _step_name(policy: Policy, index: int) -> str:
    if index == SHADOW_STEP:
        return "the shadow step"
    return f"step {index} ({policy.steps[index] / 10_000:g}% canary)"


def _error_check(p: Policy, ev: Evidence, z: float, enough: bool) -> Check:
    shadow_step, sh, s = ev.step_index == SHADOW_STEP, ev.shadow, ev.stable
    if shadow_step:  # no live candidate traffic: its shadow runs are the evidence
        who, bad, n = "shadow", (sh.errors if sh else 0), (sh.completed + sh.errors if sh else 0)
    else:
        who, bad, n = "candidate", ev.candidate.errors, ev.candidate.requests
    lo, hi = wilson_interval(bad, n, z)
    s_hi = wilson_interval(s.errors, s.requests, z)[1]
    limit = s_hi + p.max_error_rate_increase
    rate, s_rate = (bad / n if n else None), (s.errors / s.requests if s.requests else None)
    detail = (
        f"{who} error rate {_pct(rate)} ({bad} of {n}; {p.confidence * 100:g}% bounds"
        f" {_pct(lo)} to {_pct(hi)}) vs stable {_pct(s_rate)} ({s.errors} of {s.requests};"
        f" upper {_pct(s_hi)}) + allowed {_pct(p.max_error_rate_increase)} = {_pct(limit)}"
    )
    status = CheckStatus.NO_DATA
    if s.requests == 0:  # stable's interval is (0, 1): nothing could fail and anything would pass
        detail += ": no stable requests to compare with"
    elif clopper_pearson_lower(bad, n, p.confidence) > limit:
        status, traces = CheckStatus.FAIL, () if shadow_step else ev.candidate.error_trace_ids[:3]
        exact = clopper_pearson_lower(bad, n, p.confidence)
        detail += f": exact lower bound {_pct(exact)} above the limit"
        detail += f" (e.g. traces {', '.join(traces)})" if traces else ""
    elif hi <= limit and enough:
        status = CheckStatus.PASS
    else:
        detail += ": not enough requests yet" if not enough else ": upper bound above the limit"
    return Check("error_rate", status, rate, limit, detail)


def _latency_check(p: Policy, ev: Evidence, required: bool) -> Check:
    c, s, need, limit = ev.candidate, ev.stable, p.min_latency_samples, p.max_latency_p99_ratio
    detail = f"p99 latency needs {need} samples each: candidate {c.requests}, stable {s.requests}"
    if c.p99_ms is not None and s.p99_ms is not None and min(c.requests, s.requests) >= need:
        detail = "stable p99 is 0 ms: no ratio to judge"
    if c.p99_ms is None or s.p99_ms is None or min(c.requests, s.requests) < need or not s.p99_ms:
        return Check("latency_p99", CheckStatus.NO_DATA, None, limit, detail, required)
    ratio = c.p99_ms / s.p99_ms
    slack = p.latency_slack_ms
    status = CheckStatus.FAIL if c.p99_ms > s.p99_ms * limit + slack else CheckStatus.PASS
    detail = (
        f"candidate p99 {c.p99_ms:.2f} ms / stable p99 {s.p99_ms:.2f} ms = {ratio:.2f}"
        f" (max {limit:g}, and more than {slack:g} ms above stable x {limit:g} to fail)"
    )
    observed = ratio if math.isfinite(ratio) else None
    return Check("latency_p99", status, observed, limit, detail, required)


def _disagreement_check(p: Policy, sh: ShadowWindow | None, z: float, required: bool) -> Check:
    limit = p.max_disagreement_rate
    if sh is None or sh.completed == 0:
        detail = "no completed shadow comparisons yet"
        return Check("shadow_disagreement", CheckStatus.NO_DATA, None, limit, detail, required)
    lo, hi = wilson_interval(sh.disagreements, sh.completed, z)
    rate = sh.disagreements / sh.completed
    detail = (
        f"{sh.disagreements} of {sh.completed} shadow comparisons disagree ({_pct(rate)};"
        f" {p.confidence * 100:g}% bounds {_pct(lo)} to {_pct(hi)}) vs max {_pct(limit)}"
    )
    status = CheckStatus.NO_DATA
    exact = clopper_pearson_lower(sh.disagreements, sh.completed, p.confidence)
    if exact > limit:
        status, worst = CheckStatus.FAIL, ", ".join(i for i in sh.worst_request_ids[:3] if i)
        detail += f": exact lower bound {_pct(exact)} above the max"
        detail += f" (e.g. requests {worst})" if worst else ""
    elif hi <= limit:
        status = CheckStatus.PASS
    else:
        detail += ": upper bound not yet within the max"
    return Check("shadow_disagreement", status, rate, limit, detail, required)


def decide(policy: Policy, evidence: Evidence) -> Decision:
    """The next action for one rollout; pure, deterministic, explained by its checks."""
    p, ev, sh = policy, evidence, evidence.shadow
    if ev.step_index >= len(p.steps):
        raise InvalidPromotionInput(f"step_index {ev.step_index} is past the last step")
    z = NormalDist().inv_cdf(p.confidence)  # one-sided
    shadow_step = ev.step_index == SHADOW_STEP
    n = (sh.completed if sh else 0) if shadow_step else ev.candidate.requests
    what = "completed shadow comparisons" if shadow_step else "candidate requests"
    enough = n >= p.min_requests
    checks = [_error_check(p, ev, z, enough), _latency_check(p, ev, required=not shadow_step)]
    if shadow_step or (sh is not None and sh.completed > 0):
        checks.append(_disagreement_check(p, sh, z, required=shadow_step))
    checks.extend(outcome_checks(p, ev))
    status = CheckStatus.PASS if enough else CheckStatus.NO_DATA
    detail = f"{n} {what} in this step ({p.min_requests} needed)"
    if not enough:
        detail = f"{n} of {p.min_requests} {what} in this step — not enough data"
    checks.append(Check("min_requests", status, n, p.min_requests, detail))
    secs = ev.seconds_in_step
    status = CheckStatus.PASS if secs >= p.min_duration_s else CheckStatus.NO_DATA
    detail = f"{secs:.1f} s of {p.min_duration_s:g} s in this step"
    checks.append(Check("min_duration", status, secs, p.min_duration_s, detail))
    here = _step_name(p, ev.step_index)
    if ev.step_index in p.manual_steps:
        status = CheckStatus.PASS if ev.approved else CheckStatus.NO_DATA
        detail = f"{here} {'is approved' if ev.approved else 'waits for'} an operator's approval"
        checks.append(Check("manual_approval", status, None, None, detail))

    window = p.release_window
    if window is not None:
        if ev.now is None:
            status, detail = CheckStatus.NO_DATA, "no clock reading to judge the release window"
        elif window.is_open(ev.now):
            status, detail = CheckStatus.PASS, f"inside the release window ({window.describe()})"
        else:
            at = window.local(ev.now)
            status = CheckStatus.NO_DATA
            detail = (
                f"outside the release window ({window.describe()}; now"
                f" {at:%a %H:%M} there): automatic steps and promotion wait"
            )
        checks.append(Check("release_window", status, None, None, detail))

    def made(
        action: Action, reason: str, failed: int, nxt: int | None = None, downs: int | None = None
    ) -> Decision:
        canary = p.steps[nxt] if nxt is not None else None
        shadow = 0 if nxt is not None and shadow_step else None  # leaving shadow: sampling stops
        downs = ev.step_downs if downs is None else downs
        return Decision(action, reason, nxt, canary, shadow, failed, tuple(checks), ev, downs)

    fails = [c for c in checks if c.status is CheckStatus.FAIL]
    if fails:
        count, limit = ev.failed_checks + 1, p.failure_threshold
        why = "; ".join(f"{c.name} failed: {c.detail}" for c in fails)
        if count >= limit and ev.step_downs < p.step_down_limit and ev.step_index > 0:
            nxt, downs = ev.step_index - 1, ev.step_downs + 1
            why = (
                f"step down to {_step_name(p, nxt)} after {count} failed checks in a row"
                f" (step-down {downs} of {p.step_down_limit}): {why}"
            )
            return made(Action.STEP_DOWN, why, 0, nxt, downs)
        if count >= limit:
            spent = p.step_down_limit and ev.step_downs >= p.step_down_limit
            limit_note = f" (all {p.step_down_limit} step-downs spent)" if spent else ""
            why = f"rollback after {count} failed checks in a row{limit_note}: {why}"
            return made(Action.ROLLBACK, why, count)
        return made(Action.HOLD, f"check failed {count} of {limit} before rollback: {why}", count)
    basics = ("release_window", "min_requests", "min_duration", "manual_approval")  # first
    held = [c for c in checks if c.required and c.status is not CheckStatus.PASS]
    waiting = [c.detail for c in sorted(held, key=lambda c: c.name not in basics)]
    if waiting:
        return made(Action.HOLD, "hold: " + "; ".join(waiting), ev.failed_checks)
    if ev.step_index == len(p.steps) - 1:
        return made(Action.PROMOTE, f"promote: every gate passed at {here}, the last step", 0)
    nxt = ev.step_index + 1
    why = f"advance: every gate passed at {here}; next {_step_name(p, nxt)}"
    return made(Action.ADVANCE, why, 0, nxt)


#: How a guard decision's reason starts: it names who acted, beside the automatic decisions'.
GUARD_PREFIX = "guard rails: "


def guard(policy: Policy, evidence: Evidence) -> Decision:
    """The guard rails of a manual rollout: decide()'s gates, statistics and failure threshold,
    but only a rollback acts. Steps and promotion stay the operator's, so anything else is a
    hold that says whether a gate is failing."""
    d = decide(replace(policy, step_down_limit=0), evidence)  # weights are the operator's
    if d.action is Action.ROLLBACK:
        return replace(d, reason=GUARD_PREFIX + d.reason)
    failing = any(c.status is CheckStatus.FAIL for c in d.checks)
    if failing:  # "check failed 1 of 2 before rollback: ..."
        return replace(d, reason=GUARD_PREFIX + d.reason)
    why = GUARD_PREFIX + "no gate fails (a manual rollout: steps and promotion are the operator's)"
    return replace(
        d,
        action=Action.HOLD,
        reason=why,
        next_step_index=None,
        next_canary_ppm=None,
        next_shadow_ppm=None,
    )
