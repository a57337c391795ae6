"""Per-version scheduling: a bounded queue, a concurrency limit and dynamic batching.

Triton's instance groups, dynamic batcher and queue policy are the model. Every ready version
has one VersionScheduler:

* `instances` runs of the version may be in progress at once (one onnxruntime session serves
  them all: a session's run is thread-safe, so an instance is a concurrency slot, not a copy);
* a request that finds every slot taken waits in the version's FIFO queue, at most
  `max_queue_size` of them (one more is refused: `QueueFull`, RESOURCE_EXHAUSTED) and at most
  `queue_timeout_s` each (then `QueueTimeout`, DEADLINE_EXCEEDED);
* no scheduler thread: the calling thread that gets a slot *leads* — it runs its own request
  together with the compatible requests queued behind it (up to `max_batch_size` rows, when
  the model batches), hands each its slice of the outputs, then passes the slot to the next
  queued request. So a batch is whatever arrived while the previous run was busy: no fixed
  delay, nothing gathered when the version is idle, large batches exactly when requests
  arrive faster than one run serves them;
* shadow runs are the lowest class: they start only on a slot nobody else is queued for, and
  a freed slot goes to a queued primary request first.

A slow candidate therefore holds at most its own slots and queue; the data plane turns its
QueueFull / QueueTimeout into a fallback to stable (see DataPlane).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from server.clock import Clock
from server.errors import DeadlineExceeded, Overloaded
from server.rollout.router import Stage
from server.serving import batching
from server.serving.runner import Arrays, Runner
from server.serving.signature import Signature
from server.shadow.job import Shed

__all__ = [
    "Limits",
    "Policy",
    "Priority",
    "QueueFull",
    "QueueTimeout",
    "SchedulerStats",
    "Schedulers",
    "ShadowRunner",
    "VersionScheduler",
]

log = logging.getLogger(__name__)

_Arrays = list[npt.NDArray[np.generic]]


class Priority(enum.IntEnum):
    """Request classes of a scheduler, highest first."""

    PRIMARY = 0  # a caller waits for the answer
    SHADOW = 1  # a comparison run off the request path: only on idle capacity


@dataclass(frozen=True)
class Limits:
    """How much of the machine one version may hold, and how long its callers may wait."""

    instances: int = 1
    """Runs of this version in progress at once."""
    max_queue_size: int = 64
    """Requests waiting for a slot at most; one more is refused at once."""
    queue_timeout_s: float = 5.0
    """Longest wait in the queue (0: no limit)."""
    shadow_queue_size: int = 4
    """Shadow runs waiting for an idle slot at most."""

    def __post_init__(self) -> None:
        if self.instances < 1 or self.max_queue_size < 0 or self.shadow_queue_size < 0:
            raise ValueError("need instances >= 1 and queue sizes >= 0")
        if self.queue_timeout_s < 0:
            raise ValueError("need queue_timeout_s >= 0")


@dataclass(frozen=True)
class Policy:
    """Scheduling of one model: limits by role, batching, and what an overloaded candidate does."""

    stable: Limits = field(default_factory=Limits)
    candidate: Limits = field(
        default_factory=lambda: Limits(instances=1, max_queue_size=4, queue_timeout_s=0.05)
    )
    max_batch_size: int = 8
    """Rows one run may merge (0 or 1: no batching); only models that can batch do."""
    candidate_fallback: bool = True
    """A candidate request refused by its queue is served by stable (else it fails)."""

    def limits(self, stage: Stage) -> Limits:
        return self.stable if stage is Stage.STABLE else self.candidate


class QueueFull(Overloaded):
    """Every slot of the version is busy and its queue holds max_queue_size requests."""

    def __init__(self, model: str, version: str, size: int, shadow: bool = False) -> None:
        self.model, self.version = model, version
        what = "shadow queue" if shadow else "queue"
        super().__init__(
            f"model '{model}' version '{version}' is overloaded: its {what} is full"
            f" ({size} requests waiting); retry later"
        )


class QueueTimeout(DeadlineExceeded):
    """The request waited in the version's queue longer than queue_timeout_s."""

    def __init__(self, model: str, version: str, waited_s: float, limit_s: float) -> None:
        self.model, self.version = model, version
        super().__init__(
            f"model '{model}' version '{version}' is overloaded: the request waited"
            f" {waited_s * 1e3:.1f} ms in its queue (limit {limit_s * 1e3:.1f} ms); retry later"
        )


