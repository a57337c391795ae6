"""The connection every typed client builds on: each call's metadata and deadline, failed calls
as ClientError, closing the channel. A recording stub stands in for the generated one."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from client.connection import Connection, bearer
from client.errors import ClientError


class _Channel:
    closed = False

    def close(self) -> None:
        self.closed = True


class _Refused(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.PERMISSION_DENIED

    def details(self) -> str:
        return "token 'ci' may not do that"


class _Stub:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.calls: list[tuple[object, dict[str, Any]]] = []

    def Echo(self, request: object, **kwargs: Any) -> object:
        self.calls.append((request, kwargs))
        return request

    def Refuse(self, request: object, **kwargs: Any) -> object:
        raise _Refused()


def _connection(**kwargs: Any) -> tuple[Connection, _Stub, _Channel]:
    channel = _Channel()
    conn = Connection(channel, _Stub, **kwargs)  # type: ignore[arg-type]
    stub: _Stub = conn._stub
    assert stub.channel is channel
    return conn, stub, channel


def test_a_call_carries_the_connections_metadata_and_deadline() -> None:
    conn, stub, _ = _connection(timeout=2.5, metadata=bearer("s3cret"))
    assert conn._call(stub.Echo, "req") == "req"
    assert stub.calls == [
        ("req", {"timeout": 2.5, "metadata": (("authorization", "Bearer s3cret"),)})
    ]


def test_a_call_may_add_metadata_and_set_its_own_deadline() -> None:
    conn, stub, _ = _connection(timeout=2.5, metadata=(("a", "1"),))
    conn._call(stub.Echo, "req", 0.1, [("x-routing-key", "u1")])
    assert stub.calls[0][1] == {"timeout": 0.1, "metadata": (("a", "1"), ("x-routing-key", "u1"))}
    conn.timeout = 7.0  # the public deadline applies to later calls
    conn._call(stub.Echo, "req")
    assert stub.calls[1][1] == {"timeout": 7.0, "metadata": (("a", "1"),)}


def test_a_failed_call_raises_client_error_with_the_status_name_and_details() -> None:
    conn, stub, _ = _connection(timeout=1.0)
    with pytest.raises(ClientError) as caught:
        conn._call(stub.Refuse, "req")
    assert (caught.value.code, caught.value.details) == (
        "PERMISSION_DENIED",
        "token 'ci' may not do that",
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_leaving_the_with_block_closes_the_channel() -> None:
    conn, _, channel = _connection(timeout=1.0)
    with conn as entered:
        assert entered is conn and not channel.closed
    assert channel.closed
