"""The OIP model RPCs that describe a version: ModelReady, ModelMetadata and ModelConfig."""

from __future__ import annotations

import grpc

from protos.inference import grpc_service_pb2 as pb
from server.api.inference_base import InferenceBase
from server.api.status import translate_errors
from server.rollout.router import Stage
from server.serving.names import check_model_name, check_optional_version
from server.serving.registry import ModelVersion

__all__ = ["PLATFORM", "ModelDescription"]

PLATFORM = "onnxruntime_onnx"


class ModelDescription(InferenceBase):
    """Whether a model or version is ready, its tensors, and its configuration as Triton's."""

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
