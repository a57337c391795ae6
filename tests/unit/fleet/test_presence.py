"""A replica's presence rounds against a fake etcd: the lease is renewed whatever the
publications do, a failing publication keeps its keys, and a failed round forgets nothing
that still has to be deleted."""

from __future__ import annotations

from typing import Any, cast

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from server.errors import StoreUnavailable
from server.fleet.client import EtcdClient
from server.fleet.presence import Presence


class FakeEtcd:
    """Keys, leases and transactions, in memory; `down` makes every transaction fail."""

    def __init__(self) -> None:
        self.keys: dict[bytes, bytes] = {}
        self.renewals = 0
        self.grants = 0
        self.down = False

    def grant(self, ttl_s: int) -> rpc.LeaseGrantResponse:
        self.grants += 1
        return rpc.LeaseGrantResponse(ID=self.grants, TTL=ttl_s)

    def keepalive(self, lease: int) -> int:
        self.renewals += 1
        return 5

    def revoke(self, lease: int) -> None:
        self.keys.clear()

    def txn(self, request: rpc.TxnRequest) -> rpc.TxnResponse:
        if self.down:
            raise StoreUnavailable("etcd", "down for the test")
        for op in request.success:
            if op.HasField("request_put"):
                self.keys[op.request_put.key] = op.request_put.value
            else:
                self.keys.pop(op.request_delete_range.key, None)
        return rpc.TxnResponse(succeeded=True)


def presence(fake: FakeEtcd) -> Presence:
    return Presence(cast(EtcdClient, fake), "r1")


def test_a_failing_publication_neither_stops_the_renewal_nor_drops_its_keys() -> None:
    fake = FakeEtcd()
    p = presence(fake)
    broken = {"now": False}

    def telemetry() -> dict[bytes, bytes]:
        if broken["now"]:
            raise RuntimeError("a bug in one publication")
        return {b"/t/r1": b"windows"}

    p.add(telemetry)
    p.add(lambda: {b"/ready/r1": b"1,2"})
    p.publish()  # first round: takes a lease
    assert fake.keys == {b"/t/r1": b"windows", b"/ready/r1": b"1,2"}
    broken["now"] = True
    p.publish()
    p.publish()
    assert fake.renewals == 2  # the lease lives on: the replica stays in the fleet
    assert fake.keys == {b"/t/r1": b"windows", b"/ready/r1": b"1,2"}  # nothing deleted


def test_keys_dropped_while_etcd_was_down_are_deleted_when_it_is_back() -> None:
    fake = FakeEtcd()
    p = presence(fake)
    slots = {"now": [b"/slot/1", b"/slot/2"]}
    p.add(lambda: dict.fromkeys(slots["now"], b"x"))
    p.publish()
    assert set(fake.keys) == {b"/slot/1", b"/slot/2"}
    fake.down = True
    slots["now"] = [b"/slot/1"]  # /slot/2 is dropped during the outage
    p.publish()
    fake.down = False
    slots["now"] = [b"/slot/1"]
    p.publish()
    assert set(fake.keys) == {b"/slot/1"}  # no stale slot key left behind


def test_a_key_added_in_a_round_that_failed_halfway_is_deleted_once_dropped() -> None:
    fake = FakeEtcd()
    p = presence(fake)
    keys: dict[str, Any] = {"now": {b"/a": b"1"}}
    p.add(lambda: keys["now"])
    p.publish()
    calls = {"n": 0}
    real_txn = fake.txn

    def first_chunk_only(request: rpc.TxnRequest) -> rpc.TxnResponse:
        calls["n"] += 1
        if calls["n"] > 1:
            raise StoreUnavailable("etcd", "gone after the first chunk")
        return real_txn(request)

    fake.txn = first_chunk_only  # type: ignore[method-assign]
    keys["now"] = {f"/k{i}".encode(): b"v" for i in range(150)}  # two chunks of ops
    p.publish()
    assert b"/k0" in fake.keys  # the first chunk went through
    fake.txn = real_txn  # type: ignore[method-assign]
    keys["now"] = {b"/a": b"2"}
    p.publish()
    assert fake.keys == {b"/a": b"2"}


def test_a_round_renews_the_lease_before_any_publication_runs() -> None:
    fake = FakeEtcd()
    p = presence(fake)
    seen: list[int] = []

    def publication() -> dict[bytes, bytes]:
        seen.append(fake.grants + fake.renewals)
        return {}

    p.add(publication)
    p.publish()
    p.publish()
    assert seen == [1, 2]
