"""VersionScheduler: slots, FIFO queue, limits, timeouts on a fake clock, batching, priorities.

No sleeps: a FakeRunner's gate holds the slot, `_until` waits for a queue to reach a state
(a condition, not a duration), and queue timeouts run on a FakeClock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest

from server.errors import status_name
from server.rollout.router import Stage
from server.serving.dtypes import by_oip
from server.serving.limits import Limits, Policy, Priority, QueueFull, QueueTimeout
from server.serving.scheduler import VersionScheduler
from server.serving.schedulers import Schedulers
from server.serving.signature import Signature, TensorSpec
from server.shadow.job import Shed
from server.testing import FakeClock, FakeRunner

FP32 = by_oip("FP32")
assert FP32 is not None
BATCHABLE = Signature(
    inputs=(TensorSpec("x", FP32, (None, 2)),), outputs=(TensorSpec("y", FP32, (None, 2)),)
)
FIXED = Signature(inputs=(TensorSpec("x", FP32, (1, 2)),), outputs=(TensorSpec("y", FP32, (1, 2)),))

Arr = npt.NDArray[np.float32]


def rows(*values: float) -> Arr:
    return np.array([[v, v] for v in values], dtype=np.float32)


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a state change made by another thread (a condition, never a fixed delay)."""
    done = threading.Event()
    for _ in range(int(timeout / 0.001)):
        if condition():
            return
        done.wait(0.001)
    raise AssertionError("condition not reached")


@pytest.fixture
def pool() -> ThreadPoolExecutor:
    with ThreadPoolExecutor(8) as executor:
        yield executor  # type: ignore[misc]


def scheduler(
    runner: FakeRunner, clock: FakeClock | None = None, batch: int = 0, **limits: float
) -> VersionScheduler:
    return VersionScheduler(
        "m",
        "1",
        runner,
        Limits(**limits),
        max_batch_size=batch,
        clock=clock or FakeClock(),  # type: ignore[arg-type]
    )


def hold(pool: ThreadPoolExecutor, s: VersionScheduler, runner: FakeRunner) -> Future[list[Arr]]:
    """Occupy the scheduler's one slot with a run blocked on the runner's gate."""
    first = pool.submit(s.run, ["y"], {"x": rows(0)})
    assert runner.started.wait(5)
    return first  # type: ignore[return-value]


def test_an_idle_version_runs_at_once_and_counts_no_queue_time() -> None:
    runner = FakeRunner(signature=FIXED)
    s = scheduler(runner)
    [y] = s.run(["y"], {"x": rows(3)})
    assert y.tolist() == [[3, 3]]
    assert (s.stats.queue_count, s.stats.queue_ns, s.stats.executions) == (1, 0, 1)


