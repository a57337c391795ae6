"""What the promotion controller remembers of one rollout between evaluations (memory only):
failed checks and step-downs that carry over within a rollout, the operator's approval of the
current step, the latest decision and the reason of the last audited hold."""

from __future__ import annotations

from dataclasses import dataclass

from server.promotion.decision import Action, Decision
from server.rollout.state import RolloutState

__all__ = ["Track", "next_track"]


@dataclass
class Track:
    """One rollout's memory, valid for one revision of its state."""

    revision: int
    failed_checks: int = 0
    step_downs: int = 0
    stepped_down: bool = False  # this step began with a step-down
    approved: bool = False
    last: Decision | None = None
    last_reason: str = ""


def next_track(track: Track | None, state: RolloutState) -> Track:
    """The track for `state`: `track` itself while the revision is the same; otherwise a new
    step (or an operator's change) with a fresh approval, but failures carry over within one
    rollout so a flapping gate still reaches its threshold."""
    if track is not None and track.revision == state.revision:
        return track
    same_rollout = (
        track is not None
        and track.last is not None
        and (track.last.evidence.candidate_version == state.candidate)
    )
    kept = track if track is not None and same_rollout else None
    stepped_down = (
        kept is not None
        and kept.last is not None
        and kept.last.action is Action.STEP_DOWN
        and kept.last.next_canary_ppm == state.canary_ppm
    )
    return Track(
        revision=state.revision,
        failed_checks=kept.failed_checks if kept else 0,
        step_downs=kept.step_downs if kept else 0,
        stepped_down=stepped_down,
    )