@dataclass
class SchedulerStats:
    """Cumulative counters of one scheduler (read under `VersionScheduler.lock`)."""

    queue_count: int = 0  # requests that left the queue to run (immediate starts included)
    queue_ns: int = 0  # their time from arrival at the scheduler to the start of their run
    executions: int = 0  # runs (a batch is one)
    batch_rows: dict[int, int] = field(default_factory=dict)  # rows per run -> runs
    batch_infer_ns: dict[int, int] = field(default_factory=dict)  # rows per run -> run time
    rejected: int = 0  # refused: the queue was full
    timeouts: int = 0  # waited longer than queue_timeout_s
    shadow_shed: int = 0  # shadow runs refused (shadow queue full or timed out)
    fallbacks: int = 0  # candidate requests this version refused that stable then served


class _Request:
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


class VersionScheduler:
    """The queue, slots and batcher of one model version (see the module docstring)."""

    def __init__(
        self,
        model: str,
        version: str,
        runner: Runner,
        limits: Limits,
        max_batch_size: int = 0,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.model, self.version, self.runner = model, version, runner
        self.limits = limits
        first_dims = getattr(runner, "first_dims", None)
        can = batching.batchable(runner.signature, first_dims)
        #: Rows one run may merge; 0 when the model cannot batch or batching is off.
        self.max_batch_size = max_batch_size if can and max_batch_size > 1 else 0
        self._clock = clock
        self.lock = threading.Lock()
        self._queues: tuple[deque[_Request], deque[_Request]] = (deque(), deque())
        self._running = 0
        self.stats = SchedulerStats()
        #: This version as a Runner whose runs are shadow work (lowest priority).
        self.shadow_runner = ShadowRunner(self)

    @property
    def signature(self) -> Signature:
        return self.runner.signature

    def queued(self, priority: Priority = Priority.PRIMARY) -> int:
        return len(self._queues[priority])

    def running(self) -> int:
        return self._running

    def count_fallback(self) -> None:
        """Count a request this version refused that stable then served."""
        with self.lock:
            self.stats.fallbacks += 1

    def run(
        self, outputs: Sequence[str], feeds: Arrays, priority: Priority = Priority.PRIMARY
    ) -> _Arrays:
        """Run one request through the version's queue; its outputs, or the run's error.

        Raises QueueFull or QueueTimeout when the version cannot take it in time.
        """
        request = _Request(outputs, feeds, priority, self._clock())
        queues = self._queues
        with self.lock:  # the idle version: start at once
            limits = self.limits
            if self._running < limits.instances and not queues[0] and not queues[1]:
                self._running += 1
                request.lead = True
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
            if not request.lead:
                self._wait(request, limits.queue_timeout_s)
                if not request.lead:
                    return self._outcome(request)
        self._lead(request)
        return self._outcome(request)

    # -- internals --

    def _key(self, request: _Request) -> None:
        if self.max_batch_size:
            rows = batching.rows_of(request.feeds)
            if rows is not None and rows <= self.max_batch_size:
                request.rows = rows
                request.key = batching.batch_key(request.outputs, request.feeds)

    @staticmethod
    def _outcome(request: _Request) -> _Arrays:
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _wait(self, request: _Request, timeout_s: float) -> None:
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

    def _count_timeout(self, request: _Request) -> None:
        if request.priority is Priority.PRIMARY:
            self.stats.timeouts += 1
        else:
            self.stats.shadow_shed += 1

    def _promote_waiting(self, limits: Limits) -> None:
        """Give free slots to queued requests (slots freed by a retune; call with the lock)."""
        while self._running < limits.instances:
            nxt = self._pop_next(limits)
            if nxt is None:
                return
            self._running += 1
            nxt.lead = True
            nxt.signal()

    def _expire(self, request: _Request, waited: float, timeout: float) -> None:
        self._count_timeout(request)
        request.error = QueueTimeout(self.model, self.version, waited, timeout)
        request.signal()

    def _pop_next(self, limits: Limits) -> _Request | None:
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

    def _gather(self, leader: _Request) -> list[_Request]:
        """The leader and the queued requests it can batch with (call with the lock)."""
        batch = [leader]
        queue = self._queues[leader.priority]
        if leader.key is None or not queue:
            return batch
        room = self.max_batch_size - leader.rows
        now = self._clock()
        timeout = self.limits.queue_timeout_s
        kept: deque[_Request] = deque()
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

    def _lead(self, leader: _Request) -> None:
        """Run the leader's batch (every member gets its outputs or its own error), then pass
        the slot on. Holds one slot on entry."""
        batch = [leader]
        start = end = leader.enqueued
        rows = 1
        try:
            if self.max_batch_size and self._queues[leader.priority]:
                if leader.key is None:
                    self._key(leader)
                with self.lock:
                    batch = self._gather(leader)
            start = self._clock()
            if len(batch) == 1:
                try:
                    leader.result = self.runner.run(leader.outputs, leader.feeds)
                except Exception as exc:
                    leader.error = exc
                rows = leader.rows or (
                    (batching.rows_of(leader.feeds) or 1) if self.max_batch_size else 1
                )
            else:
                self._run_batch(batch)
                rows = sum(r.rows for r in batch)
            end = self._clock()
        finally:
            self._release(batch, start, end, rows)

    def _run_batch(self, batch: list[_Request]) -> None:
        runner = self.runner
        leader = batch[0]
        parts: list[_Arrays] | None
        try:
            merged = batching.merge([r.feeds for r in batch])
            parts = batching.split(runner.run(leader.outputs, merged), [r.rows for r in batch])
            if parts is None:
                log.warning(
                    "model %s version %s: outputs do not follow the batch dimension;"
                    " batching is off for this version",
                    self.model,
                    self.version,
                )
                self.max_batch_size = 0
        except Exception:
            parts = None  # one bad request must not fail the others: run each alone
        if parts is None:
            for request in batch:
                try:
                    request.result = runner.run(request.outputs, request.feeds)
                except Exception as exc:
                    request.error = exc
        else:
            for request, part in zip(batch, parts, strict=True):
                request.result = part

    def _release(self, batch: list[_Request], start: float, end: float, rows: int) -> None:
        """Count the run, wake the batch's members, pass the slot to the next queued request
        or free it."""
        with self.lock:
            stats = self.stats
            stats.executions += 1
            stats.batch_rows[rows] = stats.batch_rows.get(rows, 0) + 1
            stats.batch_infer_ns[rows] = stats.batch_infer_ns.get(rows, 0) + int(
                (end - start) * 1e9
            )
            stats.queue_count += len(batch)
            for request in batch:
                stats.queue_ns += int((start - request.enqueued) * 1e9)
            limits = self.limits
            nxt = self._pop_next(limits) if self._running <= limits.instances else None
            if nxt is None:
                self._running -= 1
            else:
                nxt.lead = True
        for request in batch[1:]:
            request.signal()
        if nxt is not None:
            nxt.signal()


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


PolicyFor = Callable[[str], Policy]


class Schedulers:
    """One VersionScheduler per (model, version, runner), made on first use; its limits follow
    the version's role in the request that reaches it (stable, or any other: candidate)."""

    def __init__(self, policy_for: PolicyFor, clock: Clock = time.perf_counter) -> None:
        self._policy_for = policy_for
        self._clock = clock
        self._policies: dict[str, Policy] = {}
        self._by_version: dict[tuple[str, str], VersionScheduler] = {}
        self._lock = threading.Lock()

    def policy(self, model: str) -> Policy:
        policy = self._policies.get(model)
        if policy is None:
            policy = self._policies[model] = self._policy_for(model)
        return policy

    def get(self, model: str, version: str, runner: Runner, stage: Stage) -> VersionScheduler:
        """The scheduler of this version's current runner, with the limits of `stage`."""
        scheduler = self._by_version.get((model, version))
        if scheduler is None or scheduler.runner is not runner:
            with self._lock:
                scheduler = self._by_version.get((model, version))
                if scheduler is None or scheduler.runner is not runner:
                    policy = self.policy(model)
                    scheduler = VersionScheduler(
                        model,
                        version,
                        runner,
                        policy.limits(stage),
                        policy.max_batch_size,
                        self._clock,
                    )
                    self._by_version[(model, version)] = scheduler
        limits = self.policy(model).limits(stage)
        if scheduler.limits is not limits:
            scheduler.limits = limits  # a role change (promotion, rollback): new limits
        return scheduler

    def max_batch_size(self, model: str, runner: Runner) -> int:
        """Rows a run of this runner may merge under the model's policy (0: no batching)."""
        policy = self.policy(model)
        if policy.max_batch_size <= 1:
            return 0
        first_dims = getattr(runner, "first_dims", None)
        return policy.max_batch_size if batching.batchable(runner.signature, first_dims) else 0

    def pressure(self, model: str, stable: str) -> str | None:
        """Why shadow work must wait: the stable version has primary requests queued."""
        scheduler = self._by_version.get((model, stable))
        if scheduler is not None and scheduler._queues[Priority.PRIMARY]:
            return "primary_queued"
        return None

    def find(self, model: str, version: str) -> VersionScheduler | None:
        """The version's scheduler, if it has served a request (for statistics)."""
        return self._by_version.get((model, version))

    def all(self) -> list[VersionScheduler]:
        return list(self._by_version.values())
