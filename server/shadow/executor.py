"""Shadow execution off the request path, and the per-(model, candidate) aggregates it feeds.

`ShadowExecutor.submit` never blocks and never raises: a full (or closed) queue drops the job
and counts the drop. The executor's own daemon workers run the candidate, compare its outputs
with the primary's (server.shadow.comparison) and record the result in that candidate's ShadowStats.

Every sampled job ends in exactly one of these counts:
  dropped     not run, with its reason (ShadowReport.dropped_by_reason): the queue was full
              (`queue_full`), the primary needed the capacity (`primary_busy`,
              `primary_queued`: `pressure` said so at submit or when a worker took the job),
              the candidate's scheduler had
              no idle slot (`candidate_busy`), the busy-time budget was spent (`budget`), or
              the job was still queued at shutdown (`shutdown`)
  timeouts    (expired) it waited in the queue longer than timeout_s and was skipped
  errors      the candidate raised (or, logged as a bug, comparing its outputs did)
  completed   the candidate returned outputs and they were compared
A completed run that took longer than timeout_s also counts as a timeout (a run cannot be
interrupted, and leaving its latency out would flatter p99). sampled = submitted + dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeAlias

from server.clock import Clock
from server.shadow.comparison import ComparisonPolicy, compare
from server.shadow.job import (
    PolicyFor,
    ResultListener,
    ShadowJob,
    ShadowOutcome,
    ShadowResult,
    Shed,
)
from server.shadow.stats import ShadowReport, ShadowStats

__all__ = ["ShadowExecutor"]

#: Busy-time credit the shadow may run ahead of its budget (seconds).
_BURST_S = 0.05
#: A worker holding a job waits this long at most for the primary to leave the CPU idle
#: (`pressure` says None), polling every _IDLE_POLL_S, before it sheds the job.
IDLE_WAIT_S = 0.005
_IDLE_POLL_S = 0.0005
#: pressure(model, at_submit): why the model's primary traffic needs the capacity now (a drop
#: reason), or None. At submit the sampling call itself is still in progress.
Pressure: TypeAlias = Callable[[str, bool], str | None]
_Item: TypeAlias = tuple[ShadowJob, ShadowStats] | None  # None: a worker's stop signal

log = logging.getLogger(__name__)


class ShadowExecutor:
    """Runs shadow jobs on its own daemon workers from a bounded queue; see the module docstring."""

    def __init__(
        self,
        workers: int = 1,
        queue_size: int = 64,
        timeout_s: float = 2.0,
        policy_for: PolicyFor | None = None,
        clock: Clock = time.perf_counter,
        on_result: ResultListener | None = None,
        worst_n: int = 10,
        max_busy: float | None = None,
        pressure: Pressure | None = None,
    ) -> None:
        if workers < 1 or queue_size < 1 or not timeout_s > 0:
            raise ValueError("need workers >= 1, queue_size >= 1 and timeout_s > 0")
        self._timeout_s = timeout_s
        default = ComparisonPolicy()
        self._policy_for = policy_for or (lambda _model: default)
        self._clock = clock
        self._on_result = on_result
        self._worst_n = worst_n
        self._queue: queue.Queue[_Item] = queue.Queue(queue_size)
        # A time budget: the workers may be busy `max_busy` seconds per second of wall time.
        # Busy time is wall time, so when the request threads hold the GIL longer (high load)
        # every job costs more budget and the shadow sheds sooner: it drops, the primary
        # keeps its speed. A queue bound alone never fills while a worker keeps up by taking
        # the GIL from the requests.
        self._max_busy = max_busy
        self._pressure = pressure
        self._never = threading.Event()  # waited on, never set: the idle poll's sleep
        self._credit = _BURST_S
        self._credit_at = clock()
        self._cond = threading.Condition()  # guards _pending, _closed and the stats maps
        self._pending = 0  # queued + running jobs, for force_flush
        self._closed = False
        self._stats: dict[tuple[str, str], ShadowStats] = {}
        self._current: dict[str, ShadowStats] = {}  # per model: its latest candidate's stats
        self._threads = [
            threading.Thread(target=self._work, name=f"canaryserve-shadow-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Queue `job` without blocking; False (and a counted drop) when full or shut down."""
        try:
            with self._cond:
                stats = self._stats.get((job.model, job.candidate)) or self._new_stats(
                    job.model, job.candidate
                )
                reason = "shutdown" if self._closed else None
                if reason is None and self._pressure is not None:
                    reason = self._pressure(job.model, True)
                if reason is None and not self._afford():
                    reason = "budget"
                if reason is None:
                    try:
                        self._queue.put_nowait((job, stats))
                    except queue.Full:
                        reason = "queue_full"
                    else:
                        self._pending += 1
                        stats.record_submitted()
                        return True
            stats.record_dropped(reason=reason)
        except Exception:  # the request path must never see a shadow failure
            log.exception("shadow submit failed")
        return False

    def _afford(self) -> bool:
        """Whether the busy-time budget has credit left (call with self._cond held)."""
        if self._max_busy is None:
            return True
        now = self._clock()
        self._credit = min(_BURST_S, self._credit + (now - self._credit_at) * self._max_busy)
        self._credit_at = now
        return self._credit > 0

    def stats(self, model: str, candidate: str | None = None) -> ShadowStats | None:
        """Stats of (model, candidate); without a candidate, of the model's latest candidate."""
        if candidate is None:
            return self._current.get(model)
        return self._stats.get((model, candidate))

    def reset(self, model: str, candidate: str) -> ShadowStats:
        """Start (model, candidate) from zero; jobs already queued count in the old stats."""
        with self._cond:
            return self._new_stats(model, candidate)

    def snapshot(self) -> list[ShadowReport]:
        """Reports of every model's latest candidate."""
        with self._cond:
            current = list(self._current.values())
        return [stats.snapshot() for stats in current]

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def force_flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running; False if `timeout` (s) ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop accepting, run what finishes within `timeout`, drop (and count) the rest.

        True when every job finished and every worker stopped in time. A worker stuck in a
        candidate run cannot be interrupted; it is a daemon and is left behind.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
        drained = self.force_flush(timeout)
        abandoned = 0
        while True:  # what is still queued now would not run in time
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].record_dropped(abandoned=True, reason="shutdown")
                abandoned += 1
        self._done(abandoned)
        try:
            for _ in self._threads:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass  # every worker is busy in a run; none would take a stop signal anyway
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = sum(thread.is_alive() for thread in self._threads)
        if abandoned or busy:
            log.warning("shadow shutdown: dropped %s queued jobs, %s workers busy", abandoned, busy)
        return drained and not busy

    def _new_stats(self, model: str, candidate: str) -> ShadowStats:
        stats = ShadowStats(model, candidate, worst_n=self._worst_n)
        self._stats[(model, candidate)] = stats
        self._current[model] = stats
        return stats

    def _done(self, jobs: int) -> None:
        with self._cond:
            self._pending -= jobs
            if self._pending == 0:
                self._cond.notify_all()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            job, stats = item
            began = self._clock()
            try:
                reason = self._wait_idle(job.model)
                if reason is not None:  # the primary kept the capacity: shed, do not run
                    stats.record_dropped(abandoned=True, reason=reason)
                    continue
                try:
                    result = self._run(job)
                except Exception as exc:  # ours (policy_for, compare), not the candidate's
                    log.exception(
                        "shadow job of model %s request %s failed", job.model, job.request_id
                    )
                    result = ShadowResult(job, ShadowOutcome.ERROR, 0.0, error=f"internal: {exc!r}")
                if result.outcome is ShadowOutcome.SHED:
                    stats.record_dropped(abandoned=True, reason=result.error or "shed")
                    continue
                stats.record(result)
                if self._on_result is not None:
                    self._on_result(result)
            except Exception:
                log.exception(
                    "shadow result of model %s request %s failed", job.model, job.request_id
                )
            finally:
                if self._max_busy is not None:
                    with self._cond:
                        self._credit -= self._clock() - began
                self._done(1)

    def _wait_idle(self, model: str) -> str | None:
        """None once `pressure` sees the primary leave the capacity idle; else, after
        IDLE_WAIT_S, the reason it did not."""
        if self._pressure is None:
            return None
        deadline = time.monotonic() + IDLE_WAIT_S
        while (reason := self._pressure(model, False)) is not None:
            if time.monotonic() >= deadline:
                return reason
            self._never.wait(_IDLE_POLL_S)
        return None

    def _run(self, job: ShadowJob) -> ShadowResult:
        start = self._clock()
        queued = start - job.enqueued_at
        if queued > self._timeout_s:
            return ShadowResult(job, ShadowOutcome.EXPIRED, queued)
        try:
            arrays = job.runner.run(job.output_names, dict(job.feeds))
            latency = self._clock() - start
            shadow = dict(zip(job.output_names, arrays, strict=False))  # short: compare says so
        except Shed as shed:  # the candidate's scheduler had no idle slot
            return ShadowResult(job, ShadowOutcome.SHED, queued, error=shed.reason)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            return ShadowResult(
                job, ShadowOutcome.ERROR, queued, self._clock() - start, None, error
            )
        comparison = compare(job.primary, shadow, self._policy_for(job.model))
        outcome = ShadowOutcome.SLOW if latency > self._timeout_s else ShadowOutcome.OK
        return ShadowResult(job, outcome, queued, latency, comparison)
