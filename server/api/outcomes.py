"""The Outcomes servicer: thin — convert each report, delegate to the outcome recorder, convert
its attribution back; and the A/B view of a model's outcomes."""

from __future__ import annotations

import math
from collections.abc import Callable

import grpc

from protos.canaryserve.outcomes.v1 import outcomes_pb2 as pb
from protos.canaryserve.outcomes.v1 import outcomes_pb2_grpc as pb_grpc
from server.api.status import message_for, translate_errors
from server.errors import CanaryServeError, InvalidInput, status_name
from server.outcomes.ab import OutcomeComparison, compare
from server.outcomes.merged import OutcomeSource
from server.outcomes.recorder import Attribution, OutcomeRecorder, OutcomeReport
from server.outcomes.stats import BINARY, REAL, Difference
from server.rollout.router import RoutingTable
from server.serving.names import check_model_name

__all__ = ["MAX_BATCH", "OutcomesServicer"]

#: Outcomes one ReportOutcomes call may carry.
MAX_BATCH = 10_000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_WINDOW_S = 86_400.0


def _report(o: pb.Outcome) -> OutcomeReport:
    model = check_model_name(o.model, "outcome.model")
    which = o.WhichOneof("value")
    if which is None:
        raise InvalidInput(f"outcome '{o.name}' has no value: set binary (true/false) or real")
    kind, value = (BINARY, float(o.binary)) if which == "binary" else (REAL, o.real)
    return OutcomeReport(
        model, o.name, kind, value, o.request_id, o.routing_key, o.fallback_routing_key
    )


def _attribution(a: Attribution) -> pb.Attribution:
    return pb.Attribution(
        version=a.version,
        stage=a.stage.value,
        route_reason=a.reason.value,
        joined_by=a.joined_by,
        gates=a.randomized,
    )


def _interval(estimate: float, bounds: tuple[float, float]) -> pb.Interval:
    return pb.Interval(estimate=estimate, lower=bounds[0], upper=bounds[1])


def _comparison(c: OutcomeComparison) -> pb.OutcomeComparison:
    out = pb.OutcomeComparison(name=c.name, kind=c.kind)
    for v in c.versions:
        row = out.versions.add(
            version=v.version,
            stage=v.stage.value,
            count=v.sample.n,
            sum=v.sample.total,
            reported=v.reported,
        )
        if v.interval is not None and v.sample.mean is not None:
            row.mean.CopyFrom(_interval(v.sample.mean, v.interval))
    d: Difference | None = c.difference
    if d is not None:
        out.difference.CopyFrom(_interval(d.estimate, (d.lower, d.upper)))
    if c.lift is not None:
        out.lift.CopyFrom(_interval(c.lift[0], c.lift[1:]))
    return out


class OutcomesServicer(pb_grpc.OutcomesServiceServicer):
    """Outcome reports and the A/B view (authenticated by the interceptor, when tokens are set)."""

    def __init__(
        self,
        recorder: OutcomeRecorder,
        table: Callable[[], RoutingTable],
        outcomes: OutcomeSource | None = None,
    ) -> None:
        self._recorder = recorder
        self._table = table
        #: What CompareOutcomes reads: in a fleet, every live replica's reports.
        self._outcomes = outcomes or recorder.windows

    @translate_errors
    def ReportOutcome(
        self, request: pb.ReportOutcomeRequest, context: grpc.ServicerContext
    ) -> pb.ReportOutcomeResponse:
        if not request.HasField("outcome"):
            raise InvalidInput("ReportOutcome needs an outcome")
        attribution = self._recorder.report(_report(request.outcome))
        return pb.ReportOutcomeResponse(attribution=_attribution(attribution))

    @translate_errors
    def ReportOutcomes(
        self, request: pb.ReportOutcomesRequest, context: grpc.ServicerContext
    ) -> pb.ReportOutcomesResponse:
        if len(request.outcomes) > MAX_BATCH:
            raise InvalidInput(
                f"{len(request.outcomes)} outcomes in one call; at most {MAX_BATCH}: split it"
            )
        response = pb.ReportOutcomesResponse()
        for i, outcome in enumerate(request.outcomes):
            try:
                self._recorder.report(_report(outcome))
            except CanaryServeError as exc:  # one bad report does not refuse the others
                response.rejected.add(index=i, code=status_name(exc), message=message_for(exc))
            else:
                response.accepted += 1
        return response

    @translate_errors
    def CompareOutcomes(
        self, request: pb.CompareOutcomesRequest, context: grpc.ServicerContext
    ) -> pb.CompareOutcomesResponse:
        model = check_model_name(request.model, "model")
        confidence = request.confidence or DEFAULT_CONFIDENCE
        if not 0.5 < confidence < 1.0:
            raise InvalidInput(f"confidence must be in (0.5, 1), got {confidence}")
        window_s = request.window_seconds or DEFAULT_WINDOW_S
        if not (math.isfinite(window_s) and window_s > 0):
            raise InvalidInput(f"window_seconds must be > 0, got {window_s}")
        table = self._table()
        comparisons = compare(self._outcomes, table, model, confidence, window_s)
        routing = table.models[model]
        return pb.CompareOutcomesResponse(
            model=model,
            stable_version=routing.stable,
            candidate_version=routing.rollout.candidate if routing.rollout is not None else "",
            confidence=confidence,
            outcomes=[_comparison(c) for c in comparisons],
            replicas=self._outcomes.replicas(model),
        )
