"""The gRPC edge of the error table: server errors become status codes, surprises INTERNAL.

One error path for every kind of call: `translate_errors` wraps unary methods,
`translate_stream_errors` response-streaming ones (the same translation for each, as MLServer
wraps its unary and stream handlers alike). Expected errors keep their message; anything else
becomes INTERNAL with a generic message and a request id, and its traceback goes to the server
log only (`unexpected`, which a stream also uses for one failed message). A status message
travels as a header, which grpc refuses past 8-16 KiB (and percent-encoding can triple its
bytes), so every message is capped at `MAX_MESSAGE_BYTES` here: the caller always gets the
real status.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import grpc

from server import errors

__all__ = [
    "MAX_MESSAGE_BYTES",
    "code_for",
    "message_for",
    "translate_errors",
    "translate_stream_errors",
    "unexpected",
]

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


def unexpected(where: str) -> str:
    """Log the exception being handled, with its traceback and a new request id; return the
    message a caller gets instead: generic, with that id (call from an `except` block)."""
    request_id = uuid.uuid4().hex[:12]
    log.exception("unexpected error in %s (request id %s)", where, request_id)
    return f"internal server error (request id {request_id})"


def _translate(exc: Exception, context: grpc.ServicerContext, where: str) -> NoReturn:
    """Abort the call with the status `exc` earns. An abort already under way (the method
    called `context.abort`) propagates unchanged."""
    if isinstance(exc, errors.CanaryServeError):
        context.abort(code_for(exc), message_for(exc))
    if _aborting(context):
        raise exc
    context.abort(grpc.StatusCode.INTERNAL, unexpected(where))
    raise AssertionError("unreachable: context.abort raises")


def _aborting(context: grpc.ServicerContext) -> bool:
    """Whether the method already chose a status (`context.abort`, `set_code`)."""
    code = getattr(context, "code", None)  # ServicerContext.code(): in grpc, not in its stubs
    return code is not None and code() not in (None, grpc.StatusCode.OK)


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Method = Callable[[S, Req, grpc.ServicerContext], Resp]
StreamMethod = Callable[[S, Req, grpc.ServicerContext], Iterator[Resp]]


def translate_errors(method: Method[S, Req, Resp]) -> Method[S, Req, Resp]:
    """Decorate a unary servicer method: CanaryServeError → its code; anything else INTERNAL."""

    @functools.wraps(method)
    def wrapper(self: S, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            return method(self, request, context)
        except Exception as exc:
            _translate(exc, context, method.__name__)

    return wrapper


def translate_stream_errors(method: StreamMethod[S, Req, Resp]) -> StreamMethod[S, Req, Resp]:
    """Decorate a response-streaming servicer method (its request may be an iterator): the
    same translation as `translate_errors`, for an error raised before or between responses;
    the responses already sent stay sent."""

    @functools.wraps(method)
    def wrapper(self: S, request: Req, context: grpc.ServicerContext) -> Iterator[Resp]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            if not context.is_active():
                raise  # the client ended the call (its request stream raises): no one to tell
            _translate(exc, context, method.__name__)

    return wrapper
