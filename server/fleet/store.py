"""Rollout state in etcd: EtcdStore, a StateStore with a watch.

Keys under the store URL's prefix P (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`):

    P/state/<model>          the model's RolloutState JSON (salt, weights, rules: all routing)
    P/rev/<model>            its revision, the compare-and-set target of every commit
    P/audit/<model>/<uuid>   one audit row (JSON); its id is the etcd revision that wrote it
    P/leader                 the promotion leader's identity, bound to its lease

A commit is one etcd transaction: if P/rev/<model> still holds the expected revision (or does
not exist, for a first state), put the revision, the state and the audit row; otherwise read
the revision for the error. Exactly one of concurrent writers wins.

An unreachable etcd raises StoreUnavailable naming the store (fleet.client), so admin writes
fail UNAVAILABLE while serving goes on from the last snapshot.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from protos.etcd.mvccpb import kv_pb2
from server.errors import RevisionMismatch, StoreUnavailable
from server.fleet.client import EtcdClient, EtcdTarget, prefix_end
from server.rollout.state import RolloutState
from server.rollout.store import AuditEntry, OnChange, check_commit, check_limit

__all__ = ["EtcdStore"]

log = logging.getLogger(__name__)


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
        self.client.range(rpc.RangeRequest(key=root, range_end=prefix_end(root), count_only=True))

    # -- StateStore --

    def load(self) -> dict[str, RolloutState]:
        return self._load()[0]

    def _load(self) -> tuple[dict[str, RolloutState], int]:
        response = self.client.range(
            rpc.RangeRequest(key=self._state, range_end=prefix_end(self._state))
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
            range_end=prefix_end(prefix),
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
            range_end=prefix_end(self._state),
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
