"""Where the promotion controller's evidence comes from: this process's windows and shadow
aggregates (LocalEvidence), or, in a fleet, the merged windows of every live replica
(fleet.telemetry.FleetTelemetry implements the same EvidenceSource)."""

from __future__ import annotations

from typing import Protocol

from server.promotion.decision import ShadowWindow
from server.shadow.executor import ShadowExecutor
from server.telemetry.windows import WindowProcessor, WindowSummary

__all__ = ["EvidenceSource", "LocalEvidence"]


class EvidenceSource(Protocol):
    """Per-version windows and shadow counters of a model, and who contributed them."""

    @property
    def bucket_s(self) -> float:
        """The granularity of `since`: a bucket that overlaps it counts whole."""
        ...

    def summary(
        self, model: str, version: str, window_s: float, since: float = 0.0
    ) -> WindowSummary:
        """The version's calls in the last `window_s` seconds, not before `since`."""
        ...

    def shadow(self, model: str, candidate: str) -> ShadowWindow | None:
        """The candidate's shadow runs so far (None: no shadow runs were ever sampled)."""
        ...

    def replicas(self, model: str) -> tuple[str, ...]:
        """The replicas whose windows the evidence merges (empty: this process alone)."""
        ...


class LocalEvidence:
    """This process's own windows and shadow aggregates: one server, or SQLite processes."""

    def __init__(self, windows: WindowProcessor, shadow: ShadowExecutor) -> None:
        self._windows = windows
        self._shadow = shadow

    @property
    def bucket_s(self) -> float:
        return self._windows.bucket_s

    def summary(
        self, model: str, version: str, window_s: float, since: float = 0.0
    ) -> WindowSummary:
        return self._windows.summary(model, version, window_s, since)

    def shadow(self, model: str, candidate: str) -> ShadowWindow | None:
        stats = self._shadow.stats(model, candidate)
        if stats is None:
            return None
        return ShadowWindow(
            completed=stats.completed,
            disagreements=stats.disagreements,
            errors=stats.errors,
            worst_request_ids=tuple(w.request_id for w in stats.worst() if w.request_id),
        )

    def replicas(self, model: str) -> tuple[str, ...]:
        return ()
