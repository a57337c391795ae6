"""What the registry holds of one model version: its load state, its identity (the model
file's sha256), its runner, and its cumulative statistics; and a change of a version's file
under the same number.
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.serving.runner import Runner
from server.serving.signature import Signature

__all__ = [
    "MODEL_FILE",
    "LoadState",
    "ModelVersion",
    "VersionChange",
    "VersionStats",
    "file_sha256",
]

MODEL_FILE = "model.onnx"


class LoadState(enum.StrEnum):
    READY = "READY"
    LOADING = "LOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass
class VersionStats:
    """Cumulative counters of one version, for ModelStatistics (Triton's meaning).

    A successful request's time holds compute_input (routing, the version lookup, validating
    and decoding the inputs), compute_infer (the session run) and compute_output (encoding the
    response); the rest of `success_ns` is handing a shadow job over, when there is one.
    There is no scheduler queue, so queue time is zero and its count is the request count.
    `inference_count` is Triton's: the rows of the successful requests of a version that
    batches (a request of batch 4 is 4 inferences), one a request otherwise.
    """

    success_count: int = 0
    inference_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0
    last_inference_ms: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_success(
        self, total_ns: int, input_ns: int, infer_ns: int, output_ns: int, rows: int = 1
    ) -> None:
        now_ms = time.time_ns() // 1_000_000
        with self.lock:
            self.success_count += 1
            self.inference_count += rows
            self.success_ns += total_ns
            self.input_ns += input_ns
            self.infer_ns += infer_ns
            self.output_ns += output_ns
            self.last_inference_ms = now_ms

    def record_failure(self, total_ns: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        with self.lock:
            self.fail_count += 1
            self.fail_ns += total_ns
            self.last_inference_ms = now_ms


@dataclass(frozen=True)
class ModelVersion:
    """One version of a model as the registry holds it."""

    model: str
    version: str
    path: Path
    state: LoadState
    reason: str = ""
    runner: Runner | None = None
    stamp: tuple[int, int] = (0, 0)  # (mtime_ns, size) of the file the runner was built from
    # sha256 of the model file the runner was built from: the version's identity. Kept when
    # the version is unloaded, so a later load still notices a file changed under its number.
    sha256: str = ""
    stats: VersionStats = field(default_factory=VersionStats, compare=False)
    #: Growth of the process's resident memory while the session was built and warmed up
    #: (server.serving.footprint), or the resident memory of the version's own process after
    #: its warm-up when it runs in one; None where the platform cannot tell.
    load_rss_bytes: int | None = None

    @property
    def signature(self) -> Signature:
        assert self.runner is not None, "only ready versions have a signature"
        return self.runner.signature


@dataclass(frozen=True)
class VersionChange:
    """A version whose model file changed under the same number: refused, or forced."""

    model: str
    version: str
    old_sha256: str
    new_sha256: str

    def describe(self) -> str:
        return (
            f"version {self.version} changed on disk (sha256 {self.old_sha256[:12]}… →"
            f" {self.new_sha256[:12]}…)"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
