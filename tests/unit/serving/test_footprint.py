"""What a version costs beyond its run time: the process's resident memory, and the sampled
thread CPU time of its session runs."""

from __future__ import annotations

import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.serving.footprint import CpuSampler, resident_bytes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_resident_bytes_sees_memory_the_process_touches() -> None:
    before = resident_bytes()
    block = bytearray(64 * 1024 * 1024)  # zero-filled: every page is written, so resident
    after = resident_bytes()
    assert before is not None and after is not None
    assert after - before >= 48 * 1024 * 1024
    del block


@given(every=st.integers(1, 64), calls=st.integers(0, 2_000))
def test_one_call_in_every_is_measured_and_never_the_first(every: int, calls: int) -> None:
    sampler = CpuSampler(every)
    due = [sampler.due() for _ in range(calls)]
    assert sum(due) == calls // every
    assert not any(due[: every - 1])


@given(every=st.integers(1, 32), calls=st.integers(1, 500), cost=st.integers(1, 10**9))
def test_equal_calls_are_estimated_exactly(every: int, calls: int, cost: int) -> None:
    sampler = CpuSampler(every)
    for _ in range(calls):
        if sampler.due():
            sampler.add(cost)
    expected = calls * cost / 1e9 if calls >= every else 0.0
    assert sampler.seconds() == pytest.approx(expected)
    assert sampler.sampled() == calls // every


def test_the_estimate_follows_the_measured_threads_cpu_time() -> None:
    sampler = CpuSampler(every=2)
    spent = 0
    for _ in range(20):
        start = time.thread_time_ns()
        due = sampler.due()
        begin = time.thread_time_ns()
        while time.thread_time_ns() - begin < 2_000_000:  # 2 ms of this thread's CPU
            pass
        if due:
            sampler.add(time.thread_time_ns() - begin)
        spent += time.thread_time_ns() - start
    assert sampler.seconds() == pytest.approx(spent / 1e9, rel=0.25)


def test_a_sampling_period_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="every must be >= 1"):
        CpuSampler(0)
