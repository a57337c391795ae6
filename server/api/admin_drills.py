"""The admin RPCs that rehearse a release: start a drill (a copy of stable with injected
faults, rolled out under the guard rails) and end it with its report."""

from __future__ import annotations

import json

import grpc

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.api.admin_base import AdminBase, require_model
from server.api.status import translate_errors
from server.errors import FailedPrecondition
from server.promotion.policy import Policy
from server.serving.drills import Drills

__all__ = ["DrillCommands"]


class DrillCommands(AdminBase):
    """StartDrill and EndDrill over serving.drills (a server without a registry refuses)."""

    def _drills_or_refuse(self) -> Drills:
        if self._drills is None:
            raise FailedPrecondition("this server cannot run drills (no registry)")
        return self._drills

    @translate_errors
    def StartDrill(
        self, request: pb.StartDrillRequest, context: grpc.ServicerContext
    ) -> pb.StartDrillResponse:
        actor = self._actor(context)
        model = require_model(request.model)
        drills = self._drills_or_refuse()
        version, out = drills.start(
            model,
            error_ppm=request.error_rate_ppm,
            added_latency_ms=request.added_latency_ms,
            canary_ppm=request.canary_weight_ppm,
            guard=(self._configured_policy(model) or Policy()).as_dict(),
            actor=actor,
            reason=request.reason,
        )
        return pb.StartDrillResponse(rollout=self._rollout(out.after), drill_version=version)

    @translate_errors
    def EndDrill(
        self, request: pb.EndDrillRequest, context: grpc.ServicerContext
    ) -> pb.EndDrillResponse:
        actor = self._actor(context)
        model = require_model(request.model)
        report = self._drills_or_refuse().end(model, actor=actor, reason=request.reason)
        return pb.EndDrillResponse(
            caught=report.caught,
            seconds_to_rollback=report.seconds_to_rollback or 0.0,
            candidate_requests=report.candidate_requests,
            callers_affected=report.callers_affected,
            drill_version=report.drill_version,
            rollout=self._rollout(report.rollout),
            report_json=json.dumps(report.as_dict(), sort_keys=True),
        )
