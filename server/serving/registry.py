"""Model versions side by side: one onnxruntime session per version, load-new-before-unload-old.

The repository is a directory `<root>/<model>/<version>/model.onnx`; only directories whose
names follow `server.serving.names` (model names, versions: positive integers without leading
zeros) are loaded, so every name the registry holds is valid. Readers take the current `dict`
snapshot without a lock; writers build a new one and swap it in, so a reload never interrupts
calls in flight on unchanged versions.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np

from server.errors import ModelNotFound, ModelVersionNotFound, VersionNotReady
from server.serving.names import is_model_name, is_version
from server.serving.runner import Arrays, Runner
from server.serving.signature import Signature

__all__ = [
    "MODEL_FILE",
    "LoadState",
    "ModelVersion",
    "Registry",
    "RunnerFactory",
    "VersionStats",
]

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"


RunnerFactory: TypeAlias = Callable[[Path], Runner]
ChangeListener: TypeAlias = Callable[[str], None]


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
    """

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0
    last_inference_ms: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_success(self, total_ns: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        with self.lock:
            self.success_count += 1
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
    stats: VersionStats = field(default_factory=VersionStats, compare=False)

    @property
    def signature(self) -> Signature:
        assert self.runner is not None, "only ready versions have a signature"
        return self.runner.signature


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


def _warm_up(runner: Runner) -> None:
    feeds: Arrays = {}
    for spec in runner.signature.inputs:
        shape = tuple(1 if d is None else d for d in spec.shape)
        if spec.dtype.oip == "BYTES":
            feeds[spec.name] = np.full(shape, "", dtype=object)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype.numpy)
    runner.run(runner.signature.output_names, feeds)


class Registry:
    """Loads, serves and unloads model versions from a repository directory."""

    def __init__(self, root: Path, runner_factory: RunnerFactory) -> None:
        self.root = root
        self._factory = runner_factory
        self._models: Mapping[str, Mapping[str, ModelVersion]] = {}
        self._write = threading.Lock()
        self._listeners: list[ChangeListener] = []

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener(model)` after every load or unload of `model`."""
        self._listeners.append(listener)

    # -- reading (no locks) --

    def models(self) -> list[str]:
        return sorted(self._models)

    def versions(self, model: str) -> Mapping[str, ModelVersion]:
        versions = self._models.get(model)
        if versions is None:
            raise ModelNotFound(model, known=list(self._models))
        return versions

    def ready_versions(self, model: str) -> frozenset[str]:
        versions = self._models.get(model, {})
        return frozenset(v for v, mv in versions.items() if mv.state is LoadState.READY)

    def highest_ready(self, model: str) -> str | None:
        ready = self.ready_versions(model)
        return max(ready, key=int) if ready else None

    def get(self, model: str, version: str) -> ModelVersion:
        """The ready version, or the error that says why it cannot serve."""
        versions = self._models.get(model)
        mv = versions.get(version) if versions is not None else None
        if mv is None:
            known = sorted(self.versions(model), key=int)
            raise ModelVersionNotFound(model, version, known=known)
        if mv.state is not LoadState.READY:
            raise VersionNotReady(model, version, mv.state.value, mv.reason)
        return mv

    def ready_runner(self, model: str, version: str) -> Runner | None:
        """The runner of a ready version, or None (never raises: for side branches)."""
        mv = self._models.get(model, {}).get(version)
        return mv.runner if mv is not None and mv.state is LoadState.READY else None

    def index(self) -> list[ModelVersion]:
        """Every known version, ready or not, sorted by model then version."""
        return [
            mv
            for model in sorted(self._models)
            for _, mv in sorted(self._models[model].items(), key=lambda kv: int(kv[0]))
        ]

    # -- writing (serialised) --

    def load_all(self) -> None:
        """Load every model found in the repository."""
        for model_dir in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not model_dir.is_dir() or model_dir.name.startswith((".", "_")):
                continue
            if is_model_name(model_dir.name):
                self.load(model_dir.name)
            else:
                log.warning("skipping %s: not a valid model name", model_dir)

    def load(self, model: str, version: str | None = None) -> list[ModelVersion]:
        """(Re)load a model's versions from disk, or just `version`; new sessions are ready
        before old ones go. Returns the versions loaded, ready or not."""
        if not is_model_name(model) or not (self.root / model).is_dir():
            raise ModelNotFound(model, known=self._on_disk())
        model_dir = self.root / model
        with self._write:
            old = self._models.get(model, {})
            if version is not None:
                vdir = model_dir / version
                if not is_version(version) or not vdir.is_dir():
                    on_disk = [p.name for p in model_dir.iterdir() if is_version(p.name)]
                    raise ModelVersionNotFound(model, version, known=sorted(on_disk, key=int))
                loaded = {version: self._load_version(model, vdir, old.get(version))}
                fresh = {**old, **loaded}
            else:
                fresh = {}
                for vdir in sorted(model_dir.iterdir()):
                    if not vdir.is_dir():
                        continue
                    if is_version(vdir.name):
                        fresh[vdir.name] = self._load_version(model, vdir, old.get(vdir.name))
                    elif not vdir.name.startswith((".", "_")):
                        log.warning(
                            "skipping %s: a version is a positive integer, no leading 0", vdir
                        )
                loaded = fresh
            self._models = {**self._models, model: fresh}
        self._notify(model)
        return sorted(loaded.values(), key=lambda mv: int(mv.version))

    def unload(self, model: str, version: str | None = None) -> list[ModelVersion]:
        """Stop serving every version of `model`, or just `version` (listed as UNAVAILABLE
        "unloaded" until loaded again). Returns the versions unloaded."""
        with self._write:
            old = self.versions(model)
            if version is not None and version not in old:
                raise ModelVersionNotFound(model, version, known=sorted(old, key=int))
            unloaded = {
                v: ModelVersion(model, v, mv.path, LoadState.UNAVAILABLE, "unloaded")
                for v, mv in old.items()
                if version is None or v == version
            }
            self._models = {**self._models, model: {**old, **unloaded}}
        self._notify(model)
        return sorted(unloaded.values(), key=lambda mv: int(mv.version))

    def _load_version(self, model: str, vdir: Path, old: ModelVersion | None) -> ModelVersion:
        path = vdir / MODEL_FILE
        version = vdir.name
        if not path.is_file():
            return ModelVersion(
                model, version, path, LoadState.UNAVAILABLE, f"no {MODEL_FILE} in {vdir.name}/"
            )
        stamp = _stamp(path)
        if old is not None and old.state is LoadState.READY and old.stamp == stamp:
            return old  # unchanged file: keep the warm session and its statistics
        try:
            runner = self._factory(path)
            _warm_up(runner)
        except Exception as exc:  # a broken version must never stop the others
            reason = f"failed to load: {exc}".strip()
            log.warning("model %s version %s %s", model, version, reason)
            return ModelVersion(model, version, path, LoadState.UNAVAILABLE, reason)
        log.info("loaded model %s version %s", model, version)
        return ModelVersion(model, version, path, LoadState.READY, "", runner, stamp)

    def _on_disk(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_model_name(p.name))

    def _notify(self, model: str) -> None:
        for listener in self._listeners:
            listener(model)
