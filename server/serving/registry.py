"""Model versions side by side: one onnxruntime session per version, load-new-before-unload-old.

The repository is a directory `<root>/<model>/<version>/model.onnx`; only directories whose
names follow `server.serving.names` (model names, versions: positive integers without leading
zeros) are loaded, so every name the registry holds is valid. Readers take the current `dict`
snapshot without a lock; writers build a new one and swap it in, so a reload never interrupts
calls in flight on unchanged versions.

What the registry holds of each version is `server.serving.versions`; loading one version from
its directory (its identity, runner, warm-up and footprint) is `server.serving.loader`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
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
from server.serving.loader import RunnerFactory, VersionLoader, WarmupFor, no_warmup_settings
from server.serving.names import is_model_name, is_version
from server.serving.runner import Runner
from server.serving.versions import (
    MODEL_FILE,
    LoadState,
    ModelVersion,
    VersionChange,
    VersionStats,
    file_sha256,
)

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

ChangeListener: TypeAlias = Callable[[str], None]
#: Called with each forced change after the new version serves (the app audits it).
ReplaceListener: TypeAlias = Callable[[VersionChange], None]


class Registry:
    """Loads, serves and unloads model versions from a repository directory."""

    def __init__(
        self, root: Path, runner_factory: RunnerFactory, warmup_for: WarmupFor = no_warmup_settings
    ) -> None:
        self.root = root
        self._loader = VersionLoader(runner_factory, warmup_for)
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
            mv, change = self._loader.load(model, vdir, before, force)
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

    def _on_disk(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_model_name(p.name))

    def _notify(self, model: str) -> None:
        for listener in self._listeners:
            listener(model)
