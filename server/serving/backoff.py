"""When to restart an isolated version's process after it died: exponential backoff that
forgets a death once the process has served long enough since."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RestartBackoff"]


@dataclass
class RestartBackoff:
    """Delays before successive restarts: `first`, doubling up to `longest`; a process that
    lived `forgive_after` seconds resets the sequence (so a crash an hour after the last one
    restarts at once, a crash loop slows down)."""

    first: float = 0.1
    longest: float = 10.0
    forgive_after: float = 30.0
    _next: float = 0.0
    restarts: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.longest:
            raise ValueError("need 0 < first <= longest")
        self._next = self.first

    def delay(self, started: float, died: float) -> float:
        """Seconds to wait before restarting a process started at `started` that died at
        `died` (the same clock); advances the sequence."""
        if died - started >= self.forgive_after:
            self._next = self.first
        delay = self._next
        self._next = min(self._next * 2, self.longest)
        self.restarts += 1
        return delay
