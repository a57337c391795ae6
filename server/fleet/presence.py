"""A replica's presence in the fleet: its own etcd lease, and the keys it publishes under it.

Every replica holds a lease of `ttl_s` seconds (independent of the promotion leader's) and,
every `interval_s`, asks each registered publication for the keys it wants set and puts them
bound to that lease. The keys vanish with the lease: at once when the replica stops (it
revokes the lease), within `ttl_s` when it dies. A publication that drops a key it published
before has the key deleted. A failed round (etcd unreachable) is retried at the next one, on a
fresh lease if the old one expired meanwhile. The lease is renewed before any publication
runs, and a publication that raises keeps its previous keys: one failing publication never
costs the replica its lease (and with it its place in readiness and the fleet's evidence).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TypeAlias

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from server.errors import StoreUnavailable
from server.fleet.client import EtcdClient
from server.ticker import Ticker

__all__ = ["Presence", "Publication"]

log = logging.getLogger(__name__)

#: Operations per transaction: etcd refuses more than --max-txn-ops (128 by default).
_MAX_OPS = 100
#: Called every round: the keys (full etcd keys) and values to publish now.
Publication: TypeAlias = Callable[[], dict[bytes, bytes]]


class Presence:
    """This replica's lease and lease-bound publications (module docstring)."""

    def __init__(
        self, client: EtcdClient, identity: str, *, ttl_s: int = 5, interval_s: float = 1.0
    ) -> None:
        self._client = client
        self.identity = identity
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self._lease = 0
        self._publications: list[Publication] = []
        #: What etcd holds from this replica (None: unsure after a failed round, put again).
        self._published: dict[bytes, bytes | None] = {}
        self._by_publication: dict[int, dict[bytes, bytes]] = {}  # index -> its last keys
        #: Bytes of values put so far (what publishing costs etcd's history).
        self.written = 0
        self._ticker = Ticker(
            "canaryserve-presence",
            interval_s,
            self.publish,
            log=log,
            failure=f"replica {identity}: a publishing round failed",
        )

    def add(self, publication: Publication) -> None:
        self._publications.append(publication)

    def start(self) -> None:
        self.publish()  # the first round before serving: the others see this replica at once
        self._ticker.start()

    def nudge(self) -> None:
        """Publish now rather than at the next round (something published has changed)."""
        self._ticker.nudge()

    def close(self) -> None:
        """Stop publishing and revoke the lease: every key published goes with it."""
        self._ticker.stop(3.0)
        if self._lease:
            with contextlib.suppress(StoreUnavailable, grpc.RpcError):
                self._client.revoke(self._lease)
            self._lease = 0

    def publish(self) -> None:
        """One round: renew (or take) the lease, put what changed, delete what was dropped.

        The lease is renewed first, whatever the publications do: a publication that raises
        keeps what it published last (so its keys neither go stale nor vanish) and the others
        go on. After a failed round nothing is taken as published as it was: the next round
        puts every key again and deletes every key dropped since the last good round.
        """
        try:
            renewed = self._renew()
        except (StoreUnavailable, grpc.RpcError) as exc:
            log.debug("replica %s could not renew its lease: %s", self.identity, exc)
            return
        wanted: dict[bytes, bytes] = {}
        for i, publication in enumerate(self._publications):
            try:
                keys = publication()
            except Exception:  # a publication's own bug must not stop the others
                log.exception("replica %s: a publication failed", self.identity)
                keys = self._by_publication.get(i, {})
            self._by_publication[i] = keys
            wanted.update(keys)
        ops = [
            rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=v, lease=self._lease))
            for k, v in wanted.items()
            if renewed or self._published.get(k) != v
        ]
        ops += [
            rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k))
            for k in self._published
            if k not in wanted
        ]
        try:
            for i in range(0, len(ops), _MAX_OPS):
                self._client.txn(rpc.TxnRequest(success=ops[i : i + _MAX_OPS]))
        except (StoreUnavailable, grpc.RpcError) as exc:
            log.debug("replica %s could not publish: %s", self.identity, exc)
            # Some chunks may have gone through: put everything again, delete whatever
            # either round had (deleting a key that is not there is harmless).
            self._published = {k: None for k in {*self._published, *wanted}}
            return
        self.written += sum(len(op.request_put.value) for op in ops)
        self._published = dict(wanted)

    def _renew(self) -> bool:
        """Keep the lease alive; True when it is a new lease (every key must be put again)."""
        if self._lease and self._client.keepalive(self._lease) > 0:
            return False
        self._lease = int(self._client.grant(self.ttl_s).ID)
        return True
