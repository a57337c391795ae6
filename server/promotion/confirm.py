"""Confirmation before acting: an outside check (the pre-promotion hook) that may hold a step.

The controller asks its `Confirm` before it acts on an ADVANCE or PROMOTE decision of an
automatic rollout; a refusal turns the decision into a HOLD whose reason and extra check say
why, so `rollout explain`, the audit log and the notifications all show it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeAlias

from server.promotion.decision import Action, Check, CheckStatus, Decision

__all__ = ["CONFIRM_CHECK", "Confirm", "held"]

#: Takes the decision about to be acted on; returns None to go ahead, or why it must hold.
Confirm: TypeAlias = Callable[[Decision], str | None]

CONFIRM_CHECK = "pre_promotion_hook"


def held(decision: Decision, why: str) -> Decision:
    """`decision` turned into a hold because of `why` (the gates' verdicts stay as they were)."""
    what = "promotion" if decision.action is Action.PROMOTE else "the next step"
    return replace(
        decision,
        action=Action.HOLD,
        reason=f"holding {what}: {why}",
        next_step_index=None,
        next_canary_ppm=None,
        next_shadow_ppm=None,
        checks=(*decision.checks, Check(CONFIRM_CHECK, CheckStatus.FAIL, None, None, why)),
    )
