"""The evidence of one rollout's current step: the candidate's and the stable's windows since
the step began, the shadow comparison, the outcome gates' figures, and the step the rollout is
at (derived from its durable state, so it survives restarts)."""

from __future__ import annotations

from server.outcomes.merged import OutcomeSource
from server.promotion.decision import Evidence, VersionWindow
from server.promotion.evidence import EvidenceSource
from server.promotion.outcome_checks import gather
from server.promotion.policy import SHADOW_STEP, Policy
from server.promotion.tracks import Track
from server.rollout.state import Phase, RolloutState
from server.telemetry.windows import WindowSummary

__all__ = ["STABLE_LOOKBACK_S", "step_evidence", "step_of"]

#: When the stable saw too few calls during the step (high canary weights), its baseline looks
#: back this far instead.
STABLE_LOOKBACK_S = 600.0


def step_of(state: RolloutState, policy: Policy) -> int:
    """The policy step a rollout is at, derived from its durable state (survives restarts)."""
    if state.phase is Phase.SHADOW:
        return SHADOW_STEP
    below = [i for i, ppm in enumerate(policy.steps) if ppm <= state.canary_ppm]
    return below[-1] if below else 0


def _window(w: WindowSummary) -> VersionWindow:
    return VersionWindow(
        requests=w.requests,
        errors=w.errors,
        p50_ms=w.p50_ms,
        p95_ms=w.p95_ms,
        p99_ms=w.p99_ms,
        error_trace_ids=w.error_trace_ids,
        window_s=w.window_s,
    )


def step_evidence(
    windows: EvidenceSource,
    outcomes: OutcomeSource | None,
    state: RolloutState,
    policy: Policy,
    track: Track,
    now: float,
) -> Evidence:
    """Everything `decide()` (or `guard()`) judges `state`'s current step on, at `now`."""
    assert state.candidate is not None
    step_start = state.updated_at
    if track.stepped_down:
        # The failing step's calls in the window bucket the step-down fell in would count
        # against the lower step: its evidence starts at the next whole bucket.
        bucket = windows.bucket_s
        step_start = step_start - step_start % bucket + bucket if bucket > 0 else step_start
    candidate = windows.summary(
        state.model, state.candidate, window_s=now - step_start + 1.0, since=step_start
    )
    # Compare like with like: the stable over the same period, when it saw enough calls
    # (latency drifts with load); otherwise its recent past.
    stable = windows.summary(
        state.model, state.stable, window_s=now - step_start + 1.0, since=step_start
    )
    if stable.requests < policy.min_latency_samples:
        stable = windows.summary(state.model, state.stable, window_s=STABLE_LOOKBACK_S)
    return Evidence(
        model=state.model,
        stable_version=state.stable,
        candidate_version=state.candidate,
        step_index=step_of(state, policy),
        seconds_in_step=max(0.0, now - step_start),
        stable=_window(stable),
        candidate=_window(candidate),
        shadow=windows.shadow(state.model, state.candidate),
        failed_checks=track.failed_checks,
        approved=track.approved,
        step_downs=track.step_downs,
        now=now,
        outcomes=(
            gather(outcomes, policy, state.model, state.stable, state.candidate)
            if outcomes is not None
            else ()
        ),
        replicas=windows.replicas(state.model),
    )
