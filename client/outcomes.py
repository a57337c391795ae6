"""Typed client of the Outcomes service: report business outcomes (one, or many in one call)
by request id or routing key, and read each version's outcomes side by side."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from client.channel import DEFAULT_TARGET, open_channel
from client.connection import Connection, bearer
from protos.canaryserve.outcomes.v1 import outcomes_pb2 as pb
from protos.canaryserve.outcomes.v1 import outcomes_pb2_grpc as pb_grpc

__all__ = ["Outcome", "OutcomesClient"]


@dataclass(frozen=True)
class Outcome:
    """One outcome to report: `value` True/False for a binary outcome, a float for a real one;
    `request_id` (the id the inference request carried), `routing_key`, or both: then the
    request id joins where the server process remembers it and the key everywhere else (in a
    fleet, the replica that receives the report may not be the one that served it)."""

    model: str
    name: str
    value: bool | float
    request_id: str = ""
    routing_key: str = ""

    def message(self) -> pb.Outcome:
        if not self.request_id and not self.routing_key:
            raise ValueError("an outcome names its request_id, its routing_key, or both")
        out = pb.Outcome(model=self.model, name=self.name)
        if self.request_id:
            out.request_id = self.request_id
            out.fallback_routing_key = self.routing_key
        else:
            out.routing_key = self.routing_key
        if isinstance(self.value, bool):
            out.binary = self.value
        else:
            out.real = float(self.value)
        return out


class OutcomesClient(Connection):
    """Outcome reports and the A/B view; `token` when the server has outcome tokens."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        channel: grpc.Channel | None = None,
    ) -> None:
        super().__init__(
            channel or open_channel(target),
            pb_grpc.OutcomesServiceStub,
            timeout=timeout,
            metadata=bearer(token) if token else (),
        )

    def report(
        self,
        model: str,
        name: str,
        value: bool | float,
        *,
        request_id: str = "",
        routing_key: str = "",
    ) -> pb.Attribution:
        """Report one outcome; returns where it was counted (ClientError NOT_FOUND when the
        server does not know the request id and no routing key was given)."""
        outcome = Outcome(model, name, value, request_id, routing_key)
        response: pb.ReportOutcomeResponse = self._call(
            self._stub.ReportOutcome, pb.ReportOutcomeRequest(outcome=outcome.message())
        )
        return response.attribution

    def report_many(self, outcomes: Iterable[Outcome]) -> pb.ReportOutcomesResponse:
        """Report outcomes in one call; the answer counts the accepted ones and lists each
        rejected one by index, with its status code and reason."""
        request = pb.ReportOutcomesRequest(outcomes=[o.message() for o in outcomes])
        response: pb.ReportOutcomesResponse = self._call(self._stub.ReportOutcomes, request)
        return response

    def compare(
        self, model: str, *, confidence: float = 0.95, window_seconds: float = 0.0
    ) -> pb.CompareOutcomesResponse:
        """Each outcome of `model` per version, with intervals, and candidate against stable."""
        request = pb.CompareOutcomesRequest(
            model=model, confidence=confidence, window_seconds=window_seconds
        )
        response: pb.CompareOutcomesResponse = self._call(self._stub.CompareOutcomes, request)
        return response
