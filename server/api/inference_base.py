"""What every part of the GRPCInferenceService servicer shares: its collaborators."""

from __future__ import annotations

from collections.abc import Callable

from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.api.auth import Authenticator
from server.serving.dataplane import DataPlane
from server.serving.registry import Registry
from server.serving.repository import ModelRepository

__all__ = ["InferenceBase"]


class InferenceBase(pb_grpc.GRPCInferenceServiceServicer):
    """The registry, the data plane and repository control, shared by the servicer's mixins."""

    def __init__(
        self,
        registry: Registry,
        dataplane: DataPlane,
        ready: Callable[[], bool],
        repository: ModelRepository,
        admin_auth: Authenticator,
        max_message_bytes: int | None = None,
    ) -> None:
        self._registry = registry
        self._dataplane = dataplane
        self._ready = ready
        self._repository = repository
        self._admin_auth = admin_auth
        self._max_bytes = max_message_bytes  # a stream answer over it would end the stream
