"""Telling a run that broke the memory budget from a model's own failure."""

from __future__ import annotations

import pytest

from server.serving.budget import is_out_of_memory

#: What onnxruntime 1.32 said when RLIMIT_DATA refused its allocation (arena on, arena off).
ARENA = (
    "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Expand node."
    " Name:'' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360"
    " void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*)"
    " Failed to allocate memory for requested buffer of size 1073741824"
)
NO_ARENA = (
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running"
    " Expand node. Name:'' Status Message: std::bad_alloc"
)


#: An arena at its max_mem (an environment allocator's OrtArenaCfg).
AT_MAX_MEM = (
    "BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) Available memory of"
    " 536869888 is smaller than requested bytes of 1073741824"
)


@pytest.mark.parametrize(
    ("kind", "message"),
    [("Fail", ARENA), ("RuntimeException", NO_ARENA), ("Fail", AT_MAX_MEM), ("MemoryError", "")],
)
def test_failed_allocations_are_out_of_memory(kind: str, message: str) -> None:
    assert is_out_of_memory(kind, message)


def test_a_model_failure_is_not() -> None:
    gather = (
        "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while"
        " running Gather node. Name:'' Status Message: indices element out of data bounds,"
        " idx=1000 must be within the inclusive range [-1,0]"
    )
    assert not is_out_of_memory("InvalidArgument", gather)
