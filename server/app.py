"""The composition root: build every part, start, drain and stop them, in that order."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.config import Config
from server.dataplane import DataPlane
from server.inference import InferenceServicer
from server.registry import OnnxRunner, Registry, Runner, RunnerFactory
from server.router import ModelRouting, RoutingTable

__all__ = ["App"]

log = logging.getLogger(__name__)

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class App:
    """One canaryserve server process: registry, data plane, gRPC services."""

    def __init__(self, config: Config, runner_factory: RunnerFactory | None = None) -> None:
        self.config = config
        threads = config.intra_op_threads

        def onnx(path: Path) -> Runner:
            return OnnxRunner(path, intra_op_threads=threads)

        self.registry = Registry(config.models_dir, runner_factory or onnx)
        self._table = RoutingTable(allow_pinning=config.allow_pinning)
        self._ready = threading.Event()
        self.dataplane = DataPlane(self.registry, lambda: self._table)
        self.health = health.HealthServicer()
        self._server: grpc.Server | None = None
        self.port = 0

    # -- routing table (replaced by the rollout controller's snapshots) --

    def _publish_default_table(self, _model: str | None = None) -> None:
        models = {}
        for name in self.registry.models():
            ready = self.registry.ready_versions(name)
            configured = self.config.models.get(name)
            stable = configured.stable if configured and configured.stable else None
            stable = stable or self.registry.highest_ready(name)
            if stable is not None:
                models[name] = ModelRouting(stable=stable, ready=ready)
        self._table = RoutingTable(models=models, allow_pinning=self.config.allow_pinning)

    # -- lifecycle --

    def start(self) -> int:
        """Listen, load and warm every model, then report ready. Returns the bound port."""
        limit = self.config.max_message_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        servicer = InferenceServicer(self.registry, self.dataplane, self._ready.is_set)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (INFERENCE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{self.config.host}:{self.config.port}"
        self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        server.start()
        self._server = server
        self.registry.on_change(self._publish_default_table)
        self.registry.load_all()
        self._publish_default_table()
        self._ready.set()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "canaryserve listening on %s:%d (%d models)",
            self.config.host,
            self.port,
            len(self.registry.models()),
        )
        return self.port

    def _set_health(self, status: int) -> None:
        for service in ("", INFERENCE_SERVICE):
            self.health.set(service, status)

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let calls in flight finish within `grace` seconds, then stop."""
        self._ready.clear()
        self.health.enter_graceful_shutdown()
        if self._server is not None:
            grace = self.config.grace_seconds if grace is None else grace
            self._server.stop(grace).wait()
            self._server = None

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()
