"""One unit of shadow work and how it ended: the job, its outcome and its result."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from server.shadow.comparison import Comparison, ComparisonPolicy

__all__ = [
    "CandidateRunner",
    "PolicyFor",
    "ResultListener",
    "ShadowJob",
    "ShadowOutcome",
    "ShadowResult",
    "Shed",
]

Arrays: TypeAlias = Mapping[str, npt.NDArray[np.generic]]
PolicyFor: TypeAlias = Callable[[str], ComparisonPolicy]


class Shed(Exception):
    """Raised by a candidate runner that has no idle capacity for a shadow run: the job is
    dropped with `reason` (ShadowReport.dropped_by_reason), not counted as an error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CandidateRunner(Protocol):
    """What shadow needs of the candidate: run it (serving's Runner satisfies this)."""

    def run(
        self, outputs: Sequence[str], feeds: dict[str, npt.NDArray[np.generic]]
    ) -> list[npt.NDArray[np.generic]]: ...


@dataclass(frozen=True, eq=False)  # identity equality: array fields do not compare as bools
class ShadowJob:
    """One request to run again on the candidate; feeds and primary are the primary's own arrays."""

    model: str
    candidate: str  # the candidate version (Route.shadow_version)
    runner: CandidateRunner
    feeds: Arrays  # not mutated after submit; read-only is fine
    output_names: Sequence[str]
    primary: Arrays  # output name -> what the caller was sent
    request_id: str = ""
    routing_key: str | None = None
    enqueued_at: float = field(default_factory=time.perf_counter)  # on the executor's clock
    trace_context: object = None  # opaque: lets telemetry link the shadow span to the primary


class ShadowOutcome(enum.StrEnum):
    """How one shadow job ended (SLOW and EXPIRED both count as timeouts)."""

    OK = "ok"
    SLOW = "slow"  # completed and compared, but took longer than timeout_s
    EXPIRED = "expired"  # waited in the queue longer than timeout_s; not run
    ERROR = "error"  # the candidate raised
    SHED = "shed"  # the candidate's scheduler had no idle slot for it: dropped, not run


@dataclass(frozen=True, eq=False)
class ShadowResult:
    """What one shadow job came to; handed to the executor's `on_result` listener."""

    job: ShadowJob
    outcome: ShadowOutcome
    queued_s: float
    latency_s: float | None = None  # the candidate's run, when it ran
    comparison: Comparison | None = None  # when it returned outputs
    error: str | None = None


ResultListener: TypeAlias = Callable[[ShadowResult], None]
