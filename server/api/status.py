"""The gRPC edge of the error table: server errors become status codes, surprises INTERNAL.

Expected errors keep their message; anything else becomes INTERNAL with a generic message and
a request id, and its traceback goes to the server log only. A status message travels as a
header, which grpc refuses past 8-16 KiB (and percent-encoding can triple its bytes), so every
message is capped at `MAX_MESSAGE_BYTES` here: the caller always gets the real status.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc

from server import errors

__all__ = ["MAX_MESSAGE_BYTES", "code_for", "message_for", "translate_errors"]

log = logging.getLogger(__name__)

#: The longest status message sent, in UTF-8 bytes (at most 3 KiB once percent-encoded).
MAX_MESSAGE_BYTES = 1024


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC code of `exc`, from the one table in server.errors."""
    return grpc.StatusCode[errors.status_name(exc)]


def message_for(exc: BaseException) -> str:
    """The status message of `exc`: its text, cut to MAX_MESSAGE_BYTES when longer."""
    text = str(exc)
    data = text.encode(errors="replace")
    if len(data) <= MAX_MESSAGE_BYTES:
        return text
    note = f"... (message cut: {len(data)} bytes)"
    return data[: MAX_MESSAGE_BYTES - len(note)].decode(errors="ignore") + note


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Method = Callable[[S, Req, grpc.ServicerContext], Resp]


def translate_errors(method: Method[S, Req, Resp]) -> Method[S, Req, Resp]:
    """Decorate a unary servicer method: CanaryServeError → its code; anything else INTERNAL."""

    @functools.wraps(method)
    def wrapper(self: S, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            return method(self, request, context)
        except errors.CanaryServeError as exc:
            context.abort(code_for(exc), message_for(exc))
        except Exception:
            request_id = uuid.uuid4().hex[:12]
            log.exception("unexpected error in %s (request id %s)", method.__name__, request_id)
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal server error (request id {request_id})"
            )
        raise AssertionError("unreachable: context.abort raises")

    return wrapper
