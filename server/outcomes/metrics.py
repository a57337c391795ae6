"""The outcome families of /metrics: a prometheus_client collector over the outcome windows'
totals, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from server.outcomes.windows import OutcomeWindows

__all__ = ["OutcomeCollector"]

_LABELS = ("model", "version", "outcome")


class OutcomeCollector(Collector):
    """Per model, version and outcome name, a summary of the reported values: `_count` the
    reports, `_sum` their values (for a binary outcome, the successes). A summary, not a
    counter, because a real-valued outcome (revenue after refunds) may be negative; a dashboard
    plots each version's rate or mean as rate(_sum) / rate(_count)."""

    def __init__(self, windows: OutcomeWindows) -> None:
        self._windows = windows

    def collect(self) -> Iterator[Metric]:
        values = SummaryMetricFamily(
            "canaryserve_outcome_value",
            "Reported outcome values joined to the version that served the request (count:"
            " reports; sum: values, a binary outcome's successes).",
            labels=_LABELS,
        )
        for model, version, name, n, total in self._windows.totals():
            values.add_metric([model, version, name], count_value=n, sum_value=total)
        yield values
