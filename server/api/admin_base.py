"""What every group of admin RPCs shares: the servicer's collaborators, who is calling, and a
rollout as its message (with the sha256 of each version's model file as loaded)."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from protos.canaryserve.admin.v1 import admin_pb2_grpc as pb_grpc
from server.api.admin_convert import rollout_pb
from server.api.auth import Authenticator
from server.api.fleet_view import FleetReadiness, FleetShadow
from server.notify.notifier import Notifier
from server.promotion.controller import PromotionController
from server.promotion.policy import Policy
from server.rollout.controller import RolloutController
from server.rollout.state import RolloutState
from server.serving.dataplane import DataPlane
from server.serving.drills import Drills
from server.serving.names import check_model_name
from server.serving.registry import Registry
from server.serving.repository import ModelRepository
from server.shadow.executor import ShadowExecutor

__all__ = ["AdminBase", "PolicySource", "require_model"]

PolicySource = Callable[[str], Policy | None]


def require_model(model: str) -> str:
    return check_model_name(model, "model")


class AdminBase(pb_grpc.AdminServiceServicer):
    """The AdminService's dependencies; its RPCs live in one mixin per group (server.api.admin)."""

    def __init__(
        self,
        controller: RolloutController,
        auth: Authenticator,
        dataplane: DataPlane,
        shadow: ShadowExecutor,
        promotion: PromotionController,
        configured_policy: PolicySource,
        repository: ModelRepository,
        registry: Registry | None = None,
        raw_routing_keys: bool = False,
        notifier: Notifier | None = None,
        fleet_shadow: FleetShadow | None = None,
        fleet_readiness: FleetReadiness | None = None,
    ) -> None:
        self._fleet_readiness = fleet_readiness
        self._repository = repository
        self._fleet_shadow = fleet_shadow
        self._controller = controller
        self._auth = auth
        self._dataplane = dataplane
        self._shadow = shadow
        self._promotion = promotion
        self._configured_policy = configured_policy
        self._registry = registry
        self._raw_routing_keys = raw_routing_keys
        self._notifier = notifier
        self._drills = Drills(registry, controller) if registry is not None else None

    def _rollout(self, state: RolloutState) -> pb.Rollout:
        """The rollout message, with the sha256 of each version's model file as loaded."""
        message = rollout_pb(state)
        message.stable_sha256 = self._sha256(state.model, state.stable)
        if state.candidate is not None:
            message.candidate_sha256 = self._sha256(state.model, state.candidate)
        return message

    def _sha256(self, model: str, version: str) -> str:
        if self._registry is None:
            return ""
        mv = (
            self._registry.versions(model).get(version)
            if model in self._registry.models()
            else None
        )
        return mv.sha256 if mv is not None else ""

    def _actor(self, context: grpc.ServicerContext) -> str:
        return self._auth.identify(context.invocation_metadata())
