"""The one table at the edge that maps server errors to gRPC status codes.

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

__all__ = ["CODES", "code_for", "translate_errors"]

log = logging.getLogger(__name__)

CODES: tuple[tuple[type[errors.CanaryServeError], grpc.StatusCode], ...] = (
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.VersionNotReady, grpc.StatusCode.UNAVAILABLE),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.RevisionMismatch, grpc.StatusCode.ABORTED),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # The model's own failure: the server is fine, the version is not.
    (errors.ModelFailed, grpc.StatusCode.INTERNAL),
)


def code_for(exc: errors.CanaryServeError) -> grpc.StatusCode:
    for kind, code in CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


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
