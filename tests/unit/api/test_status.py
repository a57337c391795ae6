"""The gRPC edge of the error table: each server error's code, and what a caller is told."""

from __future__ import annotations

import grpc
import pytest

from server import errors
from server.api.status import code_for, translate_errors


class Aborted(Exception):
    """What a ServicerContext's abort raises: the call ends with this code and details."""


class Context:
    """The one ServicerContext method translate_errors uses."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


CODES = [
    (errors.InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidTensor("x", "wrong shape"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ModelNotFound("m"), grpc.StatusCode.NOT_FOUND),
    (errors.ModelVersionNotFound("m", "9"), grpc.StatusCode.NOT_FOUND),
    (errors.VersionNotReady("m", "2", "LOADING"), grpc.StatusCode.UNAVAILABLE),
    (errors.FailedPrecondition("no"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InvalidTransition("m", "idle", "promote", "why"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.RevisionMismatch("m", 1, 2), grpc.StatusCode.ABORTED),
    (errors.AlreadyExists("there"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.Overloaded("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.ModelFailed("m", "1", ValueError("x")), grpc.StatusCode.INTERNAL),
    (errors.CanaryServeError("unclassified"), grpc.StatusCode.INTERNAL),
    (ValueError("a bug"), grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("error", "code"), CODES, ids=[type(e).__name__ for e, _ in CODES])
def test_every_error_has_its_status_code(error: Exception, code: grpc.StatusCode) -> None:
    assert code_for(error) is code
    assert errors.status_name(error) == code.name


class Servicer:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    @translate_errors
    def Call(self, request: str, context: grpc.ServicerContext) -> str:
        if self.error is not None:
            raise self.error
        return f"answer to {request}"


def test_a_servers_error_ends_the_call_with_its_code_and_message() -> None:
    servicer = Servicer(errors.ModelNotFound("m", known=["a", "b"]))
    with pytest.raises(Aborted) as caught:
        servicer.Call("q", Context())  # type: ignore[arg-type]
    assert caught.value.args == (
        grpc.StatusCode.NOT_FOUND,
        "model 'm' is not in the repository; known models: a, b",
    )


def test_an_unexpected_error_is_internal_with_a_request_id_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    servicer = Servicer(KeyError("secret detail"))
    with pytest.raises(Aborted) as caught:
        servicer.Call("q", Context())  # type: ignore[arg-type]
    code, details = caught.value.args
    assert code is grpc.StatusCode.INTERNAL
    assert details.startswith("internal server error (request id ") and "secret" not in details
    request_id = details.removeprefix("internal server error (request id ").rstrip(")")
    assert f"unexpected error in Call (request id {request_id})" in caplog.text
    assert "secret detail" in caplog.text  # the traceback stays in the server log


def test_a_call_that_succeeds_returns_its_answer() -> None:
    assert Servicer(None).Call("q", Context()) == "answer to q"  # type: ignore[arg-type]
