"""The fleet's desired versions of a model: how one operator's call changes them, what a
replica does to follow them, and when it tries again to load a version that failed.

The fleet keeps, per model, what operators named: the versions loaded through the API (every
replica loads them), the versions unloaded through it since (every replica unloads them), and
whether the whole model was unloaded (every replica unloads every version not loaded since).
A call changes only what it named, never by what the calling replica happens to have ready,
so a version a replica loaded on its own (poll mode, or its directory at start) is left alone
by unrelated calls, and a replica that starts later unloads what the fleet unloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from server.clock import Clock
from server.rollout.state import JSONValue
from server.serving.repository import RepositoryChange

__all__ = ["Desired", "LoadRetries", "Plan", "plan"]


def _by_number(versions: Set[str]) -> tuple[str, ...]:
    return tuple(sorted(versions, key=int))


@dataclass(frozen=True)
class Desired:
    """What operators named for one model (module docstring); `others_unloaded`: the whole
    model was unloaded, so every version not in `loaded` goes."""

    loaded: frozenset[str] = frozenset()
    unloaded: frozenset[str] = frozenset()
    others_unloaded: bool = False

    def after(self, change: RepositoryChange) -> Desired:
        if change.unloaded is None:
            return Desired(others_unloaded=True)
        return Desired(
            (self.loaded | change.loaded) - change.unloaded,
            (self.unloaded | change.unloaded) - change.loaded,
            self.others_unloaded,
        )

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "versions": list(_by_number(self.loaded)),
            "unloaded": list(_by_number(self.unloaded)),
            "others_unloaded": self.others_unloaded,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> Desired:
        def versions(key: str) -> frozenset[str]:
            value = doc.get(key, [])
            return frozenset(str(v) for v in value) if isinstance(value, list) else frozenset()

        return cls(versions("versions"), versions("unloaded"), doc.get("others_unloaded") is True)


@dataclass(frozen=True)
class Plan:
    """What a replica does to follow a desired set: load these, unload those (`whole`: the
    whole model, which the rollout controller allows while no rollout is active)."""

    load: tuple[str, ...]
    unload: tuple[str, ...]
    whole: bool = False


def plan(desired: Desired, ready: Set[str]) -> Plan:
    """Load every version loaded through the API that is not ready here; unload every ready
    version unloaded through it (every one not loaded since, after a whole-model unload)."""
    load = _by_number(desired.loaded - set(ready))
    if desired.others_unloaded:
        gone = set(ready) - desired.loaded
        return Plan(load, _by_number(gone), whole=not desired.loaded and bool(gone))
    return Plan(load, _by_number(desired.unloaded & set(ready)))


class LoadRetries:
    """Failed loads by (model, version): the next try waits `first` seconds after the first
    failure, twice as long after each further one, at most `longest`; a version is forgotten
    when it loads, and every version of a model when its desired set changes (a fresh try)."""

    def __init__(self, clock: Clock, *, first: float = 1.0, longest: float = 60.0) -> None:
        if not 0 < first <= longest:
            raise ValueError("need 0 < first <= longest")
        self._clock = clock
        self.first = first
        self.longest = longest
        self._failed: dict[tuple[str, str], tuple[int, float]] = {}  # -> (failures, next try)

    def due(self, model: str, version: str) -> bool:
        failed = self._failed.get((model, version))
        return failed is None or self._clock() >= failed[1]

    def failed(self, model: str, version: str) -> float:
        """Count a failure; returns the seconds until the next try."""
        failures = self._failed.get((model, version), (0, 0.0))[0] + 1
        wait = min(self.first * 2.0 ** min(failures - 1, 32), self.longest)
        self._failed[(model, version)] = (failures, self._clock() + wait)
        return wait

    def failures(self, model: str, version: str) -> int:
        return self._failed.get((model, version), (0, 0.0))[0]

    def loaded(self, model: str, version: str) -> None:
        self._failed.pop((model, version), None)

    def forget(self, model: str) -> None:
        for key in [k for k in self._failed if k[0] == model]:
            del self._failed[key]
