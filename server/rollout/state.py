"""The rollout stage machine: per-model state, pure transitions, and the routing table it publishes.

Everything here is pure: no I/O, no clock, no locks. `RolloutController` (rollout.controller)
owns the state and persists it; rollout.publisher publishes the tables that `build_table` makes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

from server.errors import InvalidInput, InvalidTransition, shorten
from server.rollout.router import (
    PPM,
    CandidateRouting,
    CohortRule,
    ModelRouting,
    RoutingTable,
    Stage,
)

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

JSONValue: TypeAlias = (
    "bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
)


class Phase(enum.StrEnum):
    IDLE = "idle"  # only a stable version
    SHADOW = "shadow"  # candidate runs on sampled traffic off the request path; canary weight 0
    CANARY = "canary"  # candidate serves canary_ppm of keyed traffic (and may also shadow)
    ROLLED_BACK = "rolled_back"  # the last candidate was rolled back; routes like IDLE


_ACTIVE = frozenset({Phase.SHADOW, Phase.CANARY})


def _freeze(value: Any, where: str) -> JSONValue:
    """Deep-copy a JSON-able value into immutable containers so a frozen state stays frozen."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not representable in JSON")
        return value
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {k!r} is not a string")
            out[k] = _freeze(v, f"{where}.{k}")
        return MappingProxyType(out)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise ValueError(f"{where}: {type(value).__name__} is not JSON-able")


def _json_default(value: object) -> object:
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _check_ppm(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= PPM:
        raise InvalidInput(
            f"{name} must be an integer in 0..{PPM} (parts per million), got {value!r}"
        )


@dataclass(frozen=True)
class RolloutState:
    """One model's rollout; invariants are checked on construction so a corrupt row fails loudly."""

    model: str
    stable: str
    candidate: str | None = None
    phase: Phase = Phase.IDLE
    canary_ppm: int = 0
    shadow_ppm: int = 0
    paused: bool = False  # only the automatic promotion controller honours it
    salt: str = ""
    rollout_id: int = 0
    revision: int = 1
    previous_stable: str | None = None
    previous_stable_until: float | None = None
    cohort_rules: tuple[CohortRule, ...] = ()
    # Excluded from hashing because the frozen mapping is unhashable; still compared.
    policy: Mapping[str, JSONValue] | None = field(default=None, hash=False)
    last_candidate: str | None = None
    updated_at: float = 0.0
    # A manual rollout's guard rails: the policy whose gates may roll it back (None: no guard).
    # Excluded from hashing like `policy`.
    guard: Mapping[str, JSONValue] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase", Phase(self.phase))
        object.__setattr__(self, "cohort_rules", tuple(self.cohort_rules))
        # Floats always, so an int clock reading cannot make equal states serialize differently.
        object.__setattr__(self, "updated_at", float(self.updated_at))
        if self.previous_stable_until is not None:
            object.__setattr__(self, "previous_stable_until", float(self.previous_stable_until))
        if self.policy is not None:
            if not isinstance(self.policy, Mapping):
                raise ValueError("policy must be a JSON object or None")
            object.__setattr__(self, "policy", _freeze(self.policy, "policy"))
        if self.guard is not None:
            if not isinstance(self.guard, Mapping):
                raise ValueError("guard must be a JSON object or None")
            if self.policy is not None:
                raise ValueError("an automatic rollout's policy is its guard: not both")
            object.__setattr__(self, "guard", _freeze(self.guard, "guard"))
        for name in ("canary_ppm", "shadow_ppm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= PPM:
                raise ValueError(f"{name}={value!r} is outside 0..{PPM}")
        if self.revision < 0 or self.rollout_id < 0:
            raise ValueError("revision and rollout_id must not be negative")
        if (self.candidate is not None) != (self.phase in _ACTIVE):
            raise ValueError(f"phase {self.phase} with candidate {self.candidate!r}")
        if self.candidate is None:
            if self.canary_ppm or self.shadow_ppm or self.paused or self.cohort_rules or self.guard:
                raise ValueError("weights, pause, cohort rules and guard need an active candidate")
        elif self.candidate == self.stable:
            raise ValueError(f"candidate {self.candidate!r} equals stable")
        elif (self.phase is Phase.CANARY) != (self.canary_ppm > 0):
            raise ValueError(f"phase {self.phase} with canary_ppm={self.canary_ppm}")
        if (self.previous_stable is None) != (self.previous_stable_until is None):
            raise ValueError("previous_stable and previous_stable_until go together")

    @property
    def active(self) -> bool:
        """True while a candidate is in SHADOW or CANARY."""
        return self.phase in _ACTIVE

    def to_json(self) -> str:
        """Compact JSON with keys in field order, so equal states give equal strings."""
        doc: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "cohort_rules":
                value = [{"key": r.key, "value": r.value, "target": str(r.target)} for r in value]
            elif f.name == "phase":
                value = str(value)
            doc[f.name] = value
        return json.dumps(doc, separators=(",", ":"), allow_nan=False, default=_json_default)

    @classmethod
    def from_json(cls, text: str | bytes) -> RolloutState:
        """Inverse of to_json. Raises ValueError on unknown keys or broken invariants."""
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("rollout state JSON must be an object")
        unknown = set(doc) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown rollout state keys: {sorted(unknown)}")
        rules = doc.pop("cohort_rules", [])
        doc["cohort_rules"] = tuple(
            CohortRule(key=r["key"], value=r["value"], target=Stage(r["target"])) for r in rules
        )
        return cls(**doc)


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


def initial_state(model: str, stable: str, now: float) -> RolloutState:
    """The state of a model seen for the first time: its default version is stable, no rollout."""
    return RolloutState(model=model, stable=stable, updated_at=now)


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
                and state.policy == (_freeze(command.policy, "policy") if command.policy else None)
                and state.guard == (_freeze(command.guard, "guard") if command.guard else None)
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


def build_table(
    states: Mapping[str, RolloutState],
    ready: Mapping[str, frozenset[str]],
    allow_pinning: bool,
    revision: int,
) -> RoutingTable:
    """The routing snapshot for `states`; a CandidateRouting only where a candidate is active."""
    models: dict[str, ModelRouting] = {}
    for name in sorted(states):
        s = states[name]
        rollout = None
        if s.candidate is not None:
            rollout = CandidateRouting(
                candidate=s.candidate,
                salt=s.salt,
                canary_ppm=s.canary_ppm,
                shadow_ppm=s.shadow_ppm,
                cohort_rules=s.cohort_rules,
            )
        here = ready.get(name, frozenset())
        models[name] = ModelRouting(
            stable=s.stable,
            rollout=rollout,
            ready=here,
            candidate_ready=s.candidate is None or s.candidate in here,
        )
    return RoutingTable(
        models=MappingProxyType(models), allow_pinning=allow_pinning, revision=revision
    )
