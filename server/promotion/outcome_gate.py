"""Outcome gates: a policy's `outcomes` entries, and the outcome evidence a decision reads."""

from __future__ import annotations

from dataclasses import dataclass

from server.promotion.documents import (
    Document,
    InvalidPromotionInput,
    check_int,
    check_list,
    check_number,
)

__all__ = ["OutcomeGate", "OutcomeWindow", "outcome_gates"]

_KINDS = ("binary", "real")


@dataclass(frozen=True)
class OutcomeGate(Document):
    """The candidate's outcome `name` must not be worse than stable's by more than
    `max_drop` (absolute: rate points for a binary outcome, the value's unit for a real
    one), judged with one-sided bounds at the policy's confidence."""

    name: str
    kind: str = "binary"  # "binary" (a rate of successes) or "real" (a mean of values)
    max_drop: float = 0.0
    min_samples: int = 500  # randomized reports per version before the gate may pass or fail
    higher_is_better: bool = True  # False: an increase is the bad direction (e.g. returns)
    window_s: float = 3600.0  # how far back each version's outcomes count
    required: bool = True  # False: no_data does not hold the step (a fail still counts)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidPromotionInput("outcomes[].name must name an outcome")
        if self.kind not in _KINDS:
            raise InvalidPromotionInput(
                f"outcome '{self.name}': kind must be one of {', '.join(_KINDS)}, got {self.kind!r}"
            )
        high = 1.0 if self.kind == "binary" else float("inf")
        put = object.__setattr__
        put(
            self,
            "max_drop",
            check_number(f"outcome '{self.name}' max_drop", self.max_drop, 0, high),
        )
        check_int(f"outcome '{self.name}' min_samples", self.min_samples, 2)
        put(self, "window_s", check_number(f"outcome '{self.name}' window_s", self.window_s, 1.0))
        for flag in ("higher_is_better", "required"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidPromotionInput(f"outcome '{self.name}' {flag} must be true or false")


def outcome_gates(value: object) -> tuple[OutcomeGate, ...]:
    """A policy's `outcomes` list, parsed; names must differ."""
    gates = tuple(OutcomeGate.from_dict(g) for g in check_list("outcomes", value))
    names = [g.name for g in gates]
    if len(set(names)) != len(names):
        raise InvalidPromotionInput(f"outcomes name an outcome twice: {names}")
    return gates


@dataclass(frozen=True)
class OutcomeWindow(Document):
    """One outcome of stable and candidate over the gate's window: randomized reports, their
    sum and sum of squares (successes, for a binary outcome), and how many replicas' reports
    they merge."""

    name: str
    kind: str
    stable_n: int
    stable_total: float
    stable_total_sq: float
    candidate_n: int
    candidate_total: float
    candidate_total_sq: float
    replicas: int = 0  # in a fleet: the replicas whose outcome reports are merged (0: alone)

    def __post_init__(self) -> None:
        check_int("replicas", self.replicas, 0)
        check_int("stable_n", self.stable_n, 0)
        check_int("candidate_n", self.candidate_n, 0)
        for name in ("stable_total", "stable_total_sq", "candidate_total", "candidate_total_sq"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), -1e300))
