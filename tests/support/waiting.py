"""Wait for the event itself, never for a fixed time: `wait_for(predicate)`.

A test that sleeps and then checks is flaky on a loaded machine (the event came later) or
vacuous (the check holds before anything happened). Waiting on the predicate with a generous
deadline is neither: it returns as soon as the event happens and fails loudly if it never does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WAIT", "wait_for"]

T = TypeVar("T")

#: The deadline for events that normally take milliseconds (generous: a loaded 2-core machine).
WAIT = 10.0
_POLL = 0.005


def wait_for(
    predicate: Callable[[], T],
    timeout: float = WAIT,
    *,
    message: str = "",
    nudge: Callable[[], object] | None = None,
    poll: float = _POLL,
) -> T:
    """Return `predicate()`'s first truthy value; AssertionError if `timeout` seconds pass first.

    `nudge`, if given, is called between polls (e.g. a write that a watch stream should see,
    repeated until the stream is known to be live).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"not within {timeout:g} s: {what}")
        if nudge is not None:
            nudge()
        time.sleep(poll)
