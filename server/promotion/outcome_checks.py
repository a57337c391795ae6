"""The outcome gates of decide(): is the candidate's business outcome worse than stable's by
more than the policy allows? And the evidence they read, gathered from the outcome windows.

A gate compares the randomized reports of both versions (server.outcomes.served.Served.randomized)
over its window. It holds (no_data) until both versions have `min_samples` reports; then it
FAILS only when the one-sided lower bound of the drop (stable - candidate, or the reverse when
lower is better) at the policy's confidence exceeds `max_drop`, and PASSES when the one-sided
upper bound is within it — a non-inferiority test. Binary outcomes use Newcombe's hybrid score
bounds, real ones Welch's t bounds (server.outcomes.stats).
"""

from __future__ import annotations

from server.outcomes.merged import OutcomeSource
from server.outcomes.stats import Sample, difference, uniform_confidence
from server.promotion.decision import Check, CheckStatus, Evidence
from server.promotion.outcome_gate import OutcomeGate, OutcomeWindow
from server.promotion.policy import SHADOW_STEP, Policy

__all__ = ["gather", "outcome_checks"]


def gather(
    source: OutcomeSource, policy: Policy, model: str, stable: str, candidate: str
) -> tuple[OutcomeWindow, ...]:
    """The policy's outcomes for stable and candidate, each over its gate's window (in a
    fleet, every live replica's reports: fleet.outcomes)."""
    out = []
    replicas = len(source.replicas(model)) if policy.outcomes else 0
    for gate in policy.outcomes:
        s = source.series(model, stable, gate.name, gate.window_s).randomized
        c = source.series(model, candidate, gate.name, gate.window_s).randomized
        out.append(
            OutcomeWindow(
                gate.name, gate.kind, s.n, s.total, s.total_sq, c.n, c.total, c.total_sq, replicas
            )
        )
    return tuple(out)


def _fmt(kind: str, x: float) -> str:
    return f"{x * 100:.2f}%" if kind == "binary" else f"{x:.4g}"


def _points(kind: str, x: float) -> str:
    x += 0.0  # no "-0.00"
    return f"{x * 100:.2f} points" if kind == "binary" else f"{x:.4g}"


def _describe(kind: str, sample: Sample) -> str:
    if sample.mean is None:
        return "no reports"
    if kind == "binary":
        return f"{_fmt(kind, sample.mean)} ({round(sample.total)} of {sample.n})"
    return f"mean {_fmt(kind, sample.mean)} (n={sample.n})"


def outcome_check(p: Policy, gate: OutcomeGate, w: OutcomeWindow | None, live: bool) -> Check:
    """One outcome gate's verdict; `live`: the candidate serves callers (not the shadow
    step), so a missing outcome holds the step when the gate is required."""
    name, required = f"outcome:{gate.name}", gate.required and live
    if w is None or w.kind != gate.kind:
        detail = f"no {gate.kind} reports of outcome '{gate.name}'"
        return Check(name, CheckStatus.NO_DATA, None, gate.max_drop, detail, required)
    fleet = f" (outcome reports of {w.replicas} replicas)" if w.replicas > 1 else ""
    s = Sample(gate.kind, w.stable_n, w.stable_total, w.stable_total_sq)
    c = Sample(gate.kind, w.candidate_n, w.candidate_total, w.candidate_total_sq)
    head = f"{gate.name}: candidate {_describe(gate.kind, c)} vs stable {_describe(gate.kind, s)}"
    need = gate.min_samples
    n = min(s.n, c.n)
    diff = difference(s, c, uniform_confidence(n, need, p.confidence)) if n >= need else None
    if diff is None:
        detail = f"{head}: needs {need} randomized reports each — not enough data{fleet}"
        return Check(name, CheckStatus.NO_DATA, None, gate.max_drop, detail, required)
    # The drop is how much worse the candidate is: stable - candidate when higher is better.
    if gate.higher_is_better:
        drop, lo, hi = -diff.estimate, -diff.upper, -diff.lower
    else:
        drop, lo, hi = diff.estimate, diff.lower, diff.upper
    detail = (
        f"{head}: drop {_points(gate.kind, drop)} ({p.confidence * 100:g}% time-uniform bounds"
        f" {_points(gate.kind, lo)} to {_points(gate.kind, hi)}) vs max drop"
        f" {_points(gate.kind, gate.max_drop)}"
    )
    if lo > gate.max_drop:
        status = CheckStatus.FAIL
        detail += ": the lower bound is above the max drop"
    elif hi <= gate.max_drop:
        status = CheckStatus.PASS
    else:
        status = CheckStatus.NO_DATA
        detail += ": upper bound not yet within the max drop"
    return Check(name, status, drop, gate.max_drop, detail + fleet, required)


def outcome_checks(p: Policy, ev: Evidence) -> list[Check]:
    """A check per outcome gate of the policy."""
    found = {w.name: w for w in ev.outcomes}
    live = ev.step_index != SHADOW_STEP
    return [outcome_check(p, gate, found.get(gate.name), live) for gate in p.outcomes]
