"""RolloutState: one model's durable rollout record (its phase, stable and candidate versions,
weights and per-rollout settings), the invariants checked on construction, and its JSON form.

Pure: no I/O, no clock. The transitions between states are rollout.transitions'.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from server.rollout.documents import JSONValue, freeze, json_default
from server.rollout.router import PPM, CohortRule, Stage

__all__ = ["Phase", "RolloutState", "initial_state"]


class Phase(enum.StrEnum):
    IDLE = "idle"  # only a stable version
    SHADOW = "shadow"  # candidate runs on sampled traffic off the request path; canary weight 0
    CANARY = "canary"  # candidate serves canary_ppm of keyed traffic (and may also shadow)
    ROLLED_BACK = "rolled_back"  # the last candidate was rolled back; routes like IDLE


_ACTIVE = frozenset({Phase.SHADOW, Phase.CANARY})


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
            object.__setattr__(self, "policy", freeze(self.policy, "policy"))
        if self.guard is not None:
            if not isinstance(self.guard, Mapping):
                raise ValueError("guard must be a JSON object or None")
            if self.policy is not None:
                raise ValueError("an automatic rollout's policy is its guard: not both")
            object.__setattr__(self, "guard", freeze(self.guard, "guard"))
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
        return json.dumps(doc, separators=(",", ":"), allow_nan=False, default=json_default)

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


def initial_state(model: str, stable: str, now: float) -> RolloutState:
    """The state of a model seen for the first time: its default version is stable, no rollout."""
    return RolloutState(model=model, stable=stable, updated_at=now)
