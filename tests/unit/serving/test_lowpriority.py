"""A candidate's runs at a lower OS priority: the threads, and which runs go through them."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from server.serving.lowpriority import LOW_NICE, LowPriorityThreads, low_priority_threads
from server.serving.roles import Placement, RoleRunner
from server.serving.signature import Signature


def _where() -> tuple[str, int, int]:
    """The calling thread's name, nice value and scheduling policy."""
    tid = threading.get_native_id()
    return (
        threading.current_thread().name,
        os.getpriority(os.PRIO_PROCESS, tid),
        os.sched_getscheduler(tid),
    )


def test_low_runs_on_threads_ten_nice_steps_below_the_caller() -> None:
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    name, nice, policy = low_priority_threads("low").call(_where)
    assert name.startswith("canaryserve-low") and policy == os.SCHED_OTHER
    assert nice == min(19, mine + LOW_NICE)  # never above the server's own threads
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # caller unchanged


def test_idle_runs_on_threads_in_sched_idle() -> None:
    name, _, policy = low_priority_threads("idle").call(_where)
    assert name.startswith("canaryserve-idle") and policy == os.SCHED_IDLE
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the caller keeps its class


def test_a_call_hands_back_its_result_or_its_exception() -> None:
    pool = LowPriorityThreads("low", threads=1)
    assert pool.call(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        pool.call(lambda: 1 / 0)
    assert pool.applied is not None


class _Inner:
    """A runner that answers with the name of the thread it ran on."""

    def __init__(self) -> None:
        self.signature = Signature(inputs=(), outputs=())
        self.first_dims: tuple[object, ...] = ()
        self.shrink_arena = False

    def run(self, outputs: Sequence[str], feeds: object) -> list[np.ndarray]:  # type: ignore[type-arg]
        return [np.array(threading.current_thread().name)]


def _runner(placement: Placement, stable: bool) -> RoleRunner:
    return RoleRunner(Path("m/2/model.onnx"), placement, stable, lambda *_: _Inner())


def _thread_of(runner: RoleRunner) -> str:
    return str(runner.run([], {})[0])


def test_a_candidate_runs_at_its_priority_and_stable_on_the_callers_thread() -> None:
    here = threading.current_thread().name
    candidate = _runner(Placement(candidate_priority="low"), stable=False)
    assert _thread_of(candidate).startswith("canaryserve-low") and candidate.off_thread
    candidate.set_role(True)  # promoted: its runs come back to the request's thread
    assert _thread_of(candidate) == here and not candidate.off_thread
    candidate.set_role(False)  # rolled back to candidate again
    assert _thread_of(candidate).startswith("canaryserve-low")
    assert _thread_of(_runner(Placement(candidate_priority="idle"), False)).startswith(
        "canaryserve-idle"
    )
    assert _thread_of(_runner(Placement(), False)) == here  # the default: "normal"
    assert _thread_of(_runner(Placement(candidate_priority="low"), stable=True)) == here
