"""When a batch's leader waits for company: what a version learns from its arrivals and runs.

Pure bookkeeping, no threads and no clock of its own (the scheduler passes times in and holds
its lock around every call):

* `run_cpu_s`: the mean CPU time of a one-request run. Below `min_run_cpu_s` a leader never
  waits: the sleep and wake-ups of a wait cost about what batching a microsecond model saves;
* `overlap`: the share of requests that arrived while a run was busy. Below one half, callers
  come one at a time (one client, or a trickle), and a leader would wait for nobody;
* `peak`: how many requests were in the version at once lately (a decaying maximum): what a
  waiting leader waits for, at most a full batch;
* `gap_s`: the mean gap between requests arriving one after the other while a run is busy: a
  waiting leader gives up after two gaps in which nobody came.
"""

from __future__ import annotations

__all__ = ["MIN_RUN_CPU_S", "Company"]

#: A leader waits for company only when one request's run costs at least this much CPU.
MIN_RUN_CPU_S = 150e-6

_WEIGHT = 0.2  # of the newest sample in each moving mean
_PEAK_DECAY = 0.05  # requests per arrival by which an old peak fades


class Company:
    """The arrival pattern and run cost of one version, and the leader's wait they imply."""

    def __init__(self, min_run_cpu_s: float = MIN_RUN_CPU_S) -> None:
        self.min_run_cpu_s = min_run_cpu_s
        self.run_cpu_s = 0.0
        self.overlap = 0.0
        self.peak = 1.0
        self.gap_s = 0.0
        self._last = 0.0
        self._last_busy = False

    def arrive(self, now: float, busy: bool, inside: int) -> None:
        """A request arrived at `now`; `busy`: a run was in progress; `inside`: requests in the
        version counting this one (running, queued and announced)."""
        if busy and self._last_busy:  # a gap inside a busy spell, not the idle time before it
            gap = now - self._last
            self.gap_s = gap if not self.gap_s else self.gap_s + _WEIGHT * (gap - self.gap_s)
        self._last, self._last_busy = now, busy
        self.overlap += _WEIGHT * (busy - self.overlap)
        self.peak = max(float(inside), self.peak - _PEAK_DECAY)

    def ran_alone(self, cpu_s: float) -> None:
        """A one-request run took `cpu_s` of CPU. A sample counts as at most twice the mean, so
        a descheduled moment cannot make a microsecond model look slow."""
        mean = self.run_cpu_s
        self.run_cpu_s = cpu_s if not mean else mean + _WEIGHT * (min(cpu_s, 2 * mean) - mean)

    def worth_waiting(self, announced: int) -> bool:
        """Whether a leader should wait for company (`announced`: requests on their way)."""
        return self.run_cpu_s >= self.min_run_cpu_s and (announced > 0 or self.overlap >= 0.5)

    def target(self, max_batch_size: int) -> int:
        """The requests a waiting leader waits for, itself included."""
        return max(1, min(max_batch_size, round(self.peak)))

    def step_s(self) -> float:
        """How long a waiting leader waits for the next arrival before it gives up."""
        return max(self.min_run_cpu_s, 2.0 * self.gap_s)
