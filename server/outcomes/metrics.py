"""The outcome families of /metrics: a prometheus_client collector over the outcome windows'
totals, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from server.outcomes.windows import OutcomeWindows

__all__ = ["OutcomeCollector"]

_LABELS = ("model", "version", "outcome")


class OutcomeCollector(Collector):
    """Per model, version and outcome name: reports received and the sum of their values (for
    a binary outcome, the successes), so a dashboard can plot each version's rate or mean."""

    def __init__(self, windows: OutcomeWindows) -> None:
        self._windows = windows

    def collect(self) -> Iterator[Metric]:
        reports = CounterMetricFamily(
            "canaryserve_outcome_reports",
            "Outcome reports joined to the version that served the request.",
            labels=_LABELS,
        )
        values = CounterMetricFamily(
            "canaryserve_outcome_value",
            "Sum of the reported outcome values (for a binary outcome: the successes).",
            labels=_LABELS,
        )
        for model, version, name, n, total in self._windows.totals():
            reports.add_metric([model, version, name], n)
            values.add_metric([model, version, name], total)
        yield reports
        yield values
