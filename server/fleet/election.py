"""One promotion leader for the fleet: an etcd lease on P/leader, renewed while held."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from server.errors import StoreUnavailable
from server.fleet.client import EtcdClient

__all__ = ["Election", "replica_identity"]

log = logging.getLogger(__name__)


def replica_identity() -> str:
    """This process among the fleet: host, pid and a random suffix (pids repeat in containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Election:
    """One leader among the replicas: whoever holds P/leader, bound to its lease.

    Followers try to take the key every `ttl_s / 6`; the leader renews its lease every
    `ttl_s / 3`. When the leader dies, its lease expires within `ttl_s` and a follower takes
    over at its next try. A leader that cannot renew (etcd unreachable) steps down at once:
    it never acts on a lease it cannot prove.
    """

    def __init__(
        self,
        client: EtcdClient,
        key: bytes,
        *,
        identity: str | None = None,
        ttl_s: int = 5,
    ) -> None:
        self._client = client
        self._key = key
        self.identity = identity or replica_identity()
        self.ttl_s = ttl_s
        self._lease = 0
        self._leader = False
        self._holder: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_leader(self) -> bool:
        return self._leader

    def leader(self) -> str | None:
        """The identity of the current leader, as last seen (None: none, or unknown)."""
        return self.identity if self._leader else self._holder

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="canaryserve-election", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop; a leader revokes its lease so a follower takes over at its next try."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)
        if self._leader and self._lease:
            self._leader = False
            with contextlib.suppress(StoreUnavailable, grpc.RpcError):
                self._client.revoke(self._lease)  # else the lease expires by itself

    def _loop(self) -> None:
        while True:
            try:
                if self._leader:
                    self._renew()
                else:
                    self._campaign()
            except (StoreUnavailable, grpc.RpcError) as exc:
                if self._leader:
                    log.warning("promotion leader %s steps down: %s", self.identity, exc)
                self._leader = False
                self._lease = 0
            wait = self.ttl_s / 3 if self._leader else self.ttl_s / 6
            if self._stop.wait(wait):
                return

    def _renew(self) -> None:
        if self._client.keepalive(self._lease) <= 0:
            log.warning("promotion leader %s lost its lease", self.identity)
            self._leader = False
            self._lease = 0

    def _campaign(self) -> None:
        lease = int(self._client.grant(self.ttl_s).ID)
        response = self._client.txn(
            rpc.TxnRequest(
                compare=[
                    rpc.Compare(
                        key=self._key,
                        target=rpc.Compare.CREATE,
                        result=rpc.Compare.EQUAL,
                        create_revision=0,
                    )
                ],
                success=[
                    rpc.RequestOp(
                        request_put=rpc.PutRequest(
                            key=self._key, value=self.identity.encode(), lease=lease
                        )
                    )
                ],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=self._key))],
            )
        )
        if response.succeeded:
            self._lease = lease
            self._leader = True
            self._holder = self.identity
            log.info("promotion leader is now %s", self.identity)
            return
        self._client.revoke(lease)
        kvs = response.responses[0].response_range.kvs
        self._holder = kvs[0].value.decode() if kvs else None
