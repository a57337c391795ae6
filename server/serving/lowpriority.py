"""Threads at a lower OS scheduling priority that run calls on behalf of the calling thread.

A candidate's in-process runs go through them (`candidate_priority`, docs/scheduling.md):
onnxruntime releases the GIL while it runs, so what a slow candidate takes from stable's calls
is the core, and the kernel's scheduler is what can give it back. Priorities:

* "low": 10 nice steps below the server's own threads (at most 19; a weight of 110 against
  1024 from nice 0 to 10): about a tenth of a core that a normal thread also wants, all of
  an idle one;
* "idle": SCHED_IDLE, the kernel's lowest class: runs only on a core nothing else of normal
  priority wants, and a waking normal thread preempts it at once;
* "normal": no handoff, the run stays on the request's thread.

Linux sets both per thread (`setpriority(PRIO_PROCESS, tid)`, `sched_setscheduler(tid)`), and
a thread cannot take a normal priority back without CAP_SYS_NICE, so the calls are handed to
threads of their own rather than run on the request thread at a lowered priority. Threads that
onnxruntime starts from such a thread inherit its priority. Where the OS refuses (no per-thread
priority), the threads run at normal priority and the log says so once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["PRIORITIES", "LowPriorityThreads", "low_priority_threads"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: Values of `candidate_priority`, normal first.
PRIORITIES = ("normal", "low", "idle")
#: The nice value of "low".
LOW_NICE = 10


def lower_this_thread(priority: str) -> None:
    """Give the calling thread `priority` ("low" or "idle"); raises OSError if the OS refuses."""
    tid = threading.get_native_id()
    if priority == "idle":
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    elif priority == "low":  # relative: in a server already niced, still below its threads
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + LOW_NICE))
    else:
        raise ValueError(f"no lower priority called {priority!r}")


class LowPriorityThreads:
    """A pool of threads at `priority` that runs calls and hands back their results.

    One pool per priority serves every candidate of the process; threads start as calls need
    them. Its size is above the candidate slots a server normally has (one per candidate), so
    a run waits in its version's queue, where limits and timeouts apply, not in this pool.
    """

    def __init__(self, priority: str, threads: int = 16) -> None:
        self.priority = priority
        self.applied: bool | None = None  # whether the OS took the priority (after a call)
        self._warned = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, f"canaryserve-{priority}", self._lower)

    def _lower(self) -> None:
        try:
            lower_this_thread(self.priority)
            self.applied = True
        except (AttributeError, OSError) as exc:  # no such call here, or not permitted
            if self._warned.acquire(blocking=False):
                log.warning(
                    "cannot give candidate runs the %s priority (%s); they run at normal priority",
                    self.priority,
                    exc,
                )
            self.applied = False

    def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`fn(*args, **kwargs)` on one of the threads; its result or its exception."""
        return self._pool.submit(fn, *args, **kwargs).result()


_POOLS: dict[str, LowPriorityThreads] = {}
_POOLS_LOCK = threading.Lock()


def low_priority_threads(priority: str) -> LowPriorityThreads:
    """The process's pool at `priority` (one per value, its threads started on first use)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(priority)
        if pool is None:
            pool = _POOLS[priority] = LowPriorityThreads(priority)
        return pool
