"""The admin RPCs that load and unload model versions through the model repository."""

from __future__ import annotations

import grpc

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.api.admin_base import AdminBase, require_model
from server.api.status import translate_errors
from server.serving.names import check_optional_version
from server.serving.registry import ModelVersion

__all__ = ["RepositoryControl"]


def _version_state(mv: ModelVersion) -> pb.ModelVersionState:
    return pb.ModelVersionState(version=mv.version, state=mv.state.value, reason=mv.reason)


class RepositoryControl(AdminBase):
    """LoadModel and UnloadModel: a whole model, or one version of it; audited."""

    @translate_errors
    def LoadModel(
        self, request: pb.LoadModelRequest, context: grpc.ServicerContext
    ) -> pb.LoadModelResponse:
        actor = self._actor(context)
        loaded = self._repository.load(
            require_model(request.model),
            check_optional_version(request.version) or None,
            actor=actor,
            reason=request.reason,
            rpc="LoadModel",
        )
        return pb.LoadModelResponse(versions=[_version_state(mv) for mv in loaded])

    @translate_errors
    def UnloadModel(
        self, request: pb.UnloadModelRequest, context: grpc.ServicerContext
    ) -> pb.UnloadModelResponse:
        actor = self._actor(context)
        unloaded = self._repository.unload(
            require_model(request.model),
            check_optional_version(request.version) or None,
            actor=actor,
            reason=request.reason,
            rpc="UnloadModel",
        )
        return pb.UnloadModelResponse(versions=[_version_state(mv) for mv in unloaded])
