"""Poll mode (Triton's `--model-control-mode=poll`): version directories that appear in the
model repository are loaded by themselves.

Every `interval_s` the poller lists the repository and loads each model or version directory
the registry has never seen. A loaded version has no rollout role (stage `loaded`): it is
never routed to until a rollout names it. What the registry already knows is left alone: a
version an operator unloaded stays unloaded, one that failed to load is not retried (an
explicit load does that), and a changed file under a known number is not reloaded.
"""

from __future__ import annotations

import logging

from server.errors import CanaryServeError
from server.serving.names import is_model_name, is_version
from server.serving.registry import ModelVersion, Registry
from server.ticker import Ticker

__all__ = ["VersionPoller"]

log = logging.getLogger(__name__)


class VersionPoller:
    """Loads new model and version directories every `interval_s` (module docstring)."""

    def __init__(self, registry: Registry, interval_s: float) -> None:
        self._registry = registry
        self.interval_s = interval_s
        # A repository that cannot be listed now may be back later: the ticker logs and goes on.
        self._ticker = Ticker(
            "canaryserve-model-poll",
            interval_s,
            self.poll_once,
            log=log,
            failure="polling the model repository failed",
        )

    def new_directories(self) -> list[tuple[str, str]]:
        """(model, version) of every version directory on disk the registry has not seen."""
        root = self._registry.root
        found = []
        known = set(self._registry.models())
        for model_dir in sorted(root.iterdir()) if root.is_dir() else []:
            if not model_dir.is_dir() or not is_model_name(model_dir.name):
                continue
            seen = self._registry.versions(model_dir.name) if model_dir.name in known else {}
            for vdir in sorted(model_dir.iterdir()):
                if vdir.is_dir() and is_version(vdir.name) and vdir.name not in seen:
                    found.append((model_dir.name, vdir.name))
        return found

    def poll_once(self) -> list[ModelVersion]:
        """Load every new version directory; returns what was loaded (ready or not)."""
        loaded: list[ModelVersion] = []
        for model, version in self.new_directories():
            try:
                loaded += self._registry.load(model, version)
            except CanaryServeError as exc:  # e.g. removed again meanwhile
                log.warning("poll: model %s version %s not loaded: %s", model, version, exc)
                continue
            log.info("poll: loaded model %s version %s", model, version)
        return loaded

    def start(self) -> None:
        self._ticker.start()

    def close(self) -> None:
        self._ticker.stop(3.0)
