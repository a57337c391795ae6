"""The gRPC server: its options and interceptors, the services it serves, health and
reflection, listening (TLS or not) and draining."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.canaryserve.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.canaryserve.outcomes.v1 import outcomes_pb2, outcomes_pb2_grpc
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.api.admin import AdminServicer
from server.api.auth import Authenticator, AuthInterceptor
from server.api.inference import REPOSITORY_CONTROL, InferenceServicer
from server.api.outcomes import OutcomesServicer
from server.api.streams import StreamGuard
from server.config import Config, ConfigError
from server.serving.dataplane import DataPlane

__all__ = [
    "ADMIN_SERVICE",
    "INFERENCE_SERVICE",
    "OUTCOMES_SERVICE",
    "SERVICES",
    "add_services",
    "drain",
    "grpc_server",
    "listen",
    "set_health",
]

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
OUTCOMES_SERVICE = outcomes_pb2.DESCRIPTOR.services_by_name["OutcomesService"].full_name
#: Our services, each with its own health status.
SERVICES = (INFERENCE_SERVICE, ADMIN_SERVICE, OUTCOMES_SERVICE)
#: How long no call may have been refused before a draining server stops listening.
_QUIET_S = 0.1


def grpc_server(
    config: Config,
    inference_auth: Authenticator,
    outcome_auth: Authenticator,
    streams: StreamGuard,
) -> grpc.Server:
    """A gRPC server with the configured threads, admission limit and message size."""
    limit = config.max_message_bytes
    guards = {INFERENCE_SERVICE: inference_auth, OUTCOMES_SERVICE: outcome_auth}
    auth = (
        [AuthInterceptor(guards, REPOSITORY_CONTROL)]
        if inference_auth.enabled or outcome_auth.enabled
        else []
    )
    return grpc.server(
        # Admin calls are authenticated by the admin servicer itself (it needs the token's
        # name for the audit log); the auth interceptor exists only when inference needs a
        # token. The stream guard comes after it, so a refused call never takes a place.
        interceptors=[*auth, streams],
        thread_pool=futures.ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="grpc"
        ),
        # Admission control: calls beyond this are refused at once, not queued for a thread.
        maximum_concurrent_rpcs=config.call_limit,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1 if config.reuse_port else 0),
        ],
    )


def add_services(
    server: grpc.Server,
    inference: InferenceServicer,
    admin: AdminServicer,
    outcomes: OutcomesServicer,
    health_servicer: health.HealthServicer,
) -> None:
    """Our three services, health and reflection (for grpcurl-style tools)."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(inference, server)  # type: ignore[no-untyped-call]
    admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)  # type: ignore[no-untyped-call]
    outcomes_pb2_grpc.add_OutcomesServiceServicer_to_server(outcomes, server)  # type: ignore[no-untyped-call]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )


def listen(server: grpc.Server, config: Config) -> int:
    """Bind `host:port` (TLS when configured); the bound port, else a ConfigError saying what
    to change."""
    address = f"{config.host}:{config.port}"
    try:
        port = _bind(server, config, address)
    except RuntimeError:  # grpc's "Failed to bind to address"
        port = 0
    if port == 0:
        raise ConfigError(
            f"cannot listen on {address}: the port is in use (another canaryserve?) or the"
            " address is not this machine's; choose another with --port or `port` in the"
            " config file (0 picks a free port)"
        )
    return port


def _bind(server: grpc.Server, config: Config, address: str) -> int:
    if config.tls_cert is None or config.tls_key is None:
        return server.add_insecure_port(address)
    client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    return server.add_secure_port(address, credentials)


def set_health(health_servicer: health.HealthServicer, status: int) -> None:
    """The same status for the server as a whole and for each of our services."""
    for service in ("", *SERVICES):
        health_servicer.set(service, status)


def drain(server: grpc.Server, plane: DataPlane, grace: float) -> None:
    """Let the calls in flight finish within `grace` seconds, then stop the server.

    Calls still arriving, or queued for a thread, are refused UNAVAILABLE at once (retryable)
    while the calls in flight finish, until the callers have gone quiet (health already says
    NOT_SERVING) or the grace period ends; then gRPC stops, cancelling only what reaches it
    in its own last moment.
    """
    plane.draining = True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (
        plane.in_flight or time.monotonic() - plane.refused_at < _QUIET_S
    ):
        time.sleep(0.01)
    server.stop(max(0.0, deadline - time.monotonic())).wait()
