"""Retiring runners: when a version stops serving (unloaded, replaced by a forced load, a drill's
copy removed), its scheduler is forgotten and its runner closed.

Without this an unloaded version kept its onnxruntime session (or its isolated process and
shared-memory buffer) and its scheduling series until the server stopped. The registry calls
`follow(model)` after every change of the model; the versions whose ready runner is gone since
the last call are retired. A run in flight finishes first (an isolated runner's close waits for
it); calls that still reach a retired runner fail with UNAVAILABLE (VersionNotReady), never
hang.
"""

from __future__ import annotations

import logging
import threading

from server.errors import ModelNotFound
from server.serving.registry import LoadState, Registry
from server.serving.runner import Runner
from server.serving.schedulers import Schedulers

__all__ = ["Retirement"]

log = logging.getLogger(__name__)


class Retirement:
    """Closes the runners of versions that stopped serving (see the module docstring)."""

    def __init__(self, registry: Registry, schedulers: Schedulers) -> None:
        self._registry, self._schedulers = registry, schedulers
        self._lock = threading.Lock()
        self._serving = {model: self._ready(model) for model in registry.models()}

    def _ready(self, model: str) -> dict[str, Runner]:
        try:
            versions = self._registry.versions(model)
        except ModelNotFound:
            return {}
        return {
            v: mv.runner
            for v, mv in versions.items()
            if mv.state is LoadState.READY and mv.runner is not None
        }

    def follow(self, model: str) -> None:
        """Retire the versions of `model` whose runner stopped serving since the last call."""
        with self._lock:
            now = self._ready(model)
            before = self._serving.get(model, {})
            self._serving[model] = now
        serving = {id(runner) for runner in now.values()}
        for version, runner in before.items():
            if id(runner) not in serving:
                self._retire(model, version, runner)

    def _retire(self, model: str, version: str, runner: Runner) -> None:
        close = getattr(runner, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # one runner's failure to close must not stop the others
                log.exception("model %s version %s: closing its runner failed", model, version)
        # After the close: a call that makes a scheduler meanwhile finds the runner closed.
        self._schedulers.forget(model, version, runner)
        log.info("model %s version %s: retired its runner", model, version)
