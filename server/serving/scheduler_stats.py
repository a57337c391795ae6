"""The cumulative counters of one version's scheduler, as ModelStatistics and /metrics read
them (Triton's queue duration, executions and batch stats, plus sheds and fallbacks)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SchedulerStats"]


@dataclass
class SchedulerStats:
    """Cumulative counters of one scheduler (written and read under `VersionScheduler.lock`)."""

    queue_count: int = 0  # requests that left the queue to run (immediate starts included)
    queue_ns: int = 0  # their time from arrival at the scheduler to the start of their run
    executions: int = 0  # runs (a batch is one)
    batch_rows: dict[int, int] = field(default_factory=dict)  # rows per run -> runs
    batch_infer_ns: dict[int, int] = field(default_factory=dict)  # rows per run -> run time
    rejected: int = 0  # refused: the queue was full
    timeouts: int = 0  # waited longer than queue_timeout_s
    shadow_shed: int = 0  # shadow runs refused (shadow queue full or timed out)
    fallbacks: int = 0  # candidate requests this version refused that stable then served
    gathers: int = 0  # runs whose leader waited for requests already on their way
    gather_ns: int = 0  # the time those leaders waited

    def count_run(self, rows: int, run_ns: int, requests: int, queued_ns: int) -> None:
        """One run of `rows` rows for `requests` requests that waited `queued_ns` together."""
        self.executions += 1
        self.batch_rows[rows] = self.batch_rows.get(rows, 0) + 1
        self.batch_infer_ns[rows] = self.batch_infer_ns.get(rows, 0) + run_ns
        self.queue_count += requests
        self.queue_ns += queued_ns
