"""Store URLs: endpoints and a prefix, or a clear refusal."""

from __future__ import annotations

import grpc
import pytest

from server.fleet.client import _retryable, parse_store_url


def test_store_urls_name_endpoints_and_a_prefix() -> None:
    target = parse_store_url("etcd://10.0.0.1:2379,etcd-2:2379/prod/canaryserve/")
    assert target.endpoints == ("10.0.0.1:2379", "etcd-2:2379")
    assert target.prefix == "prod/canaryserve"
    assert target.url == "etcd://10.0.0.1:2379,etcd-2:2379/prod/canaryserve"
    for bad in ("etcd://h:1", "etcd:///p", "etcd://host/p", "http://h:1/p", "etcd://h:99999/p"):
        with pytest.raises(ValueError):
            parse_store_url(bad)


class _Answer(grpc.RpcError):
    """What a failed etcd call raises: a code and etcd's details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "retry"),
    [
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader", True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", True),
        # A member whose cluster is regaining its quorum times the request out itself.
        (grpc.StatusCode.UNKNOWN, "context deadline exceeded", True),
        (grpc.StatusCode.UNKNOWN, "etcdserver: some other failure", False),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided", False),
    ],
)
def test_only_an_unreachable_member_sends_the_call_to_the_next_endpoint(
    code: grpc.StatusCode, details: str, retry: bool
) -> None:
    assert _retryable(_Answer(code, details)) is retry
