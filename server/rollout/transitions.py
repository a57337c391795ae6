"""The stage machine's transitions: `apply` a command to a rollout state, checking weights,
the candidate's readiness and whether the current phase allows the command.

Pure: no I/O, no clock, no locks. `RolloutController` (rollout.controller) owns the states,
persists what `apply` returns and publishes the routing table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from server.errors import InvalidInput, InvalidTransition, shorten
from server.rollout.commands import (
    Command,
    Pause,
    Promote,
    Resume,
    Rollback,
    SetShadow,
    SetWeight,
    StartRollout,
    Undo,
)
from server.rollout.documents import freeze
from server.rollout.record import Phase, RolloutState
from server.rollout.router import PPM

__all__ = ["apply"]


def _check_ppm(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= PPM:
        raise InvalidInput(
            f"{name} must be an integer in 0..{PPM} (parts per million), got {value!r}"
        )


def _refuse(state: RolloutState, action: str, why: str) -> InvalidTransition:
    return InvalidTransition(state.model, str(state.phase), action, why)


def _no_candidate_why(state: RolloutState) -> str:
    why = "there is no candidate; start a rollout first"
    if state.previous_stable is not None:
        # The one case where an operator wants "rollback" without a candidate: undo a promotion.
        why += (
            f" (to return to the previous stable '{state.previous_stable}', undo the promotion:"
            " `canaryserve rollout undo`)"
        )
    return why


def apply(
    state: RolloutState,
    command: Command,
    *,
    now: float,
    new_salt: str,
    ready: frozenset[str],
    grace_seconds: float,
) -> RolloutState:
    """Return the state after `command`; the identical object when it would change nothing.

    Raises InvalidInput for out-of-range values and InvalidTransition for a command the current
    phase does not allow. `new_salt` is used only by StartRollout, `ready` only to check its
    candidate (and Undo's previous stable), `grace_seconds` only by Promote.
    """
    action = command.action
    if isinstance(command, Undo):
        return _undo(state, now=now, ready=ready)
    if isinstance(command, StartRollout):
        _check_ppm("shadow_ppm", command.shadow_ppm)
        _check_ppm("canary_ppm", command.canary_ppm)
        if not command.candidate:
            raise InvalidInput("candidate must name a version")
        if state.active:
            same = (
                state.candidate == command.candidate
                and state.canary_ppm == command.canary_ppm
                and state.shadow_ppm == command.shadow_ppm
                and state.cohort_rules == tuple(command.cohort_rules)
                and state.policy == (freeze(command.policy, "policy") if command.policy else None)
                and state.guard == (freeze(command.guard, "guard") if command.guard else None)
            )
            if same:
                return state  # a retried start (e.g. after a timeout) changes nothing
            raise _refuse(
                state,
                action,
                f"candidate '{state.candidate}' is active; promote or roll it back first",
            )
        if command.candidate == state.stable:
            raise _refuse(
                state, action, f"version '{state.stable}' is already stable; pick another version"
            )
        if command.candidate not in ready:
            listed = ", ".join(sorted(ready)) or "none"
            raise _refuse(
                state,
                action,
                f"version '{shorten(command.candidate)}' is not loaded and ready (ready: {listed});"
                " load it first",
            )
        # Both weights 0 is allowed: a SHADOW-phase candidate that sees no traffic yet, the
        # "loaded" step an operator can start from before turning sampling up.
        return dataclasses.replace(
            state,
            candidate=command.candidate,
            phase=Phase.CANARY if command.canary_ppm > 0 else Phase.SHADOW,
            canary_ppm=command.canary_ppm,
            shadow_ppm=command.shadow_ppm,
            paused=False,
            salt=new_salt,
            rollout_id=state.rollout_id + 1,
            cohort_rules=tuple(command.cohort_rules),
            policy=command.policy,
            guard=command.guard,
            revision=state.revision + 1,
            updated_at=now,
        )

    if isinstance(command, SetWeight):
        _check_ppm("canary_ppm", command.canary_ppm)
    elif isinstance(command, SetShadow):
        _check_ppm("shadow_ppm", command.shadow_ppm)

    if isinstance(command, Rollback) and state.phase is Phase.ROLLED_BACK:
        return state
    if not state.active:
        raise _refuse(state, action, _no_candidate_why(state))

    changes: dict[str, Any]
    if isinstance(command, SetWeight):
        if command.canary_ppm == state.canary_ppm:
            return state
        phase = Phase.CANARY if command.canary_ppm > 0 else Phase.SHADOW
        changes = {"canary_ppm": command.canary_ppm, "phase": phase}
    elif isinstance(command, SetShadow):
        if command.shadow_ppm == state.shadow_ppm:
            return state
        changes = {"shadow_ppm": command.shadow_ppm}
    elif isinstance(command, Pause | Resume):
        paused = isinstance(command, Pause)
        if state.paused == paused:
            return state
        changes = {"paused": paused}
    else:
        # Promote or Rollback: the rollout ends; its per-rollout settings end with it.
        changes = {
            "candidate": None,
            "canary_ppm": 0,
            "shadow_ppm": 0,
            "paused": False,
            "cohort_rules": (),
            "policy": None,
            "guard": None,
            "last_candidate": state.candidate,
        }
        if isinstance(command, Promote):
            assert state.candidate is not None  # guaranteed by state.active
            changes |= {
                "phase": Phase.IDLE,
                "stable": state.candidate,
                "previous_stable": state.stable,
                "previous_stable_until": now + grace_seconds,
            }
        else:
            changes["phase"] = Phase.ROLLED_BACK
    return dataclasses.replace(state, revision=state.revision + 1, updated_at=now, **changes)


def _undo(state: RolloutState, *, now: float, ready: frozenset[str]) -> RolloutState:
    action = Undo.action
    if state.active:
        raise _refuse(
            state,
            action,
            f"candidate '{state.candidate}' is active; roll it back first, then undo",
        )
    previous, until = state.previous_stable, state.previous_stable_until
    if previous is None or until is None:
        raise _refuse(state, action, "there is no promotion to undo")
    if now > until:
        raise _refuse(
            state,
            action,
            f"the rollback grace period after promoting '{state.stable}' ended"
            f" {now - until:.0f} s ago; start a rollout of version '{previous}' instead",
        )
    if previous not in ready:
        raise _refuse(
            state, action, f"the previous stable '{previous}' is not loaded and ready; load it"
        )
    return dataclasses.replace(
        state,
        stable=previous,
        phase=Phase.ROLLED_BACK,
        previous_stable=None,
        previous_stable_until=None,
        last_candidate=state.stable,
        revision=state.revision + 1,
        updated_at=now,
    )
