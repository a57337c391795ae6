"""Opening a gRPC channel: plain, TLS, or mTLS, with canaryserve's message limits."""

from __future__ import annotations

from pathlib import Path

import grpc

from protos.wire import DEFAULT_PORT

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "DEFAULT_TARGET", "TARGET_ENV", "open_channel"]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: The server's default address: its default port on this machine.
DEFAULT_TARGET = f"127.0.0.1:{DEFAULT_PORT}"
#: The CLI's default target when set (before --target), like DOCKER_HOST for docker.
TARGET_ENV = "CANARYSERVE_TARGET"


def open_channel(
    target: str,
    *,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """A channel to `target`; TLS when any certificate is given (client cert+key: mTLS)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if tls_ca is None and tls_cert is None:
        return grpc.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls_ca.read_bytes() if tls_ca else None,
        private_key=tls_key.read_bytes() if tls_key else None,
        certificate_chain=tls_cert.read_bytes() if tls_cert else None,
    )
    return grpc.secure_channel(target, credentials, options=options)
