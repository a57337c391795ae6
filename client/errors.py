"""The client's exception: a failed call with its gRPC status code and the server's message."""

from __future__ import annotations

import grpc

__all__ = ["ClientError", "from_rpc_error"]


class ClientError(Exception):
    """A call failed. `code` is the gRPC status name (e.g. "NOT_FOUND"), `details` the reason."""

    def __init__(self, code: str, details: str) -> None:
        self.code = code
        self.details = details
        super().__init__(f"{code}: {details}")


def from_rpc_error(exc: grpc.RpcError) -> ClientError:
    # Errors raised by stubs are also grpc.Call objects; others carry only a message.
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return ClientError(code.name if code is not None else "UNKNOWN", details or "")
