"""The gRPC edge of the error table: server errors become status codes, surprises INTERNAL.

Expected errors keep their message; anything else becomes INTERNAL with a generic message and
a request id, and its traceback goes to the server log only.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc

from server import errors

__all__ = ["code_for", "translate_errors"]

log = logging.getLogger(__name__)


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC code of `exc`, from the one table in server.errors."""
    return grpc.StatusCode[errors.status_name(exc)]


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
            context.abort(code_for(exc), str(exc))
        except Exception:
            request_id = uuid.uuid4().hex[:12]
            log.exception("unexpected error in %s (request id %s)", method.__name__, request_id)
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal server error (request id {request_id})"
            )
        raise AssertionError("unreachable: context.abort raises")

    return wrapper
