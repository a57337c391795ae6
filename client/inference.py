"""Typed data-plane client: numpy arrays in, numpy arrays out, deadlines, clear exceptions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from client import tensors
from client.channel import DEFAULT_TARGET, open_channel
from client.connection import Connection
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from protos.wire import ROUTING_KEY_HEADER

__all__ = ["ROUTING_KEY_HEADER", "InferResult", "InferenceClient"]

Scalar = bool | int | float | str


@dataclass(frozen=True)
class InferResult:
    """One inference answer: the outputs and which version answered, and why."""

    model: str
    version: str
    outputs: dict[str, npt.NDArray[Any]]
    parameters: dict[str, Scalar] = field(default_factory=dict)
    id: str = ""

    @property
    def stage(self) -> str:
        return str(self.parameters.get("stage", ""))

    @property
    def reason(self) -> str:
        return str(self.parameters.get("route_reason", ""))


def _param(p: pb.InferParameter) -> Scalar:
    which = p.WhichOneof("parameter_choice")
    value: Scalar = getattr(p, which) if which else ""
    return value


class InferenceClient(Connection):
    """A client of one canaryserve (or any Open Inference Protocol) server."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = 10.0,
        channel: grpc.Channel | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        super().__init__(
            channel or open_channel(target, max_message_bytes=max_message_bytes),
            pb_grpc.GRPCInferenceServiceStub,
            timeout=timeout,
            metadata=metadata,
        )

    def live(self) -> bool:
        response: pb.ServerLiveResponse = self._call(self._stub.ServerLive, pb.ServerLiveRequest())
        return response.live

    def ready(self) -> bool:
        request = pb.ServerReadyRequest()
        response: pb.ServerReadyResponse = self._call(self._stub.ServerReady, request)
        return response.ready

    def model_ready(self, model: str, version: str = "") -> bool:
        request = pb.ModelReadyRequest(name=model, version=version)
        response: pb.ModelReadyResponse = self._call(self._stub.ModelReady, request)
        return response.ready

    def metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        request = pb.ModelMetadataRequest(name=model, version=version)
        response: pb.ModelMetadataResponse = self._call(self._stub.ModelMetadata, request)
        return response

    def index(self) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        return list(self._call(self._stub.RepositoryIndex, pb.RepositoryIndexRequest()).models)

    def load(self, model: str, *, force: bool = False) -> None:
        """(Re)load `model`; `force` replaces a version whose file changed under its number."""
        request = pb.RepositoryModelLoadRequest(model_name=model)
        if force:
            request.parameters["force"].bool_param = True
        self._call(self._stub.RepositoryModelLoad, request)

    def config(self, model: str, version: str = "") -> pb.ModelConfig:
        request = pb.ModelConfigRequest(name=model, version=version)
        response: pb.ModelConfigResponse = self._call(self._stub.ModelConfig, request)
        return response.config

    def unload(self, model: str) -> None:
        request = pb.RepositoryModelUnloadRequest(model_name=model)
        self._call(self._stub.RepositoryModelUnload, request)

    def statistics(self, model: str = "", version: str = "") -> list[pb.ModelStatistics]:
        request = pb.ModelStatisticsRequest(name=model, version=version)
        return list(self._call(self._stub.ModelStatistics, request).model_stats)

    def infer(
        self,
        model: str,
        inputs: Mapping[str, npt.ArrayLike],
        *,
        version: str = "",
        outputs: Sequence[str] = (),
        routing_key: str | None = None,
        request_id: str = "",
        timeout: float | None = None,
    ) -> InferResult:
        """Run one inference; raises ClientError with the server's status and message."""
        request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
        for name, value in inputs.items():
            array = np.asarray(value)
            datatype, data = tensors.encode(array)
            request.inputs.add(name=name, datatype=datatype, shape=array.shape)
            request.raw_input_contents.append(data)
        for name in outputs:
            request.outputs.add(name=name)
        metadata = [(ROUTING_KEY_HEADER, routing_key)] if routing_key else []
        response: pb.ModelInferResponse = self._call(
            self._stub.ModelInfer, request, timeout, metadata
        )
        return InferResult(
            model=response.model_name,
            version=response.model_version,
            outputs={
                out.name: tensors.decode(out.datatype, out.shape, raw)
                for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
            },
            parameters={k: _param(v) for k, v in response.parameters.items()},
            id=response.id,
        )
