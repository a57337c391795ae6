"""Loading one version from its directory: the model file's identity (sha256), the runner,
the warm-up, and the memory the version took.

A version whose file is unchanged keeps its warm session; one whose bytes changed under the
same number is reported as a VersionChange (the registry refuses it unless forced); a version
that cannot be read, built or warmed up with its configured sample is UNAVAILABLE with the
reason, and never stops the others.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from server.serving.footprint import resident_bytes
from server.serving.runner import Runner
from server.serving.versions import (
    MODEL_FILE,
    LoadState,
    ModelVersion,
    VersionChange,
    file_sha256,
)
from server.serving.warmup import WarmupSettings, warm_up

__all__ = ["RunnerFactory", "VersionLoader", "WarmupFor", "no_warmup_settings"]

log = logging.getLogger(__name__)

RunnerFactory: TypeAlias = Callable[[Path], Runner]
#: A model's configured warm-up settings, or None: a synthesized sample, whose failure is logged.
WarmupFor: TypeAlias = Callable[[str], WarmupSettings | None]


def no_warmup_settings(model: str) -> WarmupSettings | None:
    """No model has warm-up settings: each warms up with a synthesized sample."""
    return None


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


class VersionLoader:
    """Builds and warms up the runner of one version directory (module docstring)."""

    def __init__(
        self, runner_factory: RunnerFactory, warmup_for: WarmupFor = no_warmup_settings
    ) -> None:
        self._factory = runner_factory
        self._warmup_for = warmup_for

    def load(
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
