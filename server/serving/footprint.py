"""What a version costs the process beyond its run time: resident memory taken at load, and the
CPU time of the threads that run its sessions (sampled).

onnxruntime's Python API reports no allocator statistics for a CPU session, so a version's
memory is measured from outside: the growth of the process's resident set while its session
is created and warmed up (loads are serialised by the registry, but any other work in the
process at that moment counts too, and memory freed earlier and reused is not seen). The first
version loaded in a process also carries onnxruntime's one-time environment (about 9 MB on
Linux x86-64 with onnxruntime 1.32); the library's import is not counted.

`time.thread_time_ns()` costs about 0.6 µs a call on Linux (a system call, where
`perf_counter_ns` is read from the vDSO), so two calls around every run would cost more than
the 1 µs a run may spend on bookkeeping; one run in `CpuSampler.every` is measured and the sum
scaled up.
"""

from __future__ import annotations

import itertools
import os
import threading

__all__ = ["CpuSampler", "resident_bytes", "resident_bytes_of"]

_STATM = "/proc/self/statm"


def resident_bytes() -> int | None:
    """The process's resident set size now, or None where /proc cannot tell (not Linux)."""
    return _statm_rss(_STATM)


def resident_bytes_of(pid: int) -> int | None:
    """Process `pid`'s resident set size now (an isolated version's process), or None."""
    return _statm_rss(f"/proc/{pid}/statm")


def _statm_rss(statm: str) -> int | None:
    try:
        with open(statm, "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class CpuSampler:
    """Thread CPU time of a kind of call: every `every`-th call measured (`due()`), the rest
    counted.

    The estimate (the measured calls' mean times the calls) is exact when every call costs the same
    and unbiased when costs do not follow the call count's residue. With canaryserve's
    default of one intra-op thread (`intra_op_threads = 1`) a session runs on the calling
    thread, so its thread time is the run's CPU time; with a pool, the pool's share is not
    seen.
    """

    def __init__(self, every: int = 16) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self._calls = itertools.count()
        self._sampled_ns = 0
        self._sampled = 0
        self._seen = 0
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether the call about to start is one to measure (counts every call)."""
        n = next(self._calls)
        self._seen = n + 1  # no lock: a race may leave it a call or two behind
        # Not the first call: that is the warm-up, which allocates and would weigh `every`-fold.
        return n % self.every == self.every - 1

    def add(self, thread_ns: int) -> None:
        """Record a measured call's thread CPU time (`time.thread_time_ns()` difference)."""
        with self._lock:
            self._sampled_ns += thread_ns
            self._sampled += 1

    def seconds(self) -> float:
        """Estimated CPU seconds of every call so far."""
        with self._lock:
            if not self._sampled:
                return 0.0
            return self._sampled_ns / self._sampled * max(self._seen, self._sampled) / 1e9

    def sampled(self) -> int:
        """How many calls were measured (a failed call is not)."""
        with self._lock:
            return self._sampled
