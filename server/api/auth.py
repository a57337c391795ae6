"""Bearer-token authentication: admin calls always, inference calls when a token is set.

Tokens are compared in constant time. With no admin token configured, one is generated on
first start into `<state_dir>/admin.token` (mode 0600) and reused after restarts.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from protos.wire import ADMIN_TOKEN_FILE
from server.config import ConfigError
from server.errors import Unauthenticated

__all__ = ["AuthInterceptor", "Authenticator", "check_state_dir", "ensure_token_file"]

log = logging.getLogger(__name__)

_PREFIX = "bearer "


def check_state_dir(state_dir: Path) -> None:
    """Create the state directory private (0700); refuse one that others may write to, since
    anyone who can write there can plant an admin token or edit the rollout state."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = state_dir.stat().st_mode
    if mode & 0o022:
        raise ConfigError(
            f"state directory {state_dir} is writable by others (mode {stat.S_IMODE(mode):o}):"
            f" anyone could plant an admin token or change rollouts; run chmod go-w {state_dir}"
            " or choose another --state-dir"
        )


def ensure_token_file(state_dir: Path) -> str:
    """The generated admin token, created (mode 0600) on first start, checked as ssh checks
    its key files: a symlink, another owner or access by others is refused, never followed."""
    check_state_dir(state_dir)
    path = state_dir / ADMIN_TOKEN_FILE
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        _check_token_file(path, st)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as f:
            token = f.read().strip()
        if token:
            return token
        log.warning("%s is empty (an interrupted first start?); generating a new token", path)
    # Hex: a token never starts with "-", so `--token TOKEN` always parses.
    token = secrets.token_hex(32)
    # Write a private temporary file, then rename: a crash never leaves an empty token file.
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # O_EXCL below: never write through something planted at this name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    log.warning("no admin token configured: generated one in %s (mode 0600)", path)
    return token


def _check_token_file(path: Path, st: os.stat_result) -> None:
    fix = f"delete {path} to have a new token generated, or configure admin_tokens"
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{path} is a symbolic link; refusing to follow it: {fix}")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} is not a regular file: {fix}")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{path} belongs to another user (uid {st.st_uid}): {fix}")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path} is accessible by others (mode {stat.S_IMODE(st.st_mode):o}): run chmod 600"
            f" {path} if the token is still secret, or {fix}"
        )


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
