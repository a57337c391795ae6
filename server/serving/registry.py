"""Model versions side by side: one onnxruntime session per version, load-new-before-unload-old.

The repository is a directory `<root>/<model>/<version>/model.onnx`; only directories whose
names follow `server.serving.names` (model names, versions: positive integers without leading
zeros) are loaded, so every name the registry holds is valid. Readers take the current `dict`
snapshot without a lock; writers build a new one and swap it in, so a reload never interrupts
calls in flight on unchanged versions.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from server.errors import (
    CanaryServeError,
    FailedPrecondition,
    ModelNotFound,
    ModelNotReady,
    ModelVersionNotFound,
    VersionNotReady,
)
from server.serving.footprint import resident_bytes
from server.serving.names import is_model_name, is_version
from server.serving.runner import Runner
from server.serving.signature import Signature
from server.serving.warmup import WarmupSettings, warm_up

__all__ = [
    "MODEL_FILE",
    "LoadState",
    "ModelVersion",
    "Registry",
    "RunnerFactory",
    "VersionChange",
    "VersionStats",
    "WarmupFor",
    "file_sha256",
]

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"


RunnerFactory: TypeAlias = Callable[[Path], Runner]
ChangeListener: TypeAlias = Callable[[str], None]
#: A model's configured warm-up settings, or None: a synthesized sample, whose failure is logged.
WarmupFor: TypeAlias = Callable[[str], WarmupSettings | None]


def _no_settings(model: str) -> WarmupSettings | None:
    return None


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


#: Called with each forced change after the new version serves (the app audits it).
ReplaceListener: TypeAlias = Callable[[VersionChange], None]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


class Registry:
    """Loads, serves and unloads model versions from a repository directory."""

    def __init__(
        self, root: Path, runner_factory: RunnerFactory, warmup_for: WarmupFor = _no_settings
    ) -> None:
        self.root = root
        self._factory = runner_factory
        self._warmup_for = warmup_for
        self._models: Mapping[str, Mapping[str, ModelVersion]] = {}
        self._write = threading.Lock()
        self._listeners: list[ChangeListener] = []
        self._replace_listeners: list[ReplaceListener] = []

    def on_replace(self, listener: ReplaceListener) -> None:
        """Call `listener(change)` after a forced load replaced a version's file."""
        self._replace_listeners.append(listener)

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

    def unroutable(self, model: str, version: str | None = None) -> CanaryServeError:
        """Why `model` (pinned to `version`, if given) has no route: the error to raise.

        NOT_FOUND only when the repository does not hold the model (or the version); a model it
        holds whose versions cannot serve is UNAVAILABLE with each version's reason, and one
        with a ready version not routed yet (a load in progress) is UNAVAILABLE too.
        """
        versions = self._models.get(model)
        if versions is None:
            return ModelNotFound(model, known=list(self._models))
        if version is not None:
            mv = versions.get(version)
            if mv is None:
                return ModelVersionNotFound(model, version, known=sorted(versions, key=int))
            if mv.state is not LoadState.READY:
                return VersionNotReady(model, version, mv.state.value, mv.reason)
        if not versions:
            return ModelNotReady(
                model, f"the repository holds no version of it ({model}/<version>/{MODEL_FILE})"
            )
        if any(mv.state is LoadState.READY for mv in versions.values()):
            return ModelNotReady(model, "it is being loaded; retry shortly")
        reasons = "; ".join(
            f"version {v}: {mv.state.value}" + (f": {mv.reason}" if mv.reason else "")
            for v, mv in sorted(versions.items(), key=lambda kv: int(kv[0]))
        )
        return ModelNotReady(model, f"no version is ready ({reasons})")

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

    def load(
        self, model: str, version: str | None = None, force: bool = False
    ) -> list[ModelVersion]:
        """(Re)load a model's versions from disk, or just `version`; new sessions are ready
        before old ones go. Returns the versions loaded, ready or not.

        Versions are immutable: a version whose file's sha256 differs from the one it was
        loaded from keeps serving the old session, and once the others are loaded this raises
        FailedPrecondition naming it, unless `force` (each forced change is reported to the
        on_replace listeners).
        """
        if not is_model_name(model) or not (self.root / model).is_dir():
            raise ModelNotFound(model, known=self._on_disk())
        model_dir = self.root / model
        refused: list[VersionChange] = []
        forced: list[VersionChange] = []

        def load_one(vdir: Path, before: ModelVersion | None) -> ModelVersion:
            mv, change = self._load_version(model, vdir, before, force)
            if change is not None and not force:
                refused.append(change)
                assert before is not None
                return before
            if change is not None:
                forced.append(change)
            return mv

        with self._write:
            old = self._models.get(model, {})
            if version is not None:
                vdir = model_dir / version
                if not is_version(version) or not vdir.is_dir():
                    on_disk = [p.name for p in model_dir.iterdir() if is_version(p.name)]
                    raise ModelVersionNotFound(model, version, known=sorted(on_disk, key=int))
                loaded = {version: load_one(vdir, old.get(version))}
                fresh = {**old, **loaded}
            else:
                fresh = {}
                for vdir in sorted(model_dir.iterdir()):
                    if not vdir.is_dir():
                        continue
                    if is_version(vdir.name):
                        fresh[vdir.name] = load_one(vdir, old.get(vdir.name))
                    elif not vdir.name.startswith((".", "_")):
                        log.warning(
                            "skipping %s: a version is a positive integer, no leading 0", vdir
                        )
                loaded = fresh
            self._models = {**self._models, model: fresh}
        self._notify(model)
        for change in forced:
            log.warning("model %s: forced load: %s", model, change.describe())
            for replaced in self._replace_listeners:
                replaced(change)
        if refused:
            detail = "; ".join(c.describe() for c in refused)
            numbers = ", ".join(c.version for c in refused)
            raise FailedPrecondition(
                f"model '{model}': {detail}; give it a new version number (a version is"
                f" immutable; version {numbers} keeps serving what it loaded; load with"
                " force to replace it anyway)"
            )
        return sorted(loaded.values(), key=lambda mv: int(mv.version))

    def unload(self, model: str, version: str | None = None) -> list[ModelVersion]:
        """Stop serving every version of `model`, or just `version` (listed as UNAVAILABLE
        "unloaded" until loaded again). Returns the versions unloaded."""
        with self._write:
            old = self.versions(model)
            if version is not None and version not in old:
                raise ModelVersionNotFound(model, version, known=sorted(old, key=int))
            unloaded = {
                v: ModelVersion(
                    model, v, mv.path, LoadState.UNAVAILABLE, "unloaded", sha256=mv.sha256
                )
                for v, mv in old.items()
                if version is None or v == version
            }
            self._models = {**self._models, model: {**old, **unloaded}}
        self._notify(model)
        return sorted(unloaded.values(), key=lambda mv: int(mv.version))

    def add_copy(self, model: str, base: str, wrap: Callable[[Runner], Runner]) -> ModelVersion:
        """Serve a copy of ready version `base` under the next free version number, its runner
        wrapped by `wrap` (a drill's faulty candidate). It has no directory of its own: the
        next load() of the model drops it; remove() ends it sooner."""
        with self._write:
            versions = self.versions(model)
            mv = self.get(model, base)
            assert mv.runner is not None
            number = str(max(int(v) for v in versions) + 1)
            copy = dataclasses.replace(
                mv,
                version=number,
                reason=f"a drill's copy of version {base}",
                runner=wrap(mv.runner),
                stats=VersionStats(),
            )
            self._models = {**self._models, model: {**versions, number: copy}}
        self._notify(model)
        return copy

    def remove(self, model: str, version: str) -> None:
        """Forget a version that has no directory (a drill's copy)."""
        with self._write:
            versions = dict(self.versions(model))
            if versions.pop(version, None) is None:
                return
            self._models = {**self._models, model: versions}
        self._notify(model)

    def _load_version(
        self, model: str, vdir: Path, old: ModelVersion | None, force: bool = False
    ) -> tuple[ModelVersion, VersionChange | None]:
        """The version as loaded now, and the change of its file's identity, if any (the
        caller keeps `old` when that change is not forced)."""
        path = vdir / MODEL_FILE
        version = vdir.name
        if not path.is_file():
            return ModelVersion(
                model, version, path, LoadState.UNAVAILABLE, f"no {MODEL_FILE} in {vdir.name}/"
            ), None
        stamp = _stamp(path)
        if old is not None and old.state is LoadState.READY and old.stamp == stamp:
            return old, None  # unchanged file: keep the warm session and its statistics
        try:
            sha256 = file_sha256(path)
        except OSError as exc:
            reason = f"failed to read: {exc.strerror}"
            return ModelVersion(model, version, path, LoadState.UNAVAILABLE, reason), None
        change = None
        if old is not None and old.sha256 and old.sha256 != sha256:
            change = VersionChange(model, version, old.sha256, sha256)
            if not force:
                return old, change
        elif old is not None and old.state is LoadState.READY and old.sha256 == sha256:
            return dataclasses.replace(old, stamp=stamp), None  # touched, same bytes
        rss_before = resident_bytes()
        try:
            runner = self._factory(path)
        except Exception as exc:  # a broken version must never stop the others
            reason = f"failed to load: {exc}".strip()
            log.warning("model %s version %s %s", model, version, reason)
            return ModelVersion(model, version, path, LoadState.UNAVAILABLE, reason), change
        settings = self._warmup_for(model)
        try:
            warm_up(runner, vdir.parent, settings)
        except Exception as exc:
            if settings is not None:  # the configured sample is meant to work: as in Triton
                reason = f"warm-up failed: {exc}".strip()
                log.warning("model %s version %s %s", model, version, reason)
                return ModelVersion(model, version, path, LoadState.UNAVAILABLE, reason), change
            # A synthesized sample the model refuses says nothing about real input.
            log.warning(
                "model %s version %s: warm-up with synthesized zeros failed (%s); serving it "
                "unwarmed (set [models.%s.warmup] to warm it with inputs it takes)",
                model,
                version,
                str(exc).strip(),
                model,
            )
        rss_after = resident_bytes()
        grown = None if rss_before is None or rss_after is None else max(0, rss_after - rss_before)
        own = getattr(runner, "resident_bytes", None)  # a session in a process of its own
        own_rss = own() if own is not None else None
        if own_rss is not None:
            grown = own_rss
        log.info("loaded model %s version %s (sha256 %s)", model, version, sha256)
        ready = ModelVersion(model, version, path, LoadState.READY, "", runner, stamp)
        return dataclasses.replace(ready, sha256=sha256, load_rss_bytes=grown), change

    def _on_disk(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_model_name(p.name))

    def _notify(self, model: str) -> None:
        for listener in self._listeners:
            listener(model)
