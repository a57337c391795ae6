"""ModelStatistics: Triton's cumulative per-version counters, with the scheduler's queue time."""

from __future__ import annotations

import grpc

from protos.inference import grpc_service_pb2 as pb
from server.api.inference_base import InferenceBase
from server.api.status import translate_errors
from server.serving.names import check_optional_model_name, check_optional_version
from server.serving.scheduler import VersionScheduler

__all__ = ["ModelStatisticsReport", "fill_scheduler_statistics"]


class ModelStatisticsReport(InferenceBase):
    """ModelStatistics over the registry's per-version counters and the versions' schedulers."""

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
