"""What a version's scheduler enforces: request classes, limits by role, the model's scheduling
policy, and the two refusals (queue full, queue timeout)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from server.errors import DeadlineExceeded, Overloaded
from server.rollout.router import Stage

__all__ = ["Limits", "Policy", "Priority", "QueueFull", "QueueTimeout"]


class Priority(enum.IntEnum):
    """Request classes of a scheduler, highest first."""

    PRIMARY = 0  # a caller waits for the answer
    SHADOW = 1  # a comparison run off the request path: only on idle capacity


@dataclass(frozen=True)
class Limits:
    """How much of the machine one version may hold, and how long its callers may wait."""

    instances: int = 1
    """Runs of this version in progress at once."""
    max_queue_size: int = 64
    """Requests waiting for a slot at most; one more is refused at once."""
    queue_timeout_s: float = 5.0
    """Longest wait in the queue (0: no limit)."""
    shadow_queue_size: int = 4
    """Shadow runs waiting for an idle slot at most."""

    def __post_init__(self) -> None:
        if self.instances < 1 or self.max_queue_size < 0 or self.shadow_queue_size < 0:
            raise ValueError("need instances >= 1 and queue sizes >= 0")
        if self.queue_timeout_s < 0:
            raise ValueError("need queue_timeout_s >= 0")


@dataclass(frozen=True)
class Policy:
    """Scheduling of one model: limits by role, batching, and what an overloaded candidate does."""

    stable: Limits = field(default_factory=Limits)
    candidate: Limits = field(
        default_factory=lambda: Limits(instances=1, max_queue_size=4, queue_timeout_s=0.05)
    )
    max_batch_size: int = 16
    """Rows one run may merge (0 or 1: no batching); only models that can batch do."""
    max_queue_delay_s: float = 0.004
    """Longest a batch's leader holds its slot waiting for company (0: never waits). It waits
    only when a run costs enough for batching to pay and requests overlap, and stops earlier
    once the requests it waits for are here or a step of two mean arrival gaps brings nobody
    (server.serving.gathering)."""
    candidate_fallback: bool = True
    """A candidate request refused by its queue is served by stable (else it fails)."""

    def __post_init__(self) -> None:
        if self.max_queue_delay_s < 0:
            raise ValueError("need max_queue_delay_s >= 0")

    def limits(self, stage: Stage) -> Limits:
        return self.stable if stage is Stage.STABLE else self.candidate


class QueueFull(Overloaded):
    """Every slot of the version is busy and its queue holds max_queue_size requests."""

    def __init__(self, model: str, version: str, size: int, shadow: bool = False) -> None:
        self.model, self.version = model, version
        what = "shadow queue" if shadow else "queue"
        super().__init__(
            f"model '{model}' version '{version}' is overloaded: its {what} is full"
            f" ({size} requests waiting); retry later"
        )


class QueueTimeout(DeadlineExceeded):
    """The request waited in the version's queue longer than queue_timeout_s."""

    def __init__(self, model: str, version: str, waited_s: float, limit_s: float) -> None:
        self.model, self.version = model, version
        super().__init__(
            f"model '{model}' version '{version}' is overloaded: the request waited"
            f" {waited_s * 1e3:.1f} ms in its queue (limit {limit_s * 1e3:.1f} ms); retry later"
        )
