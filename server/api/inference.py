"""The GRPCInferenceService servicer: thin — convert, delegate, convert back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import grpc

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server import __version__
from server.api.status import translate_errors
from server.errors import CanaryServeError, FailedPrecondition
from server.rollout.router import Stage
from server.serving.dataplane import DataPlane
from server.serving.registry import LoadState, ModelVersion, Registry
from server.serving.scheduler import VersionScheduler

__all__ = ["EXTENSIONS", "InferenceServicer"]

EXTENSIONS = ["model_repository", "model_configuration", "statistics", "canary_routing"]
PLATFORM = "onnxruntime_onnx"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Open Inference Protocol endpoints over the registry and the data plane."""

    def __init__(
        self,
        registry: Registry,
        dataplane: DataPlane,
        ready: Callable[[], bool],
    ) -> None:
        self._registry = registry
        self._dataplane = dataplane
        self._ready = ready

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
        versions = self._registry.versions(request.name)
        if request.version:
            mv = versions.get(request.version)
            return pb.ModelReadyResponse(ready=mv is not None and mv.state is LoadState.READY)
        return pb.ModelReadyResponse(ready=bool(self._registry.ready_versions(request.name)))

    @translate_errors
    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="canaryserve", version=__version__, extensions=EXTENSIONS
        )

    def _version(self, name: str, version: str) -> ModelVersion:
        """The named version, or the one a request without a version would get."""
        if not version:
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
                queue.default_timeout_microseconds = int(limits.queue_timeout_s * 1e6)
                config.dynamic_batching.max_queue_delay_microseconds = 0
        config.version_policy.specific.versions.extend(
            sorted(int(v) for v in self._registry.ready_versions(request.name))
        )
        return pb.ModelConfigResponse(config=config)

    @translate_errors
    def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        names = [request.name] if request.name else self._registry.models()
        response = pb.ModelStatisticsResponse()
        schedulers = self._dataplane.schedulers
        for name in names:
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
                        inference_count=s.success_count,
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
        loaded = self._registry.load(request.model_name)
        failed = [mv for mv in loaded if mv.state is not LoadState.READY]
        if failed:
            ready = [mv.version for mv in loaded if mv.state is LoadState.READY]
            detail = "; ".join(f"version {mv.version}: {mv.reason}" for mv in failed)
            raise FailedPrecondition(
                f"model '{request.model_name}': {detail} (ready and serving: "
                f"{', '.join(ready) or 'none'})"
            )
        return pb.RepositoryModelLoadResponse()

    @translate_errors
    def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        self._registry.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    @translate_errors
    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        return self._dataplane.infer(request, _metadata(context))

    def ModelStreamInfer(
        self, requests: Iterator[pb.ModelInferRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ModelStreamInferResponse]:
        metadata = _metadata(context)
        for request in requests:
            try:
                response = self._dataplane.infer(request, metadata, "ModelStreamInfer")
            except CanaryServeError as exc:
                yield pb.ModelStreamInferResponse(error_message=str(exc))
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)


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
