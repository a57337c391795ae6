"""Bearer-token authentication: admin calls always, inference calls when a token is set.

Tokens are compared in constant time. With no admin token configured, one is generated on
first start into `<state_dir>/admin.token` (mode 0600) and reused after restarts.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from server.errors import Unauthenticated

__all__ = ["TOKEN_FILE", "AuthInterceptor", "Authenticator", "ensure_token_file"]

log = logging.getLogger(__name__)

TOKEN_FILE = "admin.token"
_PREFIX = "bearer "


def ensure_token_file(state_dir: Path) -> str:
    """The generated admin token, created (mode 0600) on first start."""
    path = state_dir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            if path.stat().st_mode & 0o077:
                log.warning("%s is readable by others; chmod 600 it", path)
            return token
        log.warning("%s is empty (an interrupted first start?); generating a new token", path)
    state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # Write a private temporary file, then rename: a crash never leaves an empty token file.
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    log.warning("no admin token configured: generated one in %s (mode 0600)", path)
    return token


class Authenticator:
    """Knows the named tokens of one audience (admin or inference)."""

    def __init__(self, tokens: Mapping[str, str], audience: str) -> None:
        if any(not token.strip() for token in tokens.values()):
            raise ValueError(f"{audience} tokens must not be empty")
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]
        self.audience = audience

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def identify(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
        """The name of the token presented in `authorization`, or Unauthenticated."""
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if not isinstance(header, str) or not header.lower().startswith(_PREFIX):
            raise Unauthenticated(
                f"{self.audience} calls need metadata 'authorization: Bearer <token>'"
            )
        presented = header[len(_PREFIX) :].strip().encode()
        if not presented:
            raise Unauthenticated(f"the {self.audience} token is empty")
        match = None
        for name, token in self._tokens:  # check every token: timing reveals nothing
            if hmac.compare_digest(presented, token) and match is None:
                match = name
        if match is None:
            raise Unauthenticated(f"the {self.audience} token is not valid")
        return match


Continuation: TypeAlias = Callable[
    [grpc.HandlerCallDetails], "grpc.RpcMethodHandler[Any, Any] | None"
]


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Rejects calls to guarded services that lack a valid token, before any handler runs."""

    def __init__(self, guards: Mapping[str, Authenticator], exempt: Collection[str] = ()) -> None:
        # service full name → authenticator; methods arrive as "/<service>/<Method>".
        self._guards = {f"/{service}/": auth for service, auth in guards.items() if auth.enabled}
        # Methods ("/<service>/<Method>") that authenticate their callers themselves.
        self._exempt = frozenset(exempt)

    def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if details.method in self._exempt:
            return continuation(details)
        for prefix, auth in self._guards.items():
            if details.method.startswith(prefix):
                try:
                    auth.identify(details.invocation_metadata)
                except Unauthenticated as exc:
                    return _deny(str(exc), continuation(details))
        return continuation(details)


def _deny(
    message: str, handler: grpc.RpcMethodHandler[Any, Any] | None
) -> grpc.RpcMethodHandler[Any, Any]:
    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)
