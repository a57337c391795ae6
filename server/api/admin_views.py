"""The admin RPCs that only read: a rollout (with each replica's readiness in a fleet), every
rollout, which version a key gets, the audit log, the latest promotion decision and the shadow
report."""

from __future__ import annotations

import json

import grpc

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.api.admin_base import AdminBase, require_model
from server.api.admin_convert import audit_pb
from server.api.fleet_view import add_fleet_shadow, replica_readiness
from server.api.status import translate_errors
from server.serving.names import check_optional_model_name
from server.telemetry.tracing import key_hash

__all__ = ["RolloutViews"]


class RolloutViews(AdminBase):
    """Read-only answers; each still names its caller (admin calls are authenticated)."""

    @translate_errors
    def GetRollout(
        self, request: pb.GetRolloutRequest, context: grpc.ServicerContext
    ) -> pb.GetRolloutResponse:
        self._actor(context)
        state = self._controller.get(require_model(request.model))
        return pb.GetRolloutResponse(
            rollout=self._rollout(state),
            replicas=replica_readiness(state, self._fleet_readiness),
        )

    @translate_errors
    def ListRollouts(
        self, request: pb.ListRolloutsRequest, context: grpc.ServicerContext
    ) -> pb.ListRolloutsResponse:
        self._actor(context)
        return pb.ListRolloutsResponse(
            rollouts=[self._rollout(s) for s in self._controller.states()]
        )

    @translate_errors
    def Route(self, request: pb.RouteRequest, context: grpc.ServicerContext) -> pb.RouteResponse:
        self._actor(context)
        chosen = self._dataplane.route(
            require_model(request.model),
            request.routing_key or None,
            {k.lower(): v for k, v in request.metadata.items()},  # as gRPC delivers headers
            None,
        )
        return pb.RouteResponse(
            version=chosen.version,
            stage=chosen.stage.value,
            reason=chosen.reason.value,
            position=chosen.position or 0.0,
            shadow_version=chosen.shadow_version or "",
        )

    @translate_errors
    def ListAudit(
        self, request: pb.ListAuditRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditResponse:
        self._actor(context)
        entries = self._controller.audit(
            model=check_optional_model_name(request.model) or None,
            limit=request.limit or 100,
            after_id=request.after_id,
        )
        return pb.ListAuditResponse(entries=[audit_pb(e) for e in entries])

    @translate_errors
    def ExplainRollout(
        self, request: pb.ExplainRolloutRequest, context: grpc.ServicerContext
    ) -> pb.ExplainRolloutResponse:
        self._actor(context)
        decision = self._promotion.explain(require_model(request.model))
        if decision is None:
            return pb.ExplainRolloutResponse(evaluated=False)
        nan = float("nan")
        return pb.ExplainRolloutResponse(
            evaluated=True,
            action=decision.action.value,
            reason=decision.reason,
            checks=[
                pb.GateCheck(
                    name=c.name,
                    status=c.status.value,
                    observed=nan if c.observed is None else c.observed,
                    threshold=nan if c.threshold is None else c.threshold,
                    detail=c.detail,
                )
                for c in decision.checks
            ],
            decision_json=json.dumps(decision.as_dict(), sort_keys=True),
            replicas=decision.evidence.replicas,
        )

    @translate_errors
    def GetShadowReport(
        self, request: pb.GetShadowReportRequest, context: grpc.ServicerContext
    ) -> pb.GetShadowReportResponse:
        self._actor(context)
        model = self._controller.get(require_model(request.model)).model
        stats = self._shadow.stats(model)
        response = pb.GetShadowReportResponse(model=model, queue_depth=self._shadow.queue_depth())
        if stats is None:
            return response
        report = stats.snapshot()
        rate = report.disagreement_rate
        response.candidate_version = stats.candidate
        for name in ("sampled", "completed", "dropped", "errors", "timeouts", "disagreements"):
            setattr(response, name, getattr(report, name))
        response.disagreement_rate = rate.rate or 0.0
        response.disagreement_rate_low = rate.low
        response.disagreement_rate_high = rate.high
        doc = report.as_dict()
        if not self._raw_routing_keys:  # as spans do: a digest that correlates, not the key
            for worst in doc["worst"]:
                key = worst.pop("routing_key")
                worst["routing_key_hash"] = key_hash(key) if key is not None else None
        fleet = self._fleet_shadow(model, stats.candidate) if self._fleet_shadow else None
        if fleet is not None:
            add_fleet_shadow(response, doc, fleet)
        response.report_json = json.dumps(doc, sort_keys=True)
        return response
