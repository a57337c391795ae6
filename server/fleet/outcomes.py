"""Fleet outcomes: each replica publishes its outcome windows under its lease; the outcome
gates and `canaryserve ab` read the merge of every live replica's (docs/outcomes.md, "In a fleet").

Keys: `P/outcomes/<model>/<replica>/<piece>` hold a server.outcomes.publication
.ReplicaOutcomes cut into pieces: `head` (time, bucket width) and one `s<slot>` per 600 s of
one-minute buckets over the last `horizon_s` seconds (24 hours, what the windows keep). Every
model with outcome reports here or an active rollout is published (a replica with no reports
of a rollout's model still says it counted none); the presence puts a piece again only when it
changed, so a round writes the head and the current slot.

`view` is the OutcomeSource the promotion controller and the Outcomes service read: this
replica's live windows merged with the others' publications no older than `stale_s` (a
replica that is gone lost its keys with its lease; one that stopped publishing is dropped by
age). A replica's reports count for the fleet while it lives: they are in its memory, as on a
single server, and leave with its lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeAlias

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from server.clock import Clock
from server.errors import StoreUnavailable
from server.fleet.client import EtcdClient, prefix_end
from server.outcomes.merged import MergedOutcomes
from server.outcomes.publication import (
    HEAD,
    SLOT_S,
    ReplicaOutcomes,
    assemble,
    fresh,
    parse_slot,
    slot_of,
    split,
)
from server.outcomes.summary import OutcomeBucket, SeriesKey
from server.outcomes.windows import OutcomeWindows

__all__ = ["FleetOutcomes", "RolloutModels"]

log = logging.getLogger(__name__)

#: The models with an active rollout (published even without outcome reports here).
RolloutModels: TypeAlias = Callable[[], Iterable[str]]
#: One parsed slot piece of another replica's publication.
Slot: TypeAlias = dict[SeriesKey, dict[float, OutcomeBucket]]
#: Remote publications are read at most this often per model (a view reads several times).
_CACHE_S = 0.2
#: An unreadable fleet is said at WARNING at most once in this many seconds (DEBUG otherwise).
_WARN_EVERY_S = 60.0


class FleetOutcomes:
    """Publishes this replica's outcome windows and merges every live replica's."""

    def __init__(
        self,
        client: EtcdClient,
        root: bytes,
        identity: str,
        windows: OutcomeWindows,
        rollouts: RolloutModels,
        *,
        stale_s: float = 5.0,
        horizon_s: float = 86_400.0,
        clock: Clock = time.time,
    ) -> None:
        self._client = client
        self._prefix = root + b"outcomes/"
        self.identity = identity
        self._windows = windows
        self._rollouts = rollouts
        self.stale_s = stale_s
        self.horizon_s = horizon_s
        self._clock = clock
        self._warned_at = float("-inf")
        self._cache: dict[str, tuple[float, list[ReplicaOutcomes]]] = {}
        self._pieces: dict[str, dict[str, str]] = {}  # model -> this replica's pieces by name
        #: model -> etcd key -> (mod_revision, a head's bytes or a parsed slot)
        self._parsed: dict[str, dict[bytes, tuple[int, bytes | Slot]]] = {}
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # the gates and gRPC threads read at once
        self.view = MergedOutcomes(windows, self.others, identity, clock)

    def _key(self, model: str) -> bytes:
        return self._prefix + model.encode() + b"/"

    def local(self, model: str, since: float | None = None) -> ReplicaOutcomes:
        """This replica's publication for `model` now (its buckets from `since` on; default:
        the whole horizon)."""
        now = self._clock()
        return ReplicaOutcomes(
            replica=self.identity,
            published_at=now,
            bucket_s=self._windows.bucket_s,
            series=self._windows.export(
                model, since=now - self.horizon_s if since is None else since
            ),
        )

    def publication(self) -> dict[bytes, bytes]:
        """The keys to publish this round (a presence.Publication). A slot that ended before
        the previous one began never changes again: it is split once, then kept, so a round
        exports and encodes only the last two slots (a report lands in the bucket of the time
        it is reported; the previous slot is encoded again for reports that raced its end)."""
        now = self._clock()
        oldest = slot_of(now - self.horizon_s)
        keys = {}
        for model in sorted({*self._windows.models(), *self._rollouts()}):
            kept = self._pieces.get(model)
            since = None if kept is None else float(slot_of(now) - SLOT_S)
            pieces = {**(kept or {}), **split(self.local(model, since))}
            pieces = {n: t for n, t in pieces.items() if n == HEAD or int(n[1:]) >= oldest}
            self._pieces[model] = pieces
            mine = self._key(model) + self.identity.encode() + b"/"
            for piece, text in pieces.items():
                keys[mine + piece.encode()] = text.encode()
        return keys

    def others(self, model: str) -> list[ReplicaOutcomes]:
        """The other replicas' fresh publications for `model` (cached for a moment). Each
        read lists the keys, then fetches and parses only the pieces that changed since the
        last read (finished slots never do)."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(model)
        if cached is None or now - cached[0] > _CACHE_S:
            try:
                with self._reading:
                    read = self._read(model)
            except (StoreUnavailable, grpc.RpcError) as exc:
                # The gates then read what is cached, then this replica's reports alone: say
                # so where an operator looks, without a line per gate evaluation.
                warn = now - self._warned_at >= _WARN_EVERY_S
                if warn:
                    self._warned_at = now
                log.log(
                    logging.WARNING if warn else logging.DEBUG,
                    "fleet outcomes of %s unreadable (outcome gates and ab use this replica's"
                    " reports until the store answers): %s",
                    model,
                    exc,
                )
                read = cached[1] if cached is not None else []  # aged out by fresh() below
            cached = (now, [p for p in read if p.replica != self.identity])
            with self._lock:
                self._cache[model] = cached
        return fresh(cached[1], now, self.stale_s)

    def _read(self, model: str) -> list[ReplicaOutcomes]:
        key = self._key(model)
        end = prefix_end(key)
        live = self._client.range(rpc.RangeRequest(key=key, range_end=end, keys_only=True)).kvs
        known = self._parsed.setdefault(model, {})
        changed = [
            kv.mod_revision for kv in live if known.get(kv.key, (0, None))[0] != kv.mod_revision
        ]
        if changed:
            since = min(changed)
            request = rpc.RangeRequest(key=key, range_end=end, min_mod_revision=since)
            for kv in self._client.range(request).kvs:
                piece = kv.key.rpartition(b"/")[2].decode()
                try:
                    parsed = kv.value if piece == HEAD else parse_slot(kv.value)
                except (ValueError, TypeError) as exc:  # not ours to read (a newer replica?)
                    log.debug("skipping outcome piece %r: %s", kv.key, exc)
                    parsed = {}
                known[kv.key] = (kv.mod_revision, parsed)
        alive = {kv.key for kv in live}
        for gone in [k for k in known if k not in alive]:
            del known[gone]
        heads: dict[str, bytes] = {}
        slots: dict[str, list[Slot]] = {}
        for k, (_, parsed) in known.items():
            replica, _, piece = k[len(key) :].decode().rpartition("/")
            if isinstance(parsed, bytes):
                heads[replica] = parsed
            else:
                slots.setdefault(replica, []).append(parsed)
        read = []
        for replica, head in heads.items():
            try:
                read.append(assemble(head, slots.get(replica, [])))
            except (ValueError, TypeError, KeyError) as exc:
                log.debug("skipping the outcomes of replica %s: %s", replica, exc)
        return read
