"""Which version a rollout command needs ready everywhere before it may commit.

In a fleet, a command that sends a version more traffic (starting a rollout, raising its
weight or shadow rate, promoting it, undoing a promotion) must not commit while some live
replica cannot serve that version; the fleet's admission check (fleet.repository) asks
`needs_ready()` which version that is. Commands that take traffic away (step down, rollback,
pause, kill switch) never wait for anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from server.rollout.state import (
    Command,
    Promote,
    RolloutState,
    SetShadow,
    SetWeight,
    StartRollout,
    Undo,
)

__all__ = ["Admission", "needs_ready"]

#: Called before a command commits: raises (FailedPrecondition) to refuse it.
Admission: TypeAlias = Callable[[RolloutState, Command], None]


def needs_ready(before: RolloutState, command: Command) -> str | None:
    """The version `command` sends more traffic to, given the state before it; else None."""
    if isinstance(command, StartRollout):
        return command.candidate
    candidate = before.candidate
    if isinstance(command, SetWeight) and command.canary_ppm > before.canary_ppm:
        return candidate
    if isinstance(command, SetShadow) and command.shadow_ppm > before.shadow_ppm:
        return candidate
    if isinstance(command, Promote):
        return candidate
    if isinstance(command, Undo):
        return before.previous_stable
    return None
