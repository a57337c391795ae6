"""Store URLs: endpoints and a prefix, or a clear refusal."""

from __future__ import annotations

import pytest

from server.fleet.client import parse_store_url


def test_store_urls_name_endpoints_and_a_prefix() -> None:
    target = parse_store_url("etcd://10.0.0.1:2379,etcd-2:2379/prod/canaryserve/")
    assert target.endpoints == ("10.0.0.1:2379", "etcd-2:2379")
    assert target.prefix == "prod/canaryserve"
    assert target.url == "etcd://10.0.0.1:2379,etcd-2:2379/prod/canaryserve"
    for bad in ("etcd://h:1", "etcd:///p", "etcd://host/p", "http://h:1/p", "etcd://h:99999/p"):
        with pytest.raises(ValueError):
            parse_store_url(bad)
