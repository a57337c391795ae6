"""The GRPCInferenceService servicer: thin — check names, convert, delegate, convert back.

Every model name and version string a request carries is checked by `server.serving.names`
before anything uses it (ModelInfer's in the data plane, where the call is traced).

Repository control (RepositoryModelLoad/Unload) changes what every caller is served, so it is
the operator's: it needs the admin token (Triton keeps it behind explicit model control and
its restricted protocols), checked here rather than by the inference-token interceptor, and
goes through `ModelRepository`, which audits it and refuses to unload what routing uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import cast

import grpc

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server import __version__
from server.api.auth import Authenticator
from server.api.status import message_for, translate_errors, translate_stream_errors, unexpected
from server.errors import (
    CanaryServeError,
    InvalidInput,
    Unauthenticated,
    shorten,
)
from server.rollout.router import Stage
from server.serving.dataplane import DataPlane
from server.serving.names import check_model_name, check_optional_model_name, check_optional_version
from server.serving.registry import LoadState, ModelVersion, Registry
from server.serving.repository import ModelRepository
from server.serving.scheduler import VersionScheduler

__all__ = ["EXTENSIONS", "REPOSITORY_CONTROL", "InferenceServicer"]

EXTENSIONS = ["model_repository", "model_configuration", "statistics", "canary_routing"]
PLATFORM = "onnxruntime_onnx"
_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
#: The methods that need the admin token (full names, as interceptors see them).
REPOSITORY_CONTROL = frozenset(
    f"/{_SERVICE}/{rpc}" for rpc in ("RepositoryModelLoad", "RepositoryModelUnload")
)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Open Inference Protocol endpoints over the registry and the data plane."""

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

    def _operator(self, context: grpc.ServicerContext, rpc: str) -> str:
        """The name of the admin token the call presents (for the audit log)."""
        try:
            return self._admin_auth.identify(context.invocation_metadata())
        except Unauthenticated as exc:
            raise Unauthenticated(
                f"{rpc} changes what every caller is served, so it needs the admin token: {exc}"
            ) from None

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
    def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        # As Triton answers: ready=false for a model or version it does not have, not an error;
        # INVALID_ARGUMENT only for a name or version that cannot be one.
        name = check_model_name(request.name, "name")
        version = check_optional_version(request.version)
        if self._dataplane.starting:
            return pb.ModelReadyResponse(ready=False)
        if version:
            return pb.ModelReadyResponse(
                ready=self._registry.ready_runner(name, version) is not None
            )
        return pb.ModelReadyResponse(ready=bool(self._registry.ready_versions(name)))

    @translate_errors
    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="canaryserve", version=__version__, extensions=EXTENSIONS
        )

    def _version(self, name: str, version: str) -> ModelVersion:
        """The named version, or the one a request without a version would get."""
        check_model_name(name, "name")
        if self._dataplane.starting:
            raise self._dataplane.unroutable(name)
        if not check_optional_version(version):
            version = self._dataplane.route(name, None, {}, None).version
        return self._registry.get(name, version)

    @translate_errors
    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        mv = self._version(request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        sig = mv.signature
        return pb.ModelMetadataResponse(
            name=request.name,
            versions=sorted(self._registry.ready_versions(request.name), key=int),
            platform=PLATFORM,
            inputs=[
                tensor(name=s.name, datatype=s.dtype.oip, shape=s.wire_shape) for s in sig.inputs
            ],
            outputs=[
                tensor(name=s.name, datatype=s.dtype.oip, shape=s.wire_shape) for s in sig.outputs
            ],
        )

    @translate_errors
    def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.ServicerContext
    ) -> pb.ModelConfigResponse:
        mv = self._version(request.name, request.version)
        sig = mv.signature
        assert mv.runner is not None
        schedulers = self._dataplane.schedulers
        batch = 0 if schedulers is None else schedulers.max_batch_size(request.name, mv.runner)
        skip = 1 if batch else 0  # Triton leaves the batch dimension out of dims
        config = pb.ModelConfig(
            name=request.name,
            platform=PLATFORM,
            backend="onnxruntime",
            max_batch_size=batch,
            input=[
                pb.ModelInput(name=s.name, data_type=s.dtype.triton, dims=s.wire_shape[skip:])
                for s in sig.inputs
            ],
            output=[
                pb.ModelOutput(name=s.name, data_type=s.dtype.triton, dims=s.wire_shape[skip:])
                for s in sig.outputs
            ],
        )
        config.parameters["sha256"].string_value = mv.sha256
        if schedulers is not None:
            routing = self._dataplane.table.models.get(request.name)
            stable = routing is not None and routing.stable == mv.version
            limits = schedulers.policy(request.name).limits(
                Stage.STABLE if stable else Stage.CANARY
            )
            config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=limits.instances)
            if batch:
                queue = config.dynamic_batching.default_queue_policy
                queue.max_queue_size = limits.max_queue_size
                # round(): 249 µs is 0.000249 s, which int() would report as 248.
                queue.default_timeout_microseconds = round(limits.queue_timeout_s * 1e6)
                config.dynamic_batching.max_queue_delay_microseconds = round(
                    schedulers.policy(request.name).max_queue_delay_s * 1e6
                )
        config.version_policy.specific.versions.extend(
            sorted(int(v) for v in self._registry.ready_versions(request.name))
        )
        return pb.ModelConfigResponse(config=config)

    @translate_errors
    def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        check_optional_model_name(request.name, "name")
        check_optional_version(request.version)
        if request.name and self._dataplane.starting:
            raise self._dataplane.unroutable(request.name)
        models = [request.name] if request.name else self._registry.models()
        response = pb.ModelStatisticsResponse()
        schedulers = self._dataplane.schedulers
        for name in models:
            versions = self._registry.versions(name)
            if request.version and request.version not in versions:
                self._registry.get(name, request.version)  # raises the right NotFound
            for version in sorted(versions, key=int):
                if request.version and version != request.version:
                    continue
                s = versions[version].stats
                scheduler = schedulers.find(name, version) if schedulers is not None else None
                with s.lock:
                    stats = response.model_stats.add(
                        name=name,
                        version=version,
                        last_inference=s.last_inference_ms,
                        inference_count=s.inference_count,
                        execution_count=s.success_count,
                    )
                    inf = stats.inference_stats
                    n = s.success_count
                    inf.success.count, inf.success.ns = n, s.success_ns
                    inf.fail.count, inf.fail.ns = s.fail_count, s.fail_ns
                    inf.queue.count = n  # without a scheduler: every request, zero time
                    inf.compute_input.count, inf.compute_input.ns = n, s.input_ns
                    inf.compute_infer.count, inf.compute_infer.ns = n, s.infer_ns
                    inf.compute_output.count, inf.compute_output.ns = n, s.output_ns
                if scheduler is not None:
                    fill_scheduler_statistics(stats, scheduler)
        return response

    @translate_errors
    def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                entry(name=mv.model, version=mv.version, state=mv.state.value, reason=mv.reason)
                for mv in self._registry.index()
                if not request.ready or mv.state is LoadState.READY
            ]
        )

    @translate_errors
    def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        actor = self._operator(context, "RepositoryModelLoad")
        model = check_model_name(request.model_name, "model_name")
        _supported(request.parameters, "RepositoryModelLoad", {"force": "bool_param"})
        force = "force" in request.parameters and request.parameters["force"].bool_param
        self._repository.load(
            model, None, actor=actor, reason="", rpc="RepositoryModelLoad", force=force
        )
        return pb.RepositoryModelLoadResponse()

    @translate_errors
    def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        actor = self._operator(context, "RepositoryModelUnload")
        model = check_model_name(request.model_name, "model_name")
        # tritonclient's unload_model always sends unload_dependents; no model here has
        # dependents (there are no ensembles), so either value unloads just this model.
        _supported(request.parameters, "RepositoryModelUnload", {"unload_dependents": "bool_param"})
        self._repository.unload(model, None, actor=actor, reason="", rpc="RepositoryModelUnload")
        return pb.RepositoryModelUnloadResponse()

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


