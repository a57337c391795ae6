"""The one Clock: a callable returning seconds; real clocks are `time.time` and friends."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Clock"]


class Clock(Protocol):
    """Seconds as a float: wall time (`time.time`) or a monotonic reading (`time.perf_counter`).

    Each user says which kind it expects; server.testing.FakeClock stands in for either.
    """

    def __call__(self) -> float: ...
