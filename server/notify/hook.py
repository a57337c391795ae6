"""The pre-promotion hook: a URL that must answer 2xx before an automatic step or promotion.

Flagger's `confirm-promotion` and `pre-rollout` webhooks, for the promotion controller: before
it acts on an ADVANCE or PROMOTE decision it POSTs the decision (signed like every event) and
holds unless the answer is 2xx; the next evaluation asks again. No retries within one
evaluation: holding is the safe answer, and the interval is the retry.
"""

from __future__ import annotations

import time
from typing import Any

from server.clock import Clock
from server.notify.events import Event
from server.notify.signing import SIGNATURE_HEADER, signature_header
from server.notify.transport import Transport, display_url, post
from server.promotion.decision import Action, Decision

__all__ = ["PrePromotionHook"]


class PrePromotionHook:
    """Asks one URL whether a step or promotion may proceed."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout_s: float = 5.0,
        transport: Transport = post,
        clock: Clock = time.time,
    ) -> None:
        self.url = url
        self.name = display_url(url)
        self._secret = secret
        self._timeout = timeout_s
        self._transport = transport
        self._clock = clock

    def confirm_decision(self, decision: Decision) -> str | None:
        """The promotion controller's `Confirm`: asks about an ADVANCE or PROMOTE decision."""
        ev = decision.evidence
        ppm = decision.next_canary_ppm
        return self.confirm(
            ev.model,
            "promotion" if decision.action is Action.PROMOTE else "step",
            decision.reason,
            {
                "stable_version": ev.stable_version,
                "candidate_version": ev.candidate_version,
                "action": decision.action.value,
                "next_canary_weight_percent": None if ppm is None else ppm / 10_000,
                "decision": decision.as_dict(),
            },
        )

    def confirm(self, model: str, action: str, summary: str, details: dict[str, Any]) -> str | None:
        """None when the hook answers 2xx; otherwise why the step must hold, in words."""
        event = Event(
            type=f"rollout.confirm_{action}",
            model=model,
            severity="info",
            summary=summary,
            at=self._clock(),
            actor="promotion",
            details=details,
        )
        body = event.body()
        headers = {"Content-Type": "application/json", "X-Canaryserve-Event": event.type}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature_header(self._secret, int(self._clock()), body)
        try:
            status = self._transport(self.url, body, headers, self._timeout)
        except OSError as exc:
            return f"pre-promotion hook {self.name} unreachable: {exc or type(exc).__name__}"
        if 200 <= status < 300:
            return None
        return f"pre-promotion hook {self.name} answered {status}"
