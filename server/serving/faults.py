"""Injected faults for drills: a Runner that wraps another and fails or slows some calls.

Used only for a drill's candidate, a copy of the stable version registered under a new
number: the faults are in the candidate's path and nowhere else.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from server.rollout.router import PPM
from server.serving.runner import Arrays, Runner
from server.serving.signature import Signature

__all__ = ["FaultyRunner", "InjectedFault"]


class InjectedFault(RuntimeError):
    """The error a drill injects (the caller sees the model fail, as a real fault would)."""


class FaultyRunner:
    """`inner`, but `error_ppm` of calls raise InjectedFault and every call takes
    `added_latency_ms` longer."""

    def __init__(
        self,
        inner: Runner,
        *,
        error_ppm: int = 0,
        added_latency_ms: float = 0.0,
        draw: Callable[[], float] = random.random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 <= error_ppm <= PPM or added_latency_ms < 0:
            raise ValueError("error_ppm must be in 0..1000000 and added_latency_ms >= 0")
        self._inner = inner
        self._error_ppm = error_ppm
        self._delay_s = added_latency_ms / 1000.0
        self._draw = draw
        self._sleep = sleep

    @property
    def signature(self) -> Signature:
        return self._inner.signature

    def run(self, outputs: Sequence[str], feeds: Arrays) -> list[npt.NDArray[np.generic]]:
        if self._delay_s:
            self._sleep(self._delay_s)
        if self._error_ppm and self._draw() * PPM < self._error_ppm:
            raise InjectedFault("drill: injected error")
        return self._inner.run(outputs, feeds)
