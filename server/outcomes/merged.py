"""Where outcome gates and `canaryserve ab` read outcomes: this process's windows
(OutcomeWindows), or in a fleet the merge of its windows with every live replica's published
ones (MergedOutcomes over server.outcomes.summary). Both are an OutcomeSource.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias

from server.clock import Clock
from server.outcomes.publication import ReplicaOutcomes
from server.outcomes.stats import Kind, Sample
from server.outcomes.summary import OutcomeBucket, SeriesKey, merge_all, series_sample
from server.outcomes.windows import OutcomeSeries, OutcomeWindows

__all__ = ["MergedOutcomes", "OtherReplicas", "OutcomeSource"]

#: The other replicas' fresh outcome publications of a model.
OtherReplicas: TypeAlias = Callable[[str], Sequence[ReplicaOutcomes]]


class OutcomeSource(Protocol):
    """Per-version outcome series of a model, and whose reports they hold."""

    def names(self, model: str) -> list[str]:
        """The outcome names reported for `model`, sorted."""
        ...

    def kind(self, model: str, name: str) -> Kind | None:
        """The kind of outcome `name` of `model` (None: never reported)."""
        ...

    def versions(self, model: str, name: str) -> list[str]:
        """The versions with reports of `name`, in version order."""
        ...

    def series(
        self, model: str, version: str, name: str, window_s: float, since: float = 0.0
    ) -> OutcomeSeries:
        """`version`'s outcome `name` over the last `window_s` seconds, not before `since`."""
        ...

    def replicas(self, model: str) -> tuple[str, ...]:
        """The replicas whose reports are merged (empty: this process alone)."""
        ...


class MergedOutcomes:
    """This replica's outcome windows plus the other replicas' publications (an
    OutcomeSource). A publication with another bucket width is left out: its buckets would
    not line up with these."""

    def __init__(
        self,
        local: OutcomeWindows,
        others: OtherReplicas,
        identity: str,
        clock: Clock = time.time,
    ) -> None:
        self._local = local
        self._others = others
        self.identity = identity
        self._clock = clock

    def _sources(self, model: str) -> list[ReplicaOutcomes]:
        bucket_s = self._local.bucket_s
        return [o for o in self._others(model) if o.bucket_s == bucket_s]

    def merged(self, model: str) -> dict[SeriesKey, dict[float, OutcomeBucket]]:
        """Every series of `model`, summed over this replica and the others."""
        return merge_all([self._local.export(model), *(o.series for o in self._sources(model))])

    def _keys(self, model: str) -> set[SeriesKey]:
        return {key for o in self._sources(model) for key in o.series}

    def names(self, model: str) -> list[str]:
        return sorted({*self._local.names(model), *(key.name for key in self._keys(model))})

    def kind(self, model: str, name: str) -> Kind | None:
        """This replica's kind of `name` when it has one, else the first the others have."""
        mine = self._local.kind(model, name)
        if mine is not None:
            return mine
        kinds = sorted({key.kind for key in self._keys(model) if key.name == name})
        return kinds[0] if kinds else None

    def versions(self, model: str, name: str) -> list[str]:
        found = {key.version for key in self._keys(model) if key.name == name}
        found.update(self._local.versions(model, name))
        return sorted(found, key=lambda v: (len(v), v))

    def series(
        self, model: str, version: str, name: str, window_s: float, since: float = 0.0
    ) -> OutcomeSeries:
        """This replica's series plus the others' buckets of it (only this one series is
        read: a gate asks for two, `ab` for a few)."""
        kind = self.kind(model, name) or "binary"
        mine = self._local.series(model, version, name, window_s, since)
        lo = max(self._clock() - window_s, since)
        key = SeriesKey(version, name, kind)
        sample, reported = mine.randomized, mine.reported
        if sample.kind != kind:  # not reported here: the local default kind is not the fleet's
            sample = Sample(kind, 0, 0.0, 0.0)
        for other in self._sources(model):
            buckets = other.series.get(key)
            if buckets:
                theirs, n = series_sample(buckets, kind, bucket_s=self._local.bucket_s, lo=lo)
                sample, reported = sample + theirs, reported + n
        return OutcomeSeries(model, version, name, sample, reported)

    def replicas(self, model: str) -> tuple[str, ...]:
        return tuple(sorted([self.identity, *(o.replica for o in self._sources(model))]))
