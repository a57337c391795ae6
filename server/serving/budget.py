"""A version's memory budget: the limit its isolated process runs under, and how a run that
broke it is told from a model's own failure.

The budget is enforced by the kernel, not by sampling: the isolated process sets RLIMIT_DATA
(private writable memory: the heap, anonymous mappings, onnxruntime's arena) to the budget
before it loads the model. An allocation past it fails inside onnxruntime (`std::bad_alloc`,
or the arena's "Failed to allocate memory") or numpy (`MemoryError`); the run fails, the
process lives on and serves requests that fit. Shared-memory tensors and the mapped code of
the libraries are not private writable memory, so they do not count.
"""

from __future__ import annotations

import resource

__all__ = ["MIB", "apply_limit", "is_out_of_memory"]

MIB = 1 << 20

#: What onnxruntime and numpy say when an allocation fails.
_SIGNS = (
    "bad_alloc",
    "failed to allocate memory",
    "unable to allocate",
    "out of memory",
    "is smaller than requested bytes",  # an arena at its max_mem
)


def is_out_of_memory(kind: str, message: str) -> bool:
    """Whether an exception (its type name and message) is an allocation that failed."""
    if kind == "MemoryError":
        return True
    lowered = message.lower()
    return any(sign in lowered for sign in _SIGNS)


def apply_limit(budget_mb: int) -> None:
    """Limit this process's private writable memory to `budget_mb` MiB (0: no limit)."""
    if budget_mb > 0:
        limit = budget_mb * MIB
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
