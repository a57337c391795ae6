"""The commands of the stage machine: what an operator or the promotion controller asks of a
model's rollout. Plain data; rollout.transitions decides what each does to a state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from server.rollout.documents import JSONValue
from server.rollout.router import CohortRule

__all__ = [
    "Command",
    "Pause",
    "Promote",
    "Resume",
    "Rollback",
    "SetShadow",
    "SetWeight",
    "StartRollout",
    "Undo",
]


@dataclass(frozen=True)
class StartRollout:
    action: ClassVar[str] = "start"
    candidate: str
    shadow_ppm: int = 0
    canary_ppm: int = 0
    cohort_rules: tuple[CohortRule, ...] = ()
    policy: Mapping[str, JSONValue] | None = field(default=None, hash=False)
    # Guard rails of a manual rollout (a policy document whose failing gates roll it back).
    guard: Mapping[str, JSONValue] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class SetWeight:
    action: ClassVar[str] = "set_weight"
    canary_ppm: int


@dataclass(frozen=True)
class SetShadow:
    action: ClassVar[str] = "set_shadow"
    shadow_ppm: int


@dataclass(frozen=True)
class Promote:
    action: ClassVar[str] = "promote"


@dataclass(frozen=True)
class Rollback:
    action: ClassVar[str] = "rollback"


@dataclass(frozen=True)
class Pause:
    action: ClassVar[str] = "pause"


@dataclass(frozen=True)
class Resume:
    action: ClassVar[str] = "resume"


@dataclass(frozen=True)
class Undo:
    """Undo the last promotion within the rollback grace period: the previous stable is
    stable again (one transaction, like Promote)."""

    action: ClassVar[str] = "undo"


Command: TypeAlias = (
    StartRollout | SetWeight | SetShadow | Promote | Rollback | Pause | Resume | Undo
)
