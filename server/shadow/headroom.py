"""CPU headroom of this process: its recent CPU use as a share of the cores it may run on.

Shadow work runs on idle capacity: `CpuMeter.busy()` says when the process (request threads
and shadow workers together) has used more than `max_share` of its usable cores over the
last window, and the shadow sheds (reason `cpu_busy`) until it drops again. Cheap to ask:
one monotonic clock read per call, the process CPU clock once per window.
"""

from __future__ import annotations

import os
import time

from server.clock import Clock

__all__ = ["CpuMeter"]


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class CpuMeter:
    """Process CPU use over windows of `window_s`, compared with `max_share` of the cores."""

    def __init__(
        self,
        max_share: float,
        window_s: float = 0.05,
        cores: int | None = None,
        wall: Clock = time.monotonic,
        cpu: Clock = time.process_time,
    ) -> None:
        self.max_share = max_share
        self._window_s = window_s
        self._cores = cores  # None: the process's CPU affinity, read every window
        self._wall, self._cpu_clock = wall, cpu
        self._at = wall()
        self._cpu = cpu()
        self.share = 0.0  # of the last complete window

    def busy(self) -> bool:
        """Whether the last complete window used more than max_share of the usable cores
        (never, with max_share 1.0)."""
        if self.max_share >= 1.0:
            return False
        now = self._wall()
        elapsed = now - self._at
        if elapsed >= self._window_s:
            cpu = self._cpu_clock()
            cores = self._cores or _usable_cores()
            self.share = (cpu - self._cpu) / elapsed / cores
            self._at, self._cpu = now, cpu
        return self.share > self.max_share
