"""The fan-out: every event to the receivers that want it, and one structured log line.

`on_audit` is the rollout controller's audit listener (called under its write lock: it only
formats and queues). In a fleet each replica hears only the changes it made itself (changes
synced from the store are not audited again), so the replica that made a change sends its
event, once; stable alerts are sent by the promotion leader alone.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from server.clock import Clock
from server.notify.delivery import Attempt, Backoff, Receiver
from server.notify.events import Event, from_audit, matches
from server.notify.settings import NotificationConfig, WebhookConfig
from server.notify.transport import Transport, post
from server.rollout.store import AuditEntry

__all__ = ["Notifier", "TestResult"]

log = logging.getLogger("canaryserve.events")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


@dataclass(frozen=True)
class TestResult:
    """What one receiver did with the test event."""

    receiver: str
    attempt: Attempt


class Notifier:
    """Every configured webhook, fed from one place."""

    def __init__(
        self,
        config: NotificationConfig,
        *,
        transport: Transport = post,
        clock: Clock = time.time,
    ) -> None:
        self._clock = clock
        backoff = Backoff(config.backoff_initial_seconds, config.backoff_max_seconds)
        self._hooks: list[tuple[WebhookConfig, Receiver]] = [
            (
                hook,
                Receiver(
                    hook.url,
                    name=hook.name,
                    secret=hook.secret,
                    timeout_s=hook.timeout_seconds,
                    queue_size=config.queue_size,
                    max_attempts=config.max_attempts,
                    backoff=backoff,
                    transport=transport,
                    clock=clock,
                    draw=random.random,
                ),
            )
            for hook in config.webhooks
        ]

    @property
    def receivers(self) -> list[Receiver]:
        return [r for _, r in self._hooks]

    def start(self) -> None:
        for receiver in self.receivers:
            receiver.start()

    def shutdown(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        for receiver in self.receivers:
            receiver.shutdown(max(0.0, deadline - time.monotonic()))

    def force_flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(r.force_flush(max(0.0, deadline - time.monotonic())) for r in self.receivers)

    def on_audit(self, entry: AuditEntry) -> None:
        """The rollout controller's listener: a rollout event for every audit row that is one."""
        try:
            event = from_audit(entry)
        except Exception:  # a notification must never fail a committed change
            log.exception("cannot turn audit row %s (%s) into an event", entry.id, entry.operation)
            return
        if event is not None:
            self.publish(event)

    def publish(self, event: Event) -> None:
        """Log `event` as one line and queue it for every receiver that wants it."""
        details = event.details
        log.log(
            _LEVELS.get(event.severity, logging.INFO),
            "%s: %s",
            event.model,
            event.summary + (f" ({event.reason})" if event.reason else ""),
            extra={
                "event": event.type,
                "event_id": event.id,
                "model": event.model,
                "version": details.get("candidate_version") or details.get("stable_version"),
                "actor": event.actor,
                "trace_ids": list(details.get("trace_ids") or ())[:5],
            },
        )
        for hook, receiver in self._hooks:
            if matches(event.type, hook.events):
                receiver.offer(event)

    def send_test(self, actor: str, reason: str) -> list[TestResult]:
        """Send a `notification.test` event to every receiver now (one attempt each, on the
        caller's thread, past the queue) and say what each answered."""
        event = Event(
            type="notification.test",
            model="*",
            severity="info",
            summary="test notification: this receiver is configured and reachable",
            at=self._clock(),
            actor=actor,
            reason=reason,
        )
        return [TestResult(r.name, r.attempt(event)) for r in self.receivers]
