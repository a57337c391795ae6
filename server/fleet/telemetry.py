"""Fleet telemetry: each replica publishes its window summaries under its lease; the evidence
of a rollout is the merge of every live replica's (docs/fleet.md, "Promotion on the fleet").

Keys: `P/telemetry/<model>/<replica>/<piece>` hold a telemetry.publication.ReplicaTelemetry
cut into pieces: `head` (time, span, error traces, the candidate's shadow counters) and one
`s<slot>` per 10 s of buckets of the model's rollout versions over the last `horizon_s`
seconds (whole slots). Only models with an active rollout are published, and the presence
puts a piece again only when it changed: each round writes the head and the current slot,
not the whole horizon; slots that leave the horizon are deleted.

FleetTelemetry is also an EvidenceSource: its summaries merge this replica's live windows
with the other replicas' latest publications no older than `stale_s`; a replica that is gone
has lost its keys with its lease, one that stopped publishing is dropped by age.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeAlias

import grpc

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from server.clock import Clock
from server.errors import StoreUnavailable
from server.fleet.client import EtcdClient, prefix_end
from server.promotion.decision import ShadowWindow
from server.shadow.executor import ShadowExecutor
from server.telemetry.merge import (
    ShadowCounts,
    from_raw,
    merge_buckets,
    merge_shadow,
    merge_traces,
    summarize,
)
from server.telemetry.publication import SLOT_S, ReplicaTelemetry, fresh, join, slot_of, split
from server.telemetry.windows import WindowProcessor, WindowSummary

__all__ = ["FleetTelemetry", "RolloutVersions"]

log = logging.getLogger(__name__)

#: The models to publish, each with the versions its rollout involves (stable, candidate).
RolloutVersions: TypeAlias = Callable[[], dict[str, tuple[str, ...]]]
#: Remote publications are read at most this often per model (evaluations ask several times).
_CACHE_S = 0.2


class FleetTelemetry:
    """Publishes this replica's windows and merges every live replica's (module docstring)."""

    def __init__(
        self,
        client: EtcdClient,
        root: bytes,
        identity: str,
        windows: WindowProcessor,
        shadow: ShadowExecutor,
        rollouts: RolloutVersions,
        *,
        stale_s: float = 5.0,
        horizon_s: float = 600.0,
        clock: Clock = time.time,
    ) -> None:
        self._client = client
        self._prefix = root + b"telemetry/"
        self.identity = identity
        self._windows = windows
        self._shadow = shadow
        self._rollouts = rollouts
        self.stale_s = stale_s
        self.horizon_s = horizon_s
        self._clock = clock
        self._cache: dict[str, tuple[float, list[ReplicaTelemetry]]] = {}
        self._lock = threading.Lock()

    # -- publishing --

    def local(self, model: str, versions: tuple[str, ...]) -> ReplicaTelemetry:
        """This replica's publication for `model` now."""
        now = self._clock()
        oldest = slot_of(now - self.horizon_s)  # whole slots: the oldest leaves all at once
        buckets, traces = {}, {}
        for version in versions:
            raw, errors = self._windows.export(model, version, self.horizon_s + SLOT_S)
            kept = from_raw(r for r in raw if r[0] >= oldest)
            if kept:
                buckets[version] = kept
            if errors:
                traces[version] = tuple(errors)
        shadow = {}
        for candidate in versions:
            stats = self._shadow.stats(model, candidate)
            if stats is not None:
                shadow[candidate] = ShadowCounts(
                    stats.sampled, stats.submitted, stats.dropped, stats.completed,
                    stats.errors, stats.timeouts, stats.disagreements,
                )  # fmt: skip
        starts = [s for b in buckets.values() for s in b]
        return ReplicaTelemetry(
            replica=self.identity,
            published_at=now,
            bucket_s=self._windows.bucket_s,
            span_start=min(starts) if starts else now,
            versions=buckets,
            traces=traces,
            shadow=shadow,
        )

    def publication(self) -> dict[bytes, bytes]:
        """The keys to publish this round (a presence.Publication)."""
        keys = {}
        for model, versions in self._rollouts().items():
            mine = self._key(model) + self.identity.encode() + b"/"
            for piece, text in split(self.local(model, versions)).items():
                keys[mine + piece.encode()] = text.encode()
        return keys

    def _key(self, model: str) -> bytes:
        return self._prefix + model.encode() + b"/"

    # -- reading the fleet --

    def others(self, model: str) -> list[ReplicaTelemetry]:
        """The other replicas' fresh publications for `model` (cached for a moment)."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(model)
        if cached is None or now - cached[0] > _CACHE_S:
            key = self._key(model)
            try:
                kvs = self._client.range(rpc.RangeRequest(key=key, range_end=prefix_end(key))).kvs
                pieces: dict[str, dict[str, bytes]] = {}
                for kv in kvs:
                    replica, _, piece = kv.key[len(key) :].decode().rpartition("/")
                    pieces.setdefault(replica, {})[piece] = kv.value
                read = [p for p in map(join, pieces.values()) if p is not None]
            except (StoreUnavailable, grpc.RpcError) as exc:
                log.debug("fleet telemetry of %s unreadable: %s", model, exc)
                read = cached[1] if cached is not None else []  # aged out by fresh() below
            cached = (now, [p for p in read if p.replica != self.identity])
            with self._lock:
                self._cache[model] = cached
        return fresh(cached[1], now, self.stale_s)

    @property
    def bucket_s(self) -> float:
        return self._windows.bucket_s

    def summary(
        self, model: str, version: str, window_s: float, since: float = 0.0
    ) -> WindowSummary:
        """The version's merged window: this replica's live buckets plus the others'."""
        raw, traces = self._windows.export(model, version, self.horizon_s)
        buckets = from_raw(raw)
        every = [traces]
        for other in self.others(model):
            buckets = merge_buckets(buckets, other.versions.get(version, {}))
            every.append(list(other.traces.get(version, ())))
        return summarize(
            buckets,
            bucket_s=self.bucket_s,
            now=self._clock(),
            window_s=window_s,
            since=since,
            traces=merge_traces(*every),
        )

    def shadow_counts(self, model: str, candidate: str) -> ShadowCounts | None:
        """The candidate's shadow counters summed over the fleet (None: none anywhere)."""
        mine = self.local(model, (candidate,)).shadow.get(candidate)
        theirs = [o.shadow[candidate] for o in self.others(model) if candidate in o.shadow]
        if mine is None and not theirs:
            return None
        return merge_shadow([*([mine] if mine else []), *theirs])

    def shadow_report(
        self, model: str, candidate: str
    ) -> tuple[ShadowCounts, tuple[str, ...]] | None:
        """The fleet's shadow counters of the candidate and the replicas they come from."""
        counts = self.shadow_counts(model, candidate)
        return None if counts is None else (counts, self.replicas(model))

    def shadow(self, model: str, candidate: str) -> ShadowWindow | None:
        counts = self.shadow_counts(model, candidate)
        if counts is None:
            return None
        stats = self._shadow.stats(model, candidate)
        worst = stats.worst() if stats is not None else []  # request ids are this replica's
        return ShadowWindow(
            completed=counts.completed,
            disagreements=counts.disagreements,
            errors=counts.errors,
            worst_request_ids=tuple(w.request_id for w in worst if w.request_id),
        )

    def replicas(self, model: str) -> tuple[str, ...]:
        return tuple(sorted([self.identity, *(o.replica for o in self.others(model))]))
