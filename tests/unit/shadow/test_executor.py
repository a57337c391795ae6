"""Shadow execution (server.shadow.executor): never blocks, counts every job, keeps the evidence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import cast

import numpy as np
import pytest

from server.shadow.comparison import ComparisonPolicy
from server.shadow.executor import ShadowExecutor
from server.shadow.job import ShadowJob, ShadowOutcome, ShadowResult
from server.shadow.stats import ShadowStats
from server.testing import FakeClock, FakeRunner
from tests.support.waiting import WAIT


def job(runner: FakeRunner, i: int, x: object = 0.0, at: float | None = None) -> ShadowJob:
    """Job `i`: the primary answered zeros, the candidate will answer `x`."""
    feeds = {"x": np.atleast_1d(np.asarray(x, dtype=np.float64))}
    primary = {"y": np.zeros(1)}
    if at is None:
        return ShadowJob("m", "2", runner, feeds, ("y",), primary, f"r{i}", f"k{i}")
    return ShadowJob("m", "2", runner, feeds, ("y",), primary, f"r{i}", f"k{i}", enqueued_at=at)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """A gate that is always opened at the end, so no worker outlives its test blocked."""
    event = threading.Event()
    yield event
    event.set()


def stats_of(executor: ShadowExecutor) -> ShadowStats:
    stats = executor.stats("m")
    assert stats is not None
    return stats


def test_submit_never_blocks_on_a_full_queue_and_counts_every_drop(gate: threading.Event) -> None:
    runner = FakeRunner(gate=gate)
    executor = ShadowExecutor(workers=1, queue_size=2, timeout_s=60)
    assert executor.submit(job(runner, 0))
    assert runner.started.wait(WAIT)  # the only worker is now stuck in job 0
    assert executor.submit(job(runner, 1)) and executor.submit(job(runner, 2))
    accepted = sum(executor.submit(job(runner, i)) for i in range(3, 1003))
    stats = stats_of(executor)
    assert (accepted, stats.dropped, stats.submitted, stats.sampled) == (0, 1000, 3, 1003)
    assert executor.queue_depth() == 2
    gate.set()
    assert executor.force_flush(WAIT)
    assert (stats.completed, stats.dropped) == (3, 1000)
    assert executor.shutdown(WAIT)


def test_raising_candidate_counts_errors_and_never_raises_into_submit() -> None:
    results: list[ShadowResult] = []
    executor = ShadowExecutor(on_result=results.append)
    runner = FakeRunner(error=RuntimeError("boom"))
    assert all(executor.submit(job(runner, i)) for i in range(7))
    assert executor.force_flush(WAIT)
    stats = stats_of(executor)
    assert (stats.errors, stats.completed, stats.submitted) == (7, 0, 7)
    assert stats.recent_errors() == ["RuntimeError: boom"] * 5  # only the last few are kept
    assert {r.outcome for r in results} == {ShadowOutcome.ERROR}
    assert executor.submit(cast(ShadowJob, None)) is False  # even a broken job: no exception
    assert executor.shutdown(WAIT)


def test_hanging_candidate_leaves_submit_free_and_counts_timeouts(gate: threading.Event) -> None:
    clock = FakeClock()
    results: list[ShadowResult] = []
    runner = FakeRunner(gate=gate)
    executor = ShadowExecutor(
        workers=1, queue_size=4, timeout_s=1.0, clock=clock, on_result=results.append
    )
    assert executor.submit(job(runner, 0, at=clock.now))
    assert runner.started.wait(WAIT)
    assert executor.submit(job(runner, 1, at=clock.now))
    assert executor.submit(job(runner, 2, at=clock.now))
    clock.now = 10.0  # job 0 has now run for 10 s; jobs 1 and 2 have waited 10 s
    accepted = [executor.submit(job(runner, i, at=clock.now)) for i in range(3, 13)]
    assert accepted == [True, True] + [False] * 8
    gate.set()
    assert executor.force_flush(WAIT)
    stats = stats_of(executor)
    # Job 0 finished but too slowly (compared and timed out); 1 and 2 expired unrun.
    assert (stats.timeouts, stats.completed, stats.dropped, stats.errors) == (3, 3, 8, 0)
    outcomes = [r.outcome for r in results]
    assert outcomes == ["slow", "expired", "expired", "ok", "ok"]
    assert executor.shutdown(WAIT)


def test_shutdown_within_a_bounded_time_drops_and_counts_the_rest(
    gate: threading.Event,
) -> None:
    runner = FakeRunner(gate=gate)
    executor = ShadowExecutor(workers=1, queue_size=8, timeout_s=60)
    assert all(executor.submit(job(runner, i)) for i in range(6))
    assert runner.started.wait(WAIT)
    assert executor.shutdown(timeout=0.05) is False  # job 0 is stuck in the candidate
    stats = stats_of(executor)
    assert (stats.submitted, stats.dropped, stats.sampled) == (1, 5, 6)
    assert executor.submit(job(runner, 6)) is False  # closed
    assert stats.dropped == 6
    gate.set()
    assert executor.force_flush(WAIT)
    assert stats.completed == 1


def test_clean_shutdown_runs_what_is_queued() -> None:
    executor = ShadowExecutor(workers=2)
    assert all(executor.submit(job(FakeRunner(), i)) for i in range(5))
    assert executor.shutdown(WAIT)
    assert stats_of(executor).completed == 5


def test_worst_disagreements_keep_the_n_worst_with_request_ids() -> None:
    executor = ShadowExecutor(policy_for=lambda model: ComparisonPolicy(atol=0.5, rtol=0.0))
    runner = FakeRunner()
    for i in range(15):
        assert executor.submit(job(runner, i, x=float(i)))  # error of job i is i
    assert executor.submit(job(runner, 99, x=[0.0, 0.0]))  # a shape mismatch ranks first
    assert executor.force_flush(WAIT)
    stats = stats_of(executor)
    worst = stats.worst()
    assert [w.request_id for w in worst] == ["r99"] + [f"r{i}" for i in range(14, 5, -1)]
    assert (worst[0].reason, worst[0].max_abs_err) == ("shape", None)
    assert (worst[1].output, worst[1].routing_key, worst[1].max_abs_err) == ("y", "k14", 14.0)
    rate = stats.disagreement_rate()
    assert (rate.count, rate.n) == (15, 16)  # only job 0 (error 0 <= atol) agrees
    snapshot = stats.snapshot()
    json.dumps(snapshot.as_dict(), allow_nan=False)  # JSON-able: the shape mismatch's inf: None
    assert snapshot.worst[0].severity is None
    assert snapshot.outputs["y"].count == 16
    assert snapshot.outputs["y"].shape_mismatch == 1
    assert snapshot.outputs["y"].max_abs_err == 14.0
    assert executor.shutdown(WAIT)


def test_latency_percentiles_are_nearest_rank() -> None:
    clock = FakeClock()
    executor = ShadowExecutor(timeout_s=1e9, clock=clock, queue_size=128)
    runner = FakeRunner(clock=clock)
    for i in range(1, 101):  # run i takes i ms
        assert executor.submit(job(runner, i, x=i / 1000, at=clock.now))
    assert executor.force_flush(WAIT)
    latency = stats_of(executor).snapshot().latency
    assert latency.samples == 100
    assert latency.p50 == pytest.approx(50.0)
    assert latency.p99 == pytest.approx(99.0)
    assert executor.shutdown(WAIT)


def test_reset_starts_the_candidate_from_zero() -> None:
    executor = ShadowExecutor()
    runner = FakeRunner()
    assert executor.submit(job(runner, 0, x=1.0))
    assert executor.force_flush(WAIT)
    old = stats_of(executor)
    assert (old.completed, old.disagreements) == (1, 1)
    fresh = executor.reset("m", "2")
    assert executor.stats("m") is fresh and executor.stats("m", "2") is fresh
    assert (fresh.sampled, fresh.completed, fresh.disagreements, fresh.worst()) == (0, 0, 0, [])
    assert executor.submit(job(runner, 1))
    assert executor.force_flush(WAIT)
    assert (fresh.completed, fresh.disagreements, old.completed) == (1, 0, 1)
    assert executor.shutdown(WAIT)


def test_a_failing_listener_is_logged_and_the_worker_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def listener(result: ShadowResult) -> None:
        raise ValueError("listener bug")

    executor = ShadowExecutor(on_result=listener)
    assert executor.submit(job(FakeRunner(), 0)) and executor.submit(job(FakeRunner(), 1))
    assert executor.force_flush(WAIT)
    assert stats_of(executor).completed == 2
    assert "shadow result of model m request r0 failed" in caplog.text
    assert "listener bug" in caplog.text
    assert executor.shutdown(WAIT)


def test_a_failing_policy_lookup_counts_as_an_error_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def policy_for(model: str) -> ComparisonPolicy:
        raise KeyError(model)

    executor = ShadowExecutor(policy_for=policy_for)
    assert executor.submit(job(FakeRunner(), 0))
    assert executor.force_flush(WAIT)
    stats = stats_of(executor)
    assert (stats.errors, stats.completed) == (1, 0)
    assert stats.recent_errors() == ["internal: KeyError('m')"]
    assert "shadow job of model m request r0 failed" in caplog.text
    assert executor.shutdown(WAIT)


def test_busy_budget_sheds_instead_of_queueing() -> None:
    """Past its busy-time budget the executor drops (and counts) jobs it could have queued."""
    clock = FakeClock()
    runner = FakeRunner(clock=clock)  # each run "takes" x = 1 second of the fake clock
    executor = ShadowExecutor(queue_size=100, timeout_s=1e9, clock=clock, max_busy=0.1)
    try:
        first = executor.submit(job(runner, 0, x=1.0, at=clock.now))
        assert executor.force_flush(WAIT)
        # That run spent 1 s against a 0.05 s burst: the next ones wait for the budget to
        # refill at 0.1 s per second, so they are shed.
        later = [executor.submit(job(runner, i, x=1.0, at=clock.now)) for i in range(1, 4)]
        clock.now += 20.0  # 20 s later the budget has refilled to its burst
        again = executor.submit(job(runner, 9, x=0.0, at=clock.now))
        assert executor.force_flush(WAIT)
    finally:
        executor.shutdown(WAIT)
    stats = executor.stats("m")
    assert stats is not None
    assert first and later == [False, False, False] and again
    assert (stats.dropped, stats.completed, stats.sampled) == (3, 2, 5)
