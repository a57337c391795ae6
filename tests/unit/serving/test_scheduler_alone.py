"""VersionScheduler's common case: a request that finds its version idle runs alone, at once,
without a queue entry; it is counted like any run, frees its slot whatever the run does, and
its CPU time is measured for the batch leader's wait only on some runs."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pytest

from server.serving.dtypes import by_oip
from server.serving.limits import Limits
from server.serving.scheduler import MEASURE_EVERY, VersionScheduler
from server.serving.signature import Signature, TensorSpec
from server.testing import FakeClock, FakeRunner

FP32 = by_oip("FP32")
assert FP32 is not None
BATCHABLE = Signature(
    inputs=(TensorSpec("x", FP32, (None, 2)),), outputs=(TensorSpec("y", FP32, (None, 2)),)
)


def rows(*values: float) -> npt.NDArray[np.float32]:
    return np.array([[v, v] for v in values], dtype=np.float32)


def batching(runner: FakeRunner, clock: FakeClock) -> VersionScheduler:
    return VersionScheduler(
        "m",
        "1",
        runner,
        Limits(instances=1),
        max_batch_size=8,
        clock=clock,
    )


def test_a_lone_run_counts_its_rows_run_time_and_no_queue_time() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock=clock, signature=BATCHABLE)  # a run takes x[0] s on the clock
    s = batching(runner, clock)
    [y] = s.run(["y"], {"x": rows(0.25, 0.25, 0.25)})
    assert y.shape == (3, 2)
    stats = s.stats
    assert (stats.executions, stats.queue_count, stats.queue_ns) == (1, 1, 0)
    assert stats.batch_rows == {3: 1}
    assert stats.batch_infer_ns == {3: 250_000_000}
    assert s.running() == 0


def test_a_lone_run_that_fails_raises_its_error_and_frees_the_slot() -> None:
    runner = FakeRunner(signature=BATCHABLE, error=RuntimeError("kernel failed"))
    s = batching(runner, FakeClock())
    with pytest.raises(RuntimeError, match="kernel failed"):
        s.run(["y"], {"x": rows(1)})
    assert s.running() == 0
    assert s.stats.executions == 1
    runner.error = None
    assert s.run(["y"], {"x": rows(2)})[0][0, 0] == 2  # the slot is free for the next one


def test_a_freed_slot_passes_to_a_request_queued_behind_a_lone_run() -> None:
    gate = threading.Event()
    runner = FakeRunner(gate=gate, signature=BATCHABLE)
    s = batching(runner, FakeClock())
    results: list[float] = []
    first = threading.Thread(target=lambda: results.append(s.run(["y"], {"x": rows(1)})[0][0, 0]))
    first.start()
    assert runner.started.wait(5)
    second = threading.Thread(target=lambda: results.append(s.run(["y"], {"x": rows(2)})[0][0, 0]))
    second.start()
    for _ in range(5000):  # until the second request waits in the queue
        if s.queued() == 1:
            break
        threading.Event().wait(0.001)
    assert s.queued() == 1
    gate.set()
    first.join(5)
    second.join(5)
    assert sorted(results) == [1, 2]
    assert s.running() == 0 and s.queued() == 0


def test_the_cpu_of_lone_runs_is_measured_first_then_one_in_measure_every() -> None:
    runner = FakeRunner(signature=BATCHABLE)
    s = batching(runner, FakeClock())
    measured: list[float] = []

    def ran_alone(cpu_s: float) -> None:
        measured.append(cpu_s)
        s.company.run_cpu_s = 5e-6  # known after the first: a microsecond model

    s.company.ran_alone = ran_alone  # type: ignore[method-assign]
    for value in range(2 * MEASURE_EVERY + 1):
        s.run(["y"], {"x": rows(value)})
    assert len(measured) == 3  # the first run, then runs MEASURE_EVERY and 2 * MEASURE_EVERY


def test_a_version_that_cannot_batch_never_measures_its_runs() -> None:
    runner = FakeRunner(signature=BATCHABLE)
    s = VersionScheduler("m", "1", runner, Limits(), max_batch_size=0)
    calls: list[float] = []
    s.company.ran_alone = calls.append  # type: ignore[method-assign,assignment]
    for value in range(MEASURE_EVERY + 1):
        s.run(["y"], {"x": rows(value)})
    assert calls == []
    assert s.stats.batch_rows == {1: MEASURE_EVERY + 1}
