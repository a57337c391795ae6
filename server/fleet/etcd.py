"""Rollout state in etcd: EtcdStore (a StateStore with a watch) and Election (one leader).

Keys under the store URL's prefix P (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`):

    P/state/<model>          the model's RolloutState JSON (salt, weights, rules: all routing)
    P/rev/<model>            its revision, the compare-and-set target of every commit
    P/audit/<model>/<uuid>   one audit row (JSON); its id is the etcd revision that wrote it
    P/leader                 the promotion leader's identity, bound to its lease

A commit is one etcd transaction: if P/rev/<model> still holds the expected revision (or does
not exist, for a first state), put the revision, the state and the audit row; otherwise read
the revision for the error. Exactly one of concurrent writers wins.

The client speaks etcd's v3 gRPC API through stubs generated from etcd's own protos
(protos/etcd, `python -m protos.generate`); docs/fleet.md says why this and not a library.
Endpoints are tried in turn; every unary call has a deadline, and an unreachable etcd raises
StoreUnavailable naming the store, so admin writes fail UNAVAILABLE while serving goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from protos.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc
from protos.etcd.mvccpb import kv_pb2
from server.errors import RevisionMismatch, StoreUnavailable
from server.rollout.state import RolloutState
from server.rollout.store import AuditEntry, OnChange, check_commit, check_limit

__all__ = [
    "SCHEME",
    "Election",
    "EtcdClient",
    "EtcdStore",
    "EtcdTarget",
    "parse_store_url",
]

log = logging.getLogger(__name__)

SCHEME = "etcd://"
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_CHANNEL_OPTIONS = [
    # Reconnect within a second of etcd coming back (gRPC's default backoff reaches 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a silently dead connection under an open watch (etcd allows pings every 5 s).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 3_000),
    ("grpc.keepalive_permit_without_calls", 1),
]

R = TypeVar("R")


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


def _prefix_end(prefix: bytes) -> bytes:
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
                if exc.code() not in _RETRYABLE:
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
        return self._stub("Watch", channel).Watch(requests)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def _audit_json(entry: AuditEntry) -> bytes:
    row = dataclasses.asdict(entry)
    del row["id"]
    return json.dumps(row, separators=(",", ":")).encode()


def _audit_row(kv: kv_pb2.KeyValue) -> AuditEntry:
    return AuditEntry(id=int(kv.create_revision), **json.loads(kv.value))


class EtcdStore:
    """StateStore in etcd: shared by every replica, watched by each (module docstring)."""

    def __init__(self, target: EtcdTarget, *, timeout: float = 2.0) -> None:
        self.target = target
        self.name = target.url
        self.client = EtcdClient(target, timeout=timeout)
        root = f"/{target.prefix}/".encode()
        self.root = root
        self._state = root + b"state/"
        self._rev = root + b"rev/"
        self._audit = root + b"audit/"
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self._stream: Any = None
        self._stream_lock = threading.Lock()
        #: Whether the last call (or the watch) reached etcd.
        self.available = True
        self.last_revision = 0  # the etcd revision the watcher has seen up to
        self.client.range(rpc.RangeRequest(key=root, range_end=_prefix_end(root), count_only=True))

    # -- StateStore --

    def load(self) -> dict[str, RolloutState]:
        return self._load()[0]

    def _load(self) -> tuple[dict[str, RolloutState], int]:
        response = self.client.range(
            rpc.RangeRequest(key=self._state, range_end=_prefix_end(self._state))
        )
        states: dict[str, RolloutState] = {}
        for kv in response.kvs:
            state = RolloutState.from_json(kv.value.decode())
            states[state.model] = state
        return states, int(response.header.revision)

    def commit(
        self, state: RolloutState, expected_revision: int | None, audit: AuditEntry
    ) -> AuditEntry:
        check_commit(state, audit)
        model = state.model.encode()
        rev_key = self._rev + model
        if expected_revision is None:
            compare = rpc.Compare(
                key=rev_key, target=rpc.Compare.VERSION, result=rpc.Compare.EQUAL, version=0
            )
        else:
            compare = rpc.Compare(
                key=rev_key,
                target=rpc.Compare.VALUE,
                result=rpc.Compare.EQUAL,
                value=str(expected_revision).encode(),
            )
        audit_key = self._audit + model + b"/" + uuid.uuid4().hex.encode()
        puts = [
            (rev_key, str(state.revision).encode()),
            (self._state + model, state.to_json().encode()),
            (audit_key, _audit_json(audit)),
        ]
        response = self.client.txn(
            rpc.TxnRequest(
                compare=[compare],
                success=[
                    rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=v)) for k, v in puts
                ],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=rev_key))],
            )
        )
        if not response.succeeded:
            kvs = response.responses[0].response_range.kvs
            actual = int(kvs[0].value) if kvs else 0
            raise RevisionMismatch(state.model, expected_revision or 0, actual)
        return dataclasses.replace(audit, id=int(response.header.revision))

    def append_audit(self, entry: AuditEntry) -> AuditEntry:
        key = self._audit + entry.model.encode() + b"/" + uuid.uuid4().hex.encode()
        response = self.client.put(rpc.PutRequest(key=key, value=_audit_json(entry)))
        return dataclasses.replace(entry, id=int(response.header.revision))

    def audit(
        self, model: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[AuditEntry]:
        check_limit(limit)
        prefix = self._audit + (model.encode() + b"/" if model is not None else b"")
        request = rpc.RangeRequest(
            key=prefix,
            range_end=_prefix_end(prefix),
            limit=limit,
            sort_target=rpc.RangeRequest.CREATE,
            sort_order=rpc.RangeRequest.ASCEND if after_id > 0 else rpc.RangeRequest.DESCEND,
            min_create_revision=after_id + 1 if after_id > 0 else 0,
        )
        rows = [_audit_row(kv) for kv in self.client.range(request).kvs]
        return rows if after_id > 0 else rows[::-1]

    def watch(self, on_change: OnChange) -> None:
        if self._watcher is not None:
            raise RuntimeError("EtcdStore.watch() may be called once")
        self._watcher = threading.Thread(
            target=self._watch_loop, args=(on_change,), name="canaryserve-etcd-watch", daemon=True
        )
        self._watcher.start()

    def close(self) -> None:
        self._closed.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.cancel()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(3.0)
        self.client.close()

    # -- the watch --

    def _watch_loop(self, on_change: OnChange) -> None:
        """Mirror P/state/ and hand each change to on_change. After a broken stream, watch
        again from the last revision seen, so nothing written meanwhile is missed; if etcd
        has compacted that history away, reload everything instead."""
        states: dict[str, RolloutState] | None = None
        backoff = 0.05
        while not self._closed.is_set():
            try:
                if states is None:
                    states, revision = self._load()
                    self.last_revision = revision
                    on_change(dict(states))
                if self._follow(states, on_change):
                    states = None  # compacted: resync from a full read
                backoff = 0.05
            except (StoreUnavailable, grpc.RpcError) as exc:
                if self._closed.is_set():
                    return
                if self.available:
                    log.warning("etcd watch on %s broke (%s); serving on", self.name, exc)
                self.available = False
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 0.5)
            except Exception:
                log.exception("etcd watch on %s failed; retrying", self.name)
                self._closed.wait(0.5)

    def _follow(self, states: dict[str, RolloutState], on_change: OnChange) -> bool:
        """Follow one watch stream until it ends; True when it ended by compaction."""
        done = threading.Event()
        create = rpc.WatchCreateRequest(
            key=self._state,
            range_end=_prefix_end(self._state),
            start_revision=self.last_revision + 1,
        )

        def requests() -> Iterator[rpc.WatchRequest]:
            yield rpc.WatchRequest(create_request=create)
            done.wait()

        try:
            with self._stream_lock:
                if self._closed.is_set():
                    return False
                stream = self._stream = self.client.watch(requests())
            for response in stream:
                if response.compact_revision:
                    log.warning("etcd history compacted past our revision; reloading")
                    return True
                if response.created and not self.available:
                    log.info(
                        "etcd watch on %s is back from revision %d",
                        self.name,
                        create.start_revision,
                    )
                self.available = True
                if not response.events:
                    continue
                for event in response.events:
                    model = event.kv.key[len(self._state) :].decode()
                    if event.type == kv_pb2.Event.DELETE:
                        states.pop(model, None)
                    else:
                        states[model] = RolloutState.from_json(event.kv.value.decode())
                    self.last_revision = max(self.last_revision, int(event.kv.mod_revision))
                on_change(dict(states))
            if self._closed.is_set():
                return False
            raise StoreUnavailable(self.name, "the watch stream ended")
        except grpc.RpcError:
            if self._closed.is_set():
                return False
            raise
        finally:
            done.set()
            with self._stream_lock:
                self._stream = None


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
