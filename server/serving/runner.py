"""Running one model version: the Runner protocol and its onnxruntime implementation."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

# Imported with the module, not at the first load, so its ~40 MB are no version's load RSS.
import onnxruntime as ort

from server.errors import VersionNotReady
from server.serving.dtypes import from_onnx_type
from server.serving.footprint import CpuSampler
from server.serving.signature import Signature, TensorSpec

__all__ = ["Arrays", "OnnxRunner", "Runner", "retired"]

Arrays: TypeAlias = dict[str, npt.NDArray[np.generic]]


class Runner(Protocol):
    """What the server needs of a loaded model: its signature and a way to run it."""

    @property
    def signature(self) -> Signature: ...

    def run(self, outputs: Sequence[str], feeds: Arrays) -> list[npt.NDArray[np.generic]]: ...


def retired(path: Path) -> VersionNotReady:
    """The error of a call that reached a version's runner after it was closed (unloaded, or
    replaced by a forced load) while the call waited for it."""
    model, version = path.parent.parent.name, path.parent.name
    return VersionNotReady(
        model, version, "UNAVAILABLE", "unloaded while this call waited for it; retry the call"
    )


class OnnxRunner:
    """A Runner over one onnxruntime InferenceSession."""

    def __init__(self, path: Path, intra_op_threads: int = 0, shrink_arena: bool = False) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # model failures reach the caller; no log spam
        self.path = path
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        session = self._session
        args = (*session.get_inputs(), *session.get_outputs())
        self.signature = Signature(
            inputs=tuple(_spec(a) for a in session.get_inputs()),
            outputs=tuple(_spec(a) for a in session.get_outputs()),
        )
        #: Every input's and output's first dimension as onnxruntime reports it (int, symbolic
        #: name or None), so the scheduler batches only on one shared batch dimension.
        self.first_dims: tuple[object, ...] = tuple(a.shape[0] if a.shape else None for a in args)
        #: CPU time of the threads running this session (sampled; server.serving.footprint).
        self.cpu = CpuSampler()
        #: Whether each run hands the memory its arena grew by back (a candidate's runs, by
        #: default: without it a run that needs 1 GiB keeps 1 GiB, docs/scheduling.md).
        self.shrink_arena = shrink_arena
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    @property
    def closed(self) -> bool:
        return self._session is None

    def close(self) -> None:
        """Drop the session: runs in flight finish on it; later ones raise VersionNotReady."""
        self._session = None

    def run(self, outputs: Sequence[str], feeds: Arrays) -> list[npt.NDArray[np.generic]]:
        session = self._session
        if session is None:
            raise retired(self.path)
        options = self._shrink if self.shrink_arena else None
        if not self.cpu.due():
            arrays: list[npt.NDArray[np.generic]] = session.run(outputs, feeds, options)
            return arrays
        start = time.thread_time_ns()
        arrays = session.run(outputs, feeds, options)
        self.cpu.add(time.thread_time_ns() - start)
        return arrays


def _spec(arg: object) -> TensorSpec:
    name, onnx_type, shape = arg.name, arg.type, arg.shape  # type: ignore[attr-defined]
    dtype = from_onnx_type(onnx_type)
    if dtype is None:
        raise ValueError(f"tensor '{name}' has type {onnx_type}, which canaryserve cannot serve")
    return TensorSpec(name, dtype, tuple(d if isinstance(d, int) else None for d in shape))
