"""What a promotion decision's action becomes: the rollout commands, in the order the
promotion controller executes them (compare-and-set, one after the other)."""

from __future__ import annotations

from server.promotion.decision import Action, Decision
from server.rollout.state import Command, Promote, Rollback, SetShadow, SetWeight

__all__ = ["commands_for"]


def commands_for(decision: Decision, *, automatic: bool) -> list[Command]:
    """What `decision` asks of the rollout; none for a hold. Guard rails (not `automatic`)
    act only on a rollback: a manual rollout's steps and promotion stay the operator's."""
    commands: list[Command] = []
    if not automatic:
        if decision.action is Action.ROLLBACK:
            commands.append(Rollback())
    elif decision.action is Action.STEP_DOWN:
        assert decision.next_canary_ppm is not None
        commands.append(SetWeight(decision.next_canary_ppm))
    elif decision.action is Action.ADVANCE:
        # Shadow off before the weight goes up: the order keeps every state valid.
        if decision.next_shadow_ppm is not None:
            commands.append(SetShadow(decision.next_shadow_ppm))
        if decision.next_canary_ppm is not None:
            commands.append(SetWeight(decision.next_canary_ppm))
    elif decision.action is Action.PROMOTE:
        commands.append(Promote())
    elif decision.action is Action.ROLLBACK:
        commands.append(Rollback())
    return commands
