"""The etcd v3 client: endpoints tried in turn, a deadline on every call, stubs generated from
etcd's own API protos (protos/etcd; docs/fleet.md says why this and not a library). An
unreachable etcd raises StoreUnavailable naming the store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from protos.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc
from server.errors import StoreUnavailable

__all__ = ["SCHEME", "EtcdClient", "EtcdTarget", "parse_store_url", "prefix_end", "wait_reachable"]

SCHEME = "etcd://"
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
#: etcd answers UNKNOWN with its own context's error when a request times out inside the
#: member (seen while a cluster regains its quorum): as unreachable as UNAVAILABLE.
_UNKNOWN_TIMEOUTS = ("context deadline exceeded", "context canceled")


def _retryable(exc: grpc.RpcError) -> bool:
    code = exc.code()
    if code in _RETRYABLE:
        return True
    return code == grpc.StatusCode.UNKNOWN and any(
        t in (exc.details() or "") for t in _UNKNOWN_TIMEOUTS
    )


_CHANNEL_OPTIONS = [
    # A Range over a prefix answers in one message: the fleet's published telemetry and outcome
    # windows grow with replicas and versions past gRPC's default 4 MiB (etcd sends any size).
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    # Reconnect within a second of etcd coming back (gRPC's default backoff reaches 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a silently dead connection under an open watch (etcd allows pings every 5 s).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 3_000),
    ("grpc.keepalive_permit_without_calls", 1),
]

#: etcd's require-leader metadata (clientv3.WithRequireLeader): a member that loses its raft
#: leader ends the watch UNAVAILABLE ("no leader") instead of keeping it open and silent, so a
#: replica watching through a member cut off from the majority moves to another member.
_REQUIRE_LEADER = (("hasleader", "true"),)

R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EtcdTarget:
    """A parsed store URL: etcd endpoints and the key prefix every key lives under."""

    endpoints: tuple[str, ...]
    prefix: str

    @property
    def url(self) -> str:
        return f"{SCHEME}{','.join(self.endpoints)}/{self.prefix}"


def parse_store_url(url: str) -> EtcdTarget:
    """`etcd://HOST:PORT[,HOST:PORT...]/PREFIX` -> EtcdTarget; ValueError says what is wrong."""
    if not url.startswith(SCHEME):
        raise ValueError(f"store URL must start with {SCHEME}, got {url!r}")
    hosts, _, prefix = url[len(SCHEME) :].partition("/")
    prefix = prefix.strip("/")
    endpoints = tuple(h for h in hosts.split(",") if h)
    if not endpoints or not prefix:
        raise ValueError(f"store URL must look like {SCHEME}HOST:PORT[,HOST:PORT...]/PREFIX")
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"store URL endpoint {endpoint!r} must be HOST:PORT")
    return EtcdTarget(endpoints, prefix)


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with `prefix`."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class EtcdClient:
    """The few etcd v3 calls canaryserve needs, over one channel per endpoint."""

    def __init__(self, target: EtcdTarget, *, timeout: float = 2.0) -> None:
        self.target = target
        self.timeout = timeout
        self._lock = threading.Lock()
        self._current = 0
        self._channels = [
            grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
            for endpoint in target.endpoints
        ]

    def _call(self, call: Callable[[grpc.Channel], R]) -> R:
        """`call` on the current endpoint; on UNAVAILABLE, on each other one in turn."""
        with self._lock:
            start = self._current
        last = ""
        for i in range(len(self._channels)):
            index = (start + i) % len(self._channels)
            try:
                result = call(self._channels[index])
            except grpc.RpcError as exc:
                if not _retryable(exc):
                    raise
                last = f"{self.target.endpoints[index]}: {exc.details()}"
                continue
            with self._lock:
                self._current = index
            return result
        raise StoreUnavailable(self.target.url, last)

    def _stub(self, service: str, channel: grpc.Channel) -> Any:
        return getattr(rpc_grpc, f"{service}Stub")(channel)

    def _kv(self, method: str, request: Any) -> Any:
        return self._call(
            lambda ch: getattr(self._stub("KV", ch), method)(request, timeout=self.timeout)
        )

    def _lease(self, method: str, request: Any) -> Any:
        return self._call(
            lambda ch: getattr(self._stub("Lease", ch), method)(request, timeout=self.timeout)
        )

    def range(self, request: rpc.RangeRequest) -> rpc.RangeResponse:
        response: rpc.RangeResponse = self._kv("Range", request)
        return response

    def put(self, request: rpc.PutRequest) -> rpc.PutResponse:
        response: rpc.PutResponse = self._kv("Put", request)
        return response

    def txn(self, request: rpc.TxnRequest) -> rpc.TxnResponse:
        response: rpc.TxnResponse = self._kv("Txn", request)
        return response

    def grant(self, ttl_s: int) -> rpc.LeaseGrantResponse:
        response: rpc.LeaseGrantResponse = self._lease(
            "LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl_s)
        )
        return response

    def revoke(self, lease: int) -> None:
        self._lease("LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease))

    def keepalive(self, lease: int) -> int:
        """Renew `lease` once; returns its remaining TTL (<= 0: it has expired)."""

        def once(ch: grpc.Channel) -> int:
            stream = self._stub("Lease", ch).LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease)]), timeout=self.timeout
            )
            for response in stream:
                return int(response.TTL)
            return 0

        return self._call(once)

    def watch(self, requests: Iterator[rpc.WatchRequest]) -> Any:
        """Open a watch stream on the current endpoint (the caller iterates and cancels it)."""
        with self._lock:
            channel = self._channels[self._current]
            self._current = (self._current + 1) % len(self._channels)  # next try: the next one
        return self._stub("Watch", channel).Watch(requests, metadata=_REQUIRE_LEADER)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def wait_reachable(target: EtcdTarget, timeout: float, poll: float = 0.25) -> None:
    """Return once some endpoint of `target` answers a read; StoreUnavailable after `timeout`
    seconds without one. A replica and its etcd often start together (a README, a pod)."""
    client = EtcdClient(target, timeout=min(2.0, max(timeout, poll)))
    deadline = time.monotonic() + timeout
    waited = False
    try:
        while True:
            try:
                client.range(rpc.RangeRequest(key=b"/", count_only=True))
                return
            except StoreUnavailable:
                if time.monotonic() + poll >= deadline:
                    raise
                if not waited:
                    log.warning("waiting up to %.0fs for the state store %s", timeout, target.url)
                    waited = True
                time.sleep(poll)
    finally:
        client.close()
