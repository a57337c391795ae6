"""The GRPCInferenceService servicer: thin — check names, convert, delegate, convert back.

Every model name and version string a request carries is checked by `server.serving.names`
before anything uses it (ModelInfer's in the data plane, where the call is traced).

The servicer is one class, since gRPC registers one servicer per service; the RPCs that
describe models (`inference_models`), report statistics (`inference_statistics`) and control
the repository (`inference_repository`, with the admin token) live in mixins over
`inference_base.InferenceBase`. The request path, ModelInfer and ModelStreamInfer, stays here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import grpc

from protos.inference import grpc_service_pb2 as pb
from server import __version__
from server.api.inference_base import InferenceBase
from server.api.inference_models import ModelDescription
from server.api.inference_repository import REPOSITORY_CONTROL, RepositoryExtension
from server.api.inference_statistics import ModelStatisticsReport
from server.api.status import message_for, translate_errors, translate_stream_errors, unexpected
from server.errors import CanaryServeError

__all__ = ["EXTENSIONS", "REPOSITORY_CONTROL", "InferenceServicer"]

EXTENSIONS = ["model_repository", "model_configuration", "statistics", "canary_routing"]


class InferenceServicer(
    ModelDescription, ModelStatisticsReport, RepositoryExtension, InferenceBase
):
    """Open Inference Protocol endpoints over the registry and the data plane."""

    @translate_errors
    def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @translate_errors
    def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready())

    @translate_errors
    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="canaryserve", version=__version__, extensions=EXTENSIONS
        )

    @translate_errors
    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        return self._dataplane.infer(request, _metadata(context))

    @translate_stream_errors
    def ModelStreamInfer(
        self, requests: Iterator[pb.ModelInferRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ModelStreamInferResponse]:
        """Each message gets its answer or its error_message; no message ends the stream."""
        metadata = _metadata(context)
        for request in requests:
            # Answer outside the `except`: a generator paused in one keeps the error, and the
            # failed call's tensors its traceback holds, alive until the next message.
            try:
                response = self._dataplane.infer(request, metadata, "ModelStreamInfer")
                answer = pb.ModelStreamInferResponse(infer_response=response)
            except CanaryServeError as exc:
                answer = pb.ModelStreamInferResponse(error_message=message_for(exc))
            except Exception:
                answer = pb.ModelStreamInferResponse(error_message=unexpected("ModelStreamInfer"))
            if self._max_bytes is not None:
                answer = _fit(answer, self._max_bytes)
            yield answer


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    # Only `-bin` keys carry bytes values, and nothing reads one: every key the data plane
    # reads (routing key, cohort rules, traceparent) maps to text.
    return cast("dict[str, str]", dict(context.invocation_metadata()))


def _fit(answer: pb.ModelStreamInferResponse, limit: int) -> pb.ModelStreamInferResponse:
    """`answer`, or an error_message in its place when it is over the message limit: gRPC
    would end the whole stream rather than send it (a unary answer just fails)."""
    size = answer.ByteSize()
    if size <= limit:
        return answer
    if answer.HasField("infer_response"):
        why = (
            f"the answer holds {size} bytes, over the limit of {limit} bytes "
            "(max_message_bytes); send a smaller batch or a shorter request id"
        )
    else:  # four bytes at most per character, and room for the rest of the message
        why = answer.error_message[: limit // 8] + " [...]"
    return pb.ModelStreamInferResponse(error_message=why)
