"""A request in a version's scheduler: what it asks, where it waits, and what it gets back."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

from server.serving.limits import Priority
from server.serving.runner import Arrays

__all__ = ["Queued"]

_Arrays = list[npt.NDArray[np.generic]]


class Queued:
    """One request: its feeds, its class and arrival time, its batch key and rows, and its
    result or error once a leader has run it."""

    __slots__ = (
        "enqueued",
        "error",
        "feeds",
        "key",
        "lead",
        "outputs",
        "priority",
        "result",
        "rows",
        "wake",
    )

    def __init__(
        self, outputs: Sequence[str], feeds: Arrays, priority: Priority, now: float
    ) -> None:
        self.outputs = outputs
        self.feeds = feeds
        self.priority = priority
        self.enqueued = now
        self.key: Hashable | None = None
        self.rows = 0
        # A queued request sleeps on its own lock, taken once here and released once by
        # whoever finishes it or hands it the slot (lighter than an Event).
        self.wake: threading.Lock | None = None
        self.result: _Arrays | None = None
        self.error: BaseException | None = None
        self.lead = False

    def signal(self) -> None:
        wake = self.wake
        assert wake is not None
        wake.release()

    def outcome(self) -> _Arrays:
        """The outputs, or the run's error raised."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result