def _supported(
    parameters: Mapping[str, pb.ModelRepositoryParameter], rpc: str, accepted: Mapping[str, str]
) -> None:
    """InvalidInput naming the first parameter `rpc` does not support (none is ignored)."""
    for key, value in parameters.items():
        kind = value.WhichOneof("parameter_choice")
        if accepted.get(key) == kind:
            continue
        if key in accepted:
            why = f"it must be a {accepted[key]}, not {kind or 'empty'}"
        elif key == "config":
            why = (
                "canaryserve takes no model configuration: a version is "
                "<models_dir>/<model>/<version>/model.onnx and its settings come from the server "
                "config"
            )
        elif key.startswith("file:"):
            why = "files cannot be sent: put them under <models_dir>/<model>/<version>/, then load"
        else:
            why = f"{rpc} takes {', '.join(sorted(accepted)) or 'no parameters'}"
        raise InvalidInput(f"{rpc} parameter '{shorten(key)}' is not supported: {why}")


def fill_scheduler_statistics(stats: pb.ModelStatistics, scheduler: VersionScheduler) -> None:
    """Queue time, executions and batch sizes of one version, as Triton reports them: the
    session-run time of a request (compute_infer) excludes its wait in the queue."""
    with scheduler.lock:
        s = scheduler.stats
        inf = stats.inference_stats
        inf.queue.count, inf.queue.ns = s.queue_count, s.queue_ns
        inf.compute_infer.ns = max(0, inf.compute_infer.ns - s.queue_ns)
        stats.execution_count = s.executions
        for size in sorted(s.batch_rows):
            batch = stats.batch_stats.add(batch_size=size)
            batch.compute_infer.count = s.batch_rows[size]
            batch.compute_infer.ns = s.batch_infer_ns.get(size, 0)


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
