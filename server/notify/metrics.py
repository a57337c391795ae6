"""The notification families of /metrics: a prometheus_client collector over the receivers'
delivery counters, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.notify.notifier import Notifier

__all__ = ["NotificationCollector"]

_COUNTERS = (
    ("delivered", "Events the receiver accepted (2xx)."),
    ("failed", "Events given up: refused (4xx) or out of retries."),
    ("retries", "Attempts repeated after a connection error, 5xx or 429."),
    ("dropped", "Events dropped, oldest first, because the queue was full."),
)


class NotificationCollector(Collector):
    """Per receiver: events delivered, failed, retried, dropped, and queued now. Nothing when
    no webhook is configured."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def collect(self) -> Iterator[Metric]:
        receivers = self._notifier.receivers
        if not receivers:
            return
        for field, text in _COUNTERS:
            family = CounterMetricFamily(
                f"canaryserve_notifications_{field}", text, labels=("receiver",)
            )
            for receiver in receivers:
                family.add_metric([receiver.name], getattr(receiver.stats, field))
            yield family
        queued = GaugeMetricFamily(
            "canaryserve_notifications_queued", "Events waiting to be sent.", labels=("receiver",)
        )
        for receiver in receivers:
            queued.add_metric([receiver.name], receiver.pending())
        yield queued
