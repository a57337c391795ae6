"""One connection to a canaryserve service: the channel, the stub, the metadata and deadline
every call carries, and failed calls raised as ClientError. The typed clients build on it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

import grpc

from client.errors import from_rpc_error

__all__ = ["Connection", "bearer"]

#: A generated stub class: called with the channel, it has one method per RPC.
StubFactory = Callable[[grpc.Channel], Any]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata that presents `token` to the server."""
    return (("authorization", f"Bearer {token}"),)


class Connection:
    """A channel and its stub; closing the connection closes the channel."""

    def __init__(
        self,
        channel: grpc.Channel,
        stub: StubFactory,
        *,
        timeout: float,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._channel = channel
        self._stub = stub(channel)
        self._metadata = tuple(metadata)
        self.timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: Callable[..., Any],
        request: object,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Any:
        """One unary call with this connection's metadata (plus `metadata`) and deadline
        (or `timeout`)."""
        try:
            return method(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata + tuple(metadata),
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
