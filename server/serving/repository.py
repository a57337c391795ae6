"""Repository control for operators: load and unload model versions, checked and audited.

Both the Open Inference Protocol's RepositoryModelLoad/Unload and the admin service's
LoadModel/UnloadModel come here with the operator's name. A load is audited after it ran; an
unload runs through the rollout controller, which refuses to take away a version routing uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from server.errors import FailedPrecondition
from server.rollout.controller import RolloutController
from server.rollout.state import JSONValue
from server.serving.registry import LoadState, ModelVersion, Registry

__all__ = ["ModelRepository", "RepositoryChange"]


@dataclass(frozen=True)
class RepositoryChange:
    """What one successful load or unload call changed: the versions it loaded (ready now),
    or the versions it unloaded (None: the whole model)."""

    model: str
    loaded: frozenset[str] = frozenset()
    unloaded: frozenset[str] | None = frozenset()


def _evidence(
    version: str | None, versions: Sequence[ModelVersion], rpc: str
) -> Mapping[str, JSONValue]:
    return {
        "rpc": rpc,
        "version": version or "*",
        "states": {mv.version: mv.state.value for mv in versions},
    }


class ModelRepository:
    """Loads and unloads versions on an operator's behalf; every call is an audit row."""

    def __init__(self, registry: Registry, rollouts: RolloutController) -> None:
        self._registry = registry
        self._rollouts = rollouts
        self._listeners: list[Callable[[RepositoryChange], None]] = []

    def on_change(self, listener: Callable[[RepositoryChange], None]) -> None:
        """Call `listener(change)` after each successful load or unload (in a fleet: record
        it for every replica)."""
        self._listeners.append(listener)

    def _changed(self, change: RepositoryChange) -> None:
        for listener in self._listeners:
            listener(change)

    def load(
        self,
        model: str,
        version: str | None,
        *,
        actor: str,
        reason: str,
        rpc: str,
        force: bool = False,
    ) -> list[ModelVersion]:
        """(Re)load every version of `model` on disk, or just `version`; audited.

        Raises FailedPrecondition naming each version that failed to load (the others serve,
        and the listeners hear of them: in a fleet they are loaded everywhere), or whose file
        changed under its number (unless `force`: see Registry.load).
        """
        loaded = self._registry.load(model, version, force=force)
        self._rollouts.append_audit(model, "load", actor, reason, _evidence(version, loaded, rpc))
        now = frozenset(mv.version for mv in loaded if mv.state is LoadState.READY)
        failed = [mv for mv in loaded if mv.state is not LoadState.READY]
        if now or not failed:
            self._changed(RepositoryChange(model, loaded=now))
        if failed:
            ready = sorted(self._registry.ready_versions(model), key=int)
            detail = "; ".join(f"version {mv.version}: {mv.reason}" for mv in failed)
            raise FailedPrecondition(
                f"model '{model}': {detail} (ready and serving: {', '.join(ready) or 'none'})"
            )
        return loaded

    def unload(
        self, model: str, version: str | None, *, actor: str, reason: str, rpc: str
    ) -> list[ModelVersion]:
        """Stop serving `model`, or just `version`, unless routing uses it; audited."""
        versions = self._registry.versions(model)  # NOT_FOUND for an unknown model
        if version is not None and version not in versions:
            self._registry.get(model, version)  # NOT_FOUND, naming the versions there are
        unloaded: list[ModelVersion] = []

        def unload() -> None:
            unloaded.extend(self._registry.unload(model, version))

        self._rollouts.unload_unused(
            model,
            version,
            unload,
            actor=actor,
            reason=reason,
            extra={"rpc": rpc, "version": version or "*"},
        )
        gone = None if version is None else frozenset({version})
        self._changed(RepositoryChange(model, unloaded=gone))
        return unloaded
