"""The routing table as this process follows it: a published table is served by the data plane,
every version's runner follows its role in it, and a new rollout's shadow report starts at zero;
and which version is stable, before the model is routed as well as after."""

from __future__ import annotations

from server.config import Config
from server.rollout.router import RoutingTable
from server.serving.dataplane import DataPlane
from server.serving.registry import Registry
from server.serving.roles import follow_roles
from server.shadow.executor import ShadowExecutor

__all__ = ["Publication", "stable_of"]


class Publication:
    """The rollout controller's `publish`: what every new routing table does to the process."""

    def __init__(self, dataplane: DataPlane, registry: Registry, shadow: ShadowExecutor) -> None:
        self._dataplane = dataplane
        self._registry = registry
        self._shadow = shadow
        self._salts: dict[str, str] = {}

    def __call__(self, table: RoutingTable) -> None:
        self._dataplane.table = table
        follow_roles(
            ((mv.model, mv.version, mv.runner) for mv in self._registry.index()),
            lambda model: routing.stable if (routing := table.models.get(model)) else None,
        )
        for name, routing in table.models.items():
            rollout = routing.rollout
            if rollout is not None and self._salts.get(name) != rollout.salt:
                self._salts[name] = rollout.salt  # a new rollout: its shadow report starts at zero
                self._shadow.reset(name, rollout.candidate)


def stable_of(config: Config, table: RoutingTable, model: str) -> str | None:
    """The model's stable version now; before it is routed, the one it will get: the configured
    one, else the highest version on disk."""
    routing = table.models.get(model)
    if routing is not None:
        return routing.stable
    configured = config.models.get(model)
    if configured is not None and configured.stable is not None:
        return configured.stable
    on_disk = [p.parent.name for p in (config.models_dir / model).glob("*/model.onnx")]
    return max((v for v in on_disk if v.isdigit()), key=int, default=None)