def test_requests_wait_in_fifo_order_behind_the_busy_slot(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    clock = FakeClock()
    s = scheduler(runner, clock, instances=1, max_queue_size=8)
    first = hold(pool, s, runner)
    waiting = []
    for i in range(1, 4):
        waiting.append(pool.submit(s.run, ["y"], {"x": rows(i)}))
        _until(lambda i=i: s.queued() == i)  # type: ignore[misc]
    clock.advance(0.25)  # each waited 0.25 s on the scheduler's clock
    gate.set()
    assert [f.result(5)[0][0, 0] for f in [first, *waiting]] == [0, 1, 2, 3]
    assert [float(x[0, 0]) for x in runner.runs] == [0, 1, 2, 3]  # one at a time, in order
    assert s.stats.queue_count == 4
    assert s.stats.queue_ns == 3 * 250_000_000
    assert s.running() == 0


def test_a_full_queue_refuses_at_once_with_resource_exhausted(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    s = scheduler(runner, instances=1, max_queue_size=1)
    first = hold(pool, s, runner)
    second = pool.submit(s.run, ["y"], {"x": rows(1)})
    _until(lambda: s.queued() == 1)
    with pytest.raises(QueueFull) as refused:
        s.run(["y"], {"x": rows(2)})
    assert status_name(refused.value) == "RESOURCE_EXHAUSTED"
    assert "model 'm' version '1' is overloaded: its queue is full" in str(refused.value)
    gate.set()
    assert first.result(5) and second.result(5)
    assert s.stats.rejected == 1


def test_instances_bound_the_runs_in_progress(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    s = scheduler(runner, instances=2)
    futures = [pool.submit(s.run, ["y"], {"x": rows(i)}) for i in range(5)]
    _until(lambda: s.running() == 2 and s.queued() == 3)
    assert runner.calls == 2
    gate.set()
    assert sorted(f.result(5)[0][0, 0] for f in futures) == [0, 1, 2, 3, 4]
    assert s.running() == 0


def test_a_request_queued_past_its_timeout_fails_when_the_slot_frees(
    pool: ThreadPoolExecutor,
) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    clock = FakeClock()
    s = scheduler(runner, clock, instances=1, queue_timeout_s=1.0)
    first = hold(pool, s, runner)
    late = pool.submit(s.run, ["y"], {"x": rows(1)})
    _until(lambda: s.queued() == 1)
    clock.advance(1.5)
    fresh = pool.submit(s.run, ["y"], {"x": rows(2)})  # arrives after the advance: in time
    _until(lambda: s.queued() == 2)
    gate.set()
    assert first.result(5)
    with pytest.raises(QueueTimeout) as timed_out:
        late.result(5)
    assert status_name(timed_out.value) == "DEADLINE_EXCEEDED"
    assert "waited 1500.0 ms in its queue (limit 1000.0 ms)" in str(timed_out.value)
    assert fresh.result(5)[0][0, 0] == 2
    assert [float(x[0, 0]) for x in runner.runs] == [0, 2]  # the late one never ran
    assert s.stats.timeouts == 1


def test_queued_requests_merge_into_one_batch_and_split_back(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=BATCHABLE)
    s = scheduler(runner, batch=8, instances=1)
    first = hold(pool, s, runner)
    sizes = [1, 3, 2, 1]
    inputs = [rows(*[10 * i + j for j in range(n)]) for i, n in enumerate(sizes, 1)]
    waiting = []
    for k, x in enumerate(inputs, 1):
        waiting.append(pool.submit(s.run, ["y"], {"x": x}))
        _until(lambda k=k: s.queued() == k)  # type: ignore[misc]
    gate.set()
    assert first.result(5)[0].tolist() == rows(0).tolist()
    for future, x in zip(waiting, inputs, strict=True):
        [y] = future.result(5)
        assert y.tolist() == x.tolist()  # each its own rows: the unbatched answer
    assert [len(x) for x in runner.runs] == [1, 7]  # one run for the four queued requests
    assert s.stats.batch_rows == {1: 1, 7: 1}
    assert s.stats.queue_count == 5


def test_a_batch_never_exceeds_max_batch_size(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=BATCHABLE)
    s = scheduler(runner, batch=4, instances=1)
    first = hold(pool, s, runner)
    waiting = []
    for k in range(1, 4):
        waiting.append(pool.submit(s.run, ["y"], {"x": rows(k, k)}))
        _until(lambda k=k: s.queued() == k)  # type: ignore[misc]
    gate.set()
    assert first.result(5) and all(f.result(5) for f in waiting)
    assert [len(x) for x in runner.runs] == [1, 4, 2]


def test_requests_that_cannot_merge_run_apart_in_order(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=BATCHABLE)
    s = scheduler(runner, batch=8, instances=1)
    first = hold(pool, s, runner)
    wide = np.ones((1, 3), dtype=np.float32)  # other trailing shape: another batch key
    inputs = [rows(1), wide, rows(2)]
    waiting = []
    for k, x in enumerate(inputs, 1):
        waiting.append(pool.submit(s.run, ["y"], {"x": x}))
        _until(lambda k=k: s.queued() == k)  # type: ignore[misc]
    gate.set()
    assert first.result(5)
    for future, x in zip(waiting, inputs, strict=True):
        assert future.result(5)[0].tolist() == x.tolist()
    assert [x.shape for x in runner.runs] == [(1, 2), (2, 2), (1, 3)]


def test_a_request_that_fails_inside_a_batch_fails_alone(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=BATCHABLE, fail_above=100)
    s = scheduler(runner, batch=8, instances=1)
    first = hold(pool, s, runner)
    inputs = [rows(1), rows(500, 2), rows(3)]
    waiting = []
    for k, x in enumerate(inputs, 1):
        waiting.append(pool.submit(s.run, ["y"], {"x": x}))
        _until(lambda k=k: s.queued() == k)  # type: ignore[misc]
    gate.set()
    assert first.result(5)
    assert waiting[0].result(5)[0].tolist() == inputs[0].tolist()
    with pytest.raises(ValueError, match="x above 100"):
        waiting[1].result(5)
    assert waiting[2].result(5)[0].tolist() == inputs[2].tolist()
    # the batch of 4 rows failed, then each request ran on its own
    assert [len(x) for x in runner.runs] == [1, 4, 1, 2, 1]


def test_a_model_without_a_batch_dimension_never_batches(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    s = scheduler(runner, batch=8, instances=1)
    assert s.max_batch_size == 0
    first = hold(pool, s, runner)
    waiting = [pool.submit(s.run, ["y"], {"x": rows(1)})]
    _until(lambda: s.queued() == 1)
    waiting.append(pool.submit(s.run, ["y"], {"x": rows(2)}))
    _until(lambda: s.queued() == 2)
    gate.set()
    assert first.result(5) and all(f.result(5) for f in waiting)
    assert [len(x) for x in runner.runs] == [1, 1, 1]


def test_a_freed_slot_goes_to_a_primary_before_a_shadow(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    s = scheduler(runner, instances=1)
    first = hold(pool, s, runner)
    shadow = pool.submit(s.run, ["y"], {"x": rows(7)}, Priority.SHADOW)
    _until(lambda: s.queued(Priority.SHADOW) == 1)
    primary = pool.submit(s.run, ["y"], {"x": rows(1)})
    _until(lambda: s.queued() == 1)
    gate.set()
    assert first.result(5) and primary.result(5) and shadow.result(5)
    assert [float(x[0, 0]) for x in runner.runs] == [0, 1, 7]


def test_a_shadow_run_never_takes_a_slot_a_primary_waits_for(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    s = scheduler(runner, instances=1, shadow_queue_size=1)
    first = hold(pool, s, runner)
    shadow = pool.submit(s.run, ["y"], {"x": rows(7)}, Priority.SHADOW)
    _until(lambda: s.queued(Priority.SHADOW) == 1)
    with pytest.raises(QueueFull, match="shadow queue is full"):
        s.run(["y"], {"x": rows(8)}, Priority.SHADOW)
    assert s.stats.shadow_shed == 1 and s.stats.rejected == 0
    gate.set()
    assert first.result(5) and shadow.result(5)


def test_a_retune_to_more_instances_starts_queued_requests(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    s = scheduler(runner, instances=1)
    first = hold(pool, s, runner)
    second = pool.submit(s.run, ["y"], {"x": rows(1)})
    _until(lambda: s.queued() == 1)
    s.limits = Limits(instances=3)
    third = pool.submit(s.run, ["y"], {"x": rows(2)})
    _until(lambda: runner.calls == 3)  # the queued one and the new one both started
    gate.set()
    assert first.result(5) and second.result(5) and third.result(5)
    assert s.running() == 0


def test_schedulers_give_each_role_its_limits_and_follow_a_new_runner() -> None:
    policy = Policy(stable=Limits(instances=2), candidate=Limits(instances=1, max_queue_size=2))
    schedulers = Schedulers(lambda model: policy)
    runner = FakeRunner(signature=FIXED)
    stable = schedulers.get("m", "1", runner, Stage.STABLE)
    assert stable.limits is policy.stable
    assert schedulers.get("m", "1", runner, Stage.CANARY) is stable
    assert stable.limits is policy.candidate  # the version's role changed: so did its limits
    assert schedulers.get("m", "2", runner, Stage.LOADED).limits is policy.candidate
    reloaded = FakeRunner(signature=FIXED)
    assert schedulers.get("m", "1", reloaded, Stage.STABLE) is not stable
    assert schedulers.find("m", "1") is not stable and schedulers.find("m", "3") is None


def test_the_shadow_runner_turns_a_refusal_into_a_shed(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=FIXED)
    s = scheduler(runner, instances=1, shadow_queue_size=0)
    first = hold(pool, s, runner)
    with pytest.raises(Shed) as shed:
        s.shadow_runner.run(["y"], {"x": rows(1)})
    assert shed.value.reason == "candidate_busy"
    gate.set()
    assert first.result(5)
    assert s.shadow_runner.run(["y"], {"x": rows(2)})[0][0, 0] == 2  # idle: it runs
    assert s.shadow_runner.signature is FIXED


def announced_run(s: VersionScheduler, value: float) -> list[Arr]:
    return s.run(["y"], {"x": rows(value)}, Priority.PRIMARY, announced=True)  # type: ignore[return-value]


def test_a_leader_waits_for_announced_requests_and_runs_them_as_one_batch(
    pool: ThreadPoolExecutor,
) -> None:
    runner = FakeRunner(signature=BATCHABLE)
    s = VersionScheduler("m", "1", runner, Limits(), max_batch_size=8, max_queue_delay_s=30.0)
    s.company.ran_alone(1e-3)  # a model whose run costs a millisecond of CPU
    for _ in range(3):
        s.announce()  # three requests being decoded for this version
    first = pool.submit(announced_run, s, 0)
    _until(lambda: s.running() == 1 and s.coming() == 2)  # the leader holds the slot, waiting
    assert runner.calls == 0
    rest = [pool.submit(announced_run, s, v) for v in (1, 2)]
    assert [f.result(5)[0][0, 0] for f in [first, *rest]] == [0, 1, 2]
    assert [x.shape[0] for x in runner.runs] == [3]  # one run for the three
    assert (s.stats.gathers, s.stats.executions, s.stats.batch_rows) == (1, 1, {3: 1})


def test_a_withdrawn_announcement_does_not_hold_the_leader(pool: ThreadPoolExecutor) -> None:
    runner = FakeRunner(signature=BATCHABLE)
    s = VersionScheduler("m", "1", runner, Limits(), max_batch_size=8, max_queue_delay_s=30.0)
    s.company.ran_alone(1e-3)
    s.announce()
    s.announce()
    first = pool.submit(announced_run, s, 0)
    _until(lambda: s.running() == 1 and s.coming() == 1)
    s.withdraw()  # the other request failed validation: it will not come
    assert first.result(5)[0][0, 0] == 0  # the leader gives up after a step with nobody
    assert s.coming() == 0 and s.running() == 0


def test_a_cheap_model_or_a_lone_caller_never_waits() -> None:
    runner = FakeRunner(signature=BATCHABLE)
    s = VersionScheduler("m", "1", runner, Limits(), max_batch_size=8, max_queue_delay_s=30.0)
    s.company.ran_alone(5e-6)  # microseconds a run: batching cannot pay for a wait
    assert not s.announce()  # not even counted
    assert s.run(["y"], {"x": rows(1)})[0][0, 0] == 1
    assert s.coming() == 0
    lone = VersionScheduler("m", "1", runner, Limits(), max_batch_size=8, max_queue_delay_s=30.0)
    lone.company.ran_alone(1e-3)
    for value in range(5):  # one caller: each request finds the version idle
        assert lone.announce()
        assert announced_run(lone, value)[0][0, 0] == value
    assert s.stats.gathers == lone.stats.gathers == 0


class _AwayRunner(FakeRunner):
    """A FakeRunner whose runs happen in another process, as an isolated version's do."""

    out_of_process = True


@pytest.mark.parametrize(("runner_type", "learned_ms"), [(_AwayRunner, 2.0), (FakeRunner, 0.0)])
def test_a_run_out_of_process_costs_its_wall_time_for_gathering(
    runner_type: type[FakeRunner], learned_ms: float
) -> None:
    """This thread's CPU clock sees nothing of a run in another process: its wall time (2 ms
    on the fake clock) is what batching could save, so a leader waits for company there."""
    clock = FakeClock()
    s = VersionScheduler(
        "m", "1", runner_type(clock=clock, signature=BATCHABLE), Limits(), 8, clock, 0.004
    )
    s.run(["y"], {"x": rows(0.002)})
    if learned_ms:  # the fake clock's 2 ms, exactly
        assert s.company.run_cpu_s == pytest.approx(learned_ms / 1e3, abs=1e-6)
        assert s.company.worth_waiting(1)
    else:  # this thread's own CPU for a fake run: far below the 2 ms, whatever the load
        assert s.company.run_cpu_s < 1e-3
