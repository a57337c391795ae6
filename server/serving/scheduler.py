"""One model version's scheduler: its bounded queue, its concurrency slots, and who leads a run.

Triton's instance groups, dynamic batcher and queue policy are the model. Every ready version
has one VersionScheduler:

* `instances` runs of the version may be in progress at once (one onnxruntime session serves
  them all: a session's run is thread-safe, so an instance is a concurrency slot, not a copy);
* a request that finds every slot taken waits in the version's FIFO queue, at most
  `max_queue_size` of them (one more is refused: `QueueFull`, RESOURCE_EXHAUSTED) and at most
  `queue_timeout_s` each (then `QueueTimeout`, DEADLINE_EXCEEDED);
* no scheduler thread: the calling thread that gets a slot *leads* — it runs its own request
  together with the compatible requests queued behind it (up to `max_batch_size` rows, when
  the model batches; `batching` merges and splits), hands each its slice of the outputs, then
  passes the slot to the next queued request;
* a leader may hold its slot for company on its way (`gathering.Company` decides): requests
  the data plane `announce`d while decoding them for this version, or, when most requests
  arrive while a run is busy, as many as lately were in the version at once; at most
  `max_queue_delay_s`. Only for a model whose run costs enough CPU for batching to pay; a
  lone caller, or an idle version, runs at once;
* the common case has its own short path (`_run_alone`): a request that finds its
  version idle, with no company worth waiting for, runs at once without a queue entry, and
  only one such run in MEASURE_EVERY has its CPU time measured for `Company`;
* shadow runs are the lowest class: they start only on a slot nobody else is queued for, and
  a freed slot goes to a queued primary request first.

A slow candidate therefore holds at most its own slots and queue; the data plane turns its
QueueFull / QueueTimeout into a fallback to stable (see DataPlane).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from server.clock import Clock
from server.serving import batching
from server.serving.gathering import Company
from server.serving.limits import Limits, Priority, QueueFull, QueueTimeout
from server.serving.queued import Queued
from server.serving.runner import Arrays, Runner
from server.serving.scheduler_stats import SchedulerStats
from server.serving.signature import Signature
from server.shadow.job import Shed

__all__ = ["ShadowRunner", "VersionScheduler"]

log = logging.getLogger(__name__)

_Arrays = list[npt.NDArray[np.generic]]

#: One one-request run in this many has its CPU time measured for `Company` (besides the first).
MEASURE_EVERY = 8


class VersionScheduler:
    """The queue, slots and batch leadership of one model version (see the module docstring)."""

    def __init__(
        self,
        model: str,
        version: str,
        runner: Runner,
        limits: Limits,
        max_batch_size: int = 0,
        clock: Clock = time.perf_counter,
        max_queue_delay_s: float = 0.0,
    ) -> None:
        self.model, self.version, self.runner = model, version, runner
        self.limits = limits
        first_dims = getattr(runner, "first_dims", None)
        can = batching.batchable(runner.signature, first_dims)
        #: Rows one run may merge; 0 when the model cannot batch or batching is off.
        self.max_batch_size = max_batch_size if can and max_batch_size > 1 else 0
        self.max_queue_delay_s = max_queue_delay_s
        self._clock = clock
        self.lock = threading.Lock()
        self._queues: tuple[deque[Queued], deque[Queued]] = (deque(), deque())
        self._running = 0
        self._coming = 0  # announced primary requests not yet at `run`
        self._target = 0  # the waiting leader's batch: wake it when this many are here
        #: What this version learned of its arrivals and runs (when a leader waits).
        self.company = Company()
        self._gathering: threading.Lock | None = None  # the waiting leader's wake-up
        self.stats = SchedulerStats()
        self._alone_runs = 0  # one-request runs with batching on (one in MEASURE_EVERY measured)
        #: This version as a Runner whose runs are shadow work (lowest priority).
        self.shadow_runner = ShadowRunner(self)

    @property
    def signature(self) -> Signature:
        return self.runner.signature

    def queued(self, priority: Priority = Priority.PRIMARY) -> int:
        return len(self._queues[priority])

    def running(self) -> int:
        return self._running

    def coming(self) -> int:
        """Announced requests that have not reached `run` yet."""
        return self._coming

    def count_fallback(self) -> None:
        """Count a request this version refused that stable then served."""
        with self.lock:
            self.stats.fallbacks += 1

    def announce(self) -> bool:
        """A primary request for this version is on its way (being decoded): a leader may wait
        for it. True when counted (only where a leader could wait): then follow with
        `run(..., announced=True)` or `withdraw()`."""
        if not self.max_batch_size or not self.company.worth_waiting(1):
            return False
        with self.lock:
            self._coming += 1
        return True

    def withdraw(self) -> None:
        """An announced request will not come (it failed before reaching `run`)."""
        with self.lock:
            self._coming -= 1

    def run(
        self,
        outputs: Sequence[str],
        feeds: Arrays,
        priority: Priority = Priority.PRIMARY,
        announced: bool = False,
    ) -> _Arrays:
        """Run one request through the version's queue; its outputs, or the run's error.

        Raises QueueFull or QueueTimeout when the version cannot take it in time.
        """
        now = self._clock()
        queues = self._queues
        lead = False
        with self.lock:  # the idle version: start at once
            if announced:
                self._coming -= 1
                inside = self._running + len(queues[0]) + self._coming + 1
                self.company.arrive(now, self._running > 0, inside)
            limits = self.limits
            if self._running < limits.instances and not queues[0] and not queues[1]:
                self._running += 1
                lead = True
        if lead and not (
            self.max_batch_size
            and priority is Priority.PRIMARY
            and self.company.worth_waiting(self._coming)
        ):
            return self._run_alone(outputs, feeds, now)
        request = Queued(outputs, feeds, priority, now)
        request.lead = lead
        if not request.lead:
            self._key(request)  # outside the lock: batching needs it only when queued
            with self.lock:
                limits = self.limits
                self._promote_waiting(limits)
                queue = queues[priority]
                if self._running < limits.instances and not queue and not queues[0]:
                    self._running += 1
                    request.lead = True
                else:
                    primary = priority is Priority.PRIMARY
                    if len(queue) >= (
                        limits.max_queue_size if primary else limits.shadow_queue_size
                    ):
                        if primary:
                            self.stats.rejected += 1
                        else:
                            self.stats.shadow_shed += 1
                        raise QueueFull(self.model, self.version, len(queue), not primary)
                    request.wake = threading.Lock()
                    request.wake.acquire()
                    queue.append(request)
                    if self._gathering is not None:
                        self._nudge()
            if not request.lead:
                self._wait(request, limits.queue_timeout_s)
                if not request.lead:
                    return request.outcome()
        self._lead(request)
        return request.outcome()

    # -- internals --

    def _key(self, request: Queued) -> None:
        if self.max_batch_size:
            rows = batching.rows_of(request.feeds)
            if rows is not None and rows <= self.max_batch_size:
                request.rows = rows
                request.key = batching.batch_key(request.outputs, request.feeds)

    def _wait(self, request: Queued, timeout_s: float) -> None:
        """Until the request is done or leads; QueueTimeout when it is still queued past its
        timeout (the queue also expires it on the scheduler's clock when a slot frees)."""
        wake = request.wake
        assert wake is not None
        if timeout_s <= 0:
            wake.acquire()
            return
        while not wake.acquire(
            timeout=max(0.0, request.enqueued + timeout_s - self._clock()) or 1e-4
        ):
            with self.lock:
                queue = self._queues[request.priority]
                waited = self._clock() - request.enqueued
                if waited < timeout_s:
                    continue
                try:
                    queue.remove(request)
                except ValueError:
                    pass  # a leader took it meanwhile: its answer is on the way
                else:
                    self._count_timeout(request)
                    raise QueueTimeout(self.model, self.version, waited, timeout_s)
            wake.acquire()
            return

    def _count_timeout(self, request: Queued) -> None:
        if request.priority is Priority.PRIMARY:
            self.stats.timeouts += 1
        else:
            self.stats.shadow_shed += 1

    def _nudge(self) -> None:
        """Wake the waiting leader once its batch has the company it waits for (with the lock)."""
        gathering = self._gathering
        if gathering is not None and len(self._queues[0]) + 1 >= self._target:
            self._gathering = None
            gathering.release()

    def _gather_wait(self) -> None:
        """Hold the slot while company is on its way, so it joins this run (see `gathering`):
        until `company.target()` requests are here, until a step brings nobody while nothing
        announced is out, or until max_queue_delay_s."""
        company = self.company
        if not company.worth_waiting(self._coming):
            return
        wake = threading.Lock()
        wake.acquire()
        queue = self._queues[0]
        with self.lock:
            target = company.target(self.max_batch_size)
            if self._gathering is not None or len(queue) + 1 >= max(target, 2):
                return
            self._gathering, self._target = wake, target
        start = now = self._clock()
        deadline = start + self.max_queue_delay_s
        step = company.step_s()
        while now < deadline:
            seen = len(queue)
            if wake.acquire(timeout=min(step, deadline - now)):
                break  # the company is here
            now = self._clock()
            if len(queue) == seen and self._coming <= 0:
                break  # nobody arrived in a step and nothing announced is out
        with self.lock:
            if self._gathering is wake:
                self._gathering = None
            self.stats.gathers += 1
            self.stats.gather_ns += int((self._clock() - start) * 1e9)

    def _promote_waiting(self, limits: Limits) -> None:
        """Give free slots to queued requests (slots freed by a retune; call with the lock)."""
        while self._running < limits.instances:
            nxt = self._pop_next(limits)
            if nxt is None:
                return
            self._running += 1
            nxt.lead = True
            nxt.signal()

    def _expire(self, request: Queued, waited: float, timeout: float) -> None:
        self._count_timeout(request)
        request.error = QueueTimeout(self.model, self.version, waited, timeout)
        request.signal()

    def _pop_next(self, limits: Limits) -> Queued | None:
        """The oldest live request, primary before shadow; expired ones fail on the way."""
        queues = self._queues
        if not queues[0] and not queues[1]:
            return None
        now = self._clock()
        timeout = limits.queue_timeout_s
        for queue in queues:
            while queue:
                request = queue.popleft()
                waited = now - request.enqueued
                if timeout > 0 and waited > timeout:
                    self._expire(request, waited, timeout)
                    continue
                return request
        return None

    def _gather(self, leader: Queued) -> list[Queued]:
        """The leader and the queued requests it can batch with (call with the lock)."""
        batch = [leader]
        queue = self._queues[leader.priority]
        if leader.key is None or not queue:
            return batch
        room = self.max_batch_size - leader.rows
        now = self._clock()
        timeout = self.limits.queue_timeout_s
        kept: deque[Queued] = deque()
        while queue:
            request = queue.popleft()
            if room >= request.rows and request.key == leader.key:
                waited = now - request.enqueued
                if timeout > 0 and waited > timeout:
                    self._expire(request, waited, timeout)
                    continue
                batch.append(request)
                room -= request.rows
                if room == 0:
                    break
            else:
                kept.append(request)
        if kept:
            kept.extend(queue)
            queue.clear()
            queue.extend(kept)
        return batch

    def _lead(self, leader: Queued) -> None:
        """Run the leader's batch (every member gets its outputs or its own error), then pass
        the slot on. Holds one slot on entry."""
        batch = [leader]
        start = end = leader.enqueued
        rows = 1
        try:
            if self.max_batch_size:
                if leader.priority is Priority.PRIMARY:
                    self._gather_wait()
                if self._queues[leader.priority]:
                    if leader.key is None:
                        self._key(leader)
                    with self.lock:
                        batch = self._gather(leader)
            start = self._clock()
            measure = len(batch) == 1 and self._measure_due()
            cpu = time.thread_time() if measure else 0.0
            if len(batch) == 1:
                try:
                    leader.result = self.runner.run(leader.outputs, leader.feeds)
                except Exception as exc:
                    leader.error = exc
                rows = leader.rows or (
                    (batching.rows_of(leader.feeds) or 1) if self.max_batch_size else 1
                )
            else:
                if not batching.run_batch(self.runner, batch):
                    log.warning(
                        "model %s version %s: outputs do not follow the batch dimension;"
                        " batching is off for this version",
                        self.model,
                        self.version,
                    )
                    self.max_batch_size = 0
                rows = sum(r.rows for r in batch)
            end = self._clock()
            if measure:
                self.company.ran_alone(self._run_cost(start, end, cpu))
        finally:
            self._release(batch, start, end, rows)

    def _release(self, batch: list[Queued], start: float, end: float, rows: int) -> None:
        """Count the run, wake the batch's members, pass the slot to the next queued request
        or free it."""
        queued = 0
        for request in batch:
            queued += int((start - request.enqueued) * 1e9)
        nxt = self._pass_slot(rows, end - start, len(batch), queued)
        for request in batch[1:]:
            request.signal()
        if nxt is not None:
            nxt.signal()

    def _pass_slot(self, rows: int, run_s: float, requests: int, queued_ns: int) -> Queued | None:
        """Count a run and hand its slot to the next queued request (returned, to be woken
        outside the lock), or free it."""
        with self.lock:
            self.stats.count_run(rows, int(run_s * 1e9), requests, queued_ns)
            limits = self.limits
            nxt = self._pop_next(limits) if self._running <= limits.instances else None
            if nxt is None:
                self._running -= 1
            else:
                nxt.lead = True
        return nxt

    def _run_alone(self, outputs: Sequence[str], feeds: Arrays, enqueued: float) -> _Arrays:
        """The common case, without a Queued: a request that found its version idle and has
        no company to wait for runs at once, alone. Holds one slot on entry."""
        start = self._clock()
        measure = self._measure_due()
        cpu = time.thread_time() if measure else 0.0
        try:
            return self.runner.run(outputs, feeds)
        finally:
            end = self._clock()
            if measure:
                self.company.ran_alone(self._run_cost(start, end, cpu))
            rows = (batching.rows_of(feeds) or 1) if self.max_batch_size else 1
            nxt = self._pass_slot(rows, end - start, 1, int((start - enqueued) * 1e9))
            if nxt is not None:
                nxt.signal()

    def _run_cost(self, start: float, end: float, cpu: float) -> float:
        """What one run cost: this thread's CPU since `cpu`, or for a run on another thread or
        in another process (which costs this thread no CPU) its wall time from `start` to
        `end`."""
        runner = self.runner
        if getattr(runner, "off_thread", False) or getattr(runner, "out_of_process", False):
            return end - start
        return time.thread_time() - cpu

    def _measure_due(self) -> bool:
        """Whether this one-request run's CPU time is measured for `company`: the first, then
        one in MEASURE_EVERY (a `thread_time` call costs about 0.6 µs, so two on every run
        would cost more than the run's bookkeeping may; see server.serving.footprint)."""
        if not self.max_batch_size:
            return False
        self._alone_runs += 1
        return not self.company.run_cpu_s or self._alone_runs % MEASURE_EVERY == 0


class ShadowRunner:
    """A version's scheduler seen as a Runner for shadow jobs: every run is Priority.SHADOW,
    so it takes only a slot no primary request is queued for (else Shed("candidate_busy"),
    which the shadow executor counts as a drop)."""

    def __init__(self, scheduler: VersionScheduler) -> None:
        self._scheduler = scheduler

    @property
    def signature(self) -> Signature:
        return self._scheduler.runner.signature

    def run(self, outputs: Sequence[str], feeds: Arrays) -> _Arrays:
        try:
            return self._scheduler.run(outputs, feeds, Priority.SHADOW)
        except (QueueFull, QueueTimeout):
            raise Shed("candidate_busy") from None
