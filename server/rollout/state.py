"""The rollout stage machine's public names, in one place: per-model state, the commands, the
pure transitions, and the routing table they give.

Each part lives in the module that owns it: documents (the JSON documents a state carries),
record (`RolloutState`, `Phase`, their invariants and JSON form), commands, transitions
(`apply`) and tables (`build_table`). Everything here is pure: no I/O, no clock, no locks.
`RolloutController` (rollout.controller) owns the state and persists it; rollout.publisher
publishes the tables that `build_table` makes.
"""

from __future__ import annotations

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
from server.rollout.documents import JSONValue
from server.rollout.record import Phase, RolloutState, initial_state
from server.rollout.tables import build_table
from server.rollout.transitions import apply

__all__ = [
    "Command",
    "JSONValue",
    "Pause",
    "Phase",
    "Promote",
    "Resume",
    "Rollback",
    "RolloutState",
    "SetShadow",
    "SetWeight",
    "StartRollout",
    "Undo",
    "apply",
    "build_table",
    "initial_state",
]
