"""Typed client of the AdminService: rollouts, routing answers, audit log, watch stream, and
loading and unloading model versions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from client.connection import Connection, bearer
from client.errors import from_rpc_error
from protos.canaryserve.admin.v1 import admin_pb2 as pb
from protos.canaryserve.admin.v1 import admin_pb2_grpc as pb_grpc

__all__ = ["AdminClient", "percent_to_ppm"]


def percent_to_ppm(percent: float) -> int:
    """10.5 (%) → 105000 ppm; rejects values outside 0..100."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a percentage must be within 0..100, got {percent}")
    return round(percent * 10_000)


class AdminClient(Connection):
    """Operator calls, each authenticated with the bearer token given here."""

    def __init__(self, channel: grpc.Channel, token: str, *, timeout: float = 10.0) -> None:
        super().__init__(channel, pb_grpc.AdminServiceStub, timeout=timeout, metadata=bearer(token))

    def get(self, model: str) -> pb.Rollout:
        response: pb.GetRolloutResponse = self._call(
            self._stub.GetRollout, pb.GetRolloutRequest(model=model)
        )
        return response.rollout

    def readiness(self, model: str) -> list[pb.ReplicaReadiness]:
        """In a fleet on etcd: each live replica's ready versions of `model` (else empty)."""
        response: pb.GetRolloutResponse = self._call(
            self._stub.GetRollout, pb.GetRolloutRequest(model=model)
        )
        return list(response.replicas)

    def rollouts(self) -> list[pb.Rollout]:
        response: pb.ListRolloutsResponse = self._call(
            self._stub.ListRollouts, pb.ListRolloutsRequest()
        )
        return list(response.rollouts)

    def start(
        self,
        model: str,
        candidate: str,
        *,
        canary_ppm: int = 0,
        shadow_ppm: int = 0,
        cohort_rules: Sequence[pb.CohortRule] = (),
        expected_revision: int = 0,
        dry_run: bool = False,
        reason: str = "",
        automatic: bool = False,
        policy_json: str = "",
        no_guard: bool = False,
        allow_signature_change: bool = False,
    ) -> pb.StartRolloutResponse:
        request = pb.StartRolloutRequest(
            model=model,
            candidate_version=candidate,
            canary_weight_ppm=canary_ppm,
            shadow_rate_ppm=shadow_ppm,
            cohort_rules=cohort_rules,
            expected_revision=expected_revision,
            dry_run=dry_run,
            reason=reason,
            automatic=automatic,
            policy_json=policy_json,
            no_guard=no_guard,
            allow_signature_change=allow_signature_change,
        )
        response: pb.StartRolloutResponse = self._call(self._stub.StartRollout, request)
        return response

    def set_weight(self, model: str, canary_ppm: int, **write: Any) -> pb.SetWeightResponse:
        request = pb.SetWeightRequest(model=model, canary_weight_ppm=canary_ppm, **write)
        response: pb.SetWeightResponse = self._call(self._stub.SetWeight, request)
        return response

    def set_shadow(self, model: str, shadow_ppm: int, **write: Any) -> pb.SetShadowResponse:
        request = pb.SetShadowRequest(model=model, shadow_rate_ppm=shadow_ppm, **write)
        response: pb.SetShadowResponse = self._call(self._stub.SetShadow, request)
        return response

    def transition(self, action: str, model: str, **write: Any) -> pb.Rollout:
        """promote, rollback, pause, resume or undo; `write`: expected_revision, dry_run, reason."""
        rpc, request_type = {
            "promote": (self._stub.Promote, pb.PromoteRequest),
            "rollback": (self._stub.Rollback, pb.RollbackRequest),
            "pause": (self._stub.Pause, pb.PauseRequest),
            "resume": (self._stub.Resume, pb.ResumeRequest),
            "undo": (self._stub.UndoPromotion, pb.UndoPromotionRequest),
        }[action]
        response = self._call(rpc, request_type(model=model, **write))
        rollout: pb.Rollout = response.rollout
        return rollout

    def kill_switch(self, *, dry_run: bool = False, reason: str = "") -> list[pb.Rollout]:
        request = pb.KillSwitchRequest(dry_run=dry_run, reason=reason)
        response: pb.KillSwitchResponse = self._call(self._stub.KillSwitch, request)
        return list(response.rolled_back)

    def route(
        self, model: str, key: str, metadata: dict[str, str] | None = None
    ) -> pb.RouteResponse:
        request = pb.RouteRequest(model=model, routing_key=key, metadata=metadata or {})
        response: pb.RouteResponse = self._call(self._stub.Route, request)
        return response

    def audit(self, model: str = "", limit: int = 100, after_id: int = 0) -> list[pb.AuditEntry]:
        request = pb.ListAuditRequest(model=model, limit=limit, after_id=after_id)
        response: pb.ListAuditResponse = self._call(self._stub.ListAudit, request)
        return list(response.entries)

    def shadow_report(self, model: str) -> pb.GetShadowReportResponse:
        request = pb.GetShadowReportRequest(model=model)
        response: pb.GetShadowReportResponse = self._call(self._stub.GetShadowReport, request)
        return response

    def explain(self, model: str) -> pb.ExplainRolloutResponse:
        request = pb.ExplainRolloutRequest(model=model)
        response: pb.ExplainRolloutResponse = self._call(self._stub.ExplainRollout, request)
        return response

    def approve(self, model: str, reason: str = "") -> pb.Rollout:
        request = pb.ApproveStepRequest(model=model, reason=reason)
        response: pb.ApproveStepResponse = self._call(self._stub.ApproveStep, request)
        return response.rollout

    def load(
        self, model: str, version: str = "", *, reason: str = ""
    ) -> list[pb.ModelVersionState]:
        """Load every version of `model` on disk (or just `version`); the versions loaded."""
        request = pb.LoadModelRequest(model=model, version=version, reason=reason)
        response: pb.LoadModelResponse = self._call(self._stub.LoadModel, request)
        return list(response.versions)

    def unload(
        self, model: str, version: str = "", *, reason: str = ""
    ) -> list[pb.ModelVersionState]:
        """Stop serving `model` (or just `version`); refused for what routing uses."""
        request = pb.UnloadModelRequest(model=model, version=version, reason=reason)
        response: pb.UnloadModelResponse = self._call(self._stub.UnloadModel, request)
        return list(response.versions)

    def start_drill(
        self,
        model: str,
        *,
        error_ppm: int = 0,
        added_latency_ms: float = 0.0,
        canary_ppm: int = 0,
        reason: str = "",
    ) -> pb.StartDrillResponse:
        request = pb.StartDrillRequest(
            model=model,
            error_rate_ppm=error_ppm,
            added_latency_ms=added_latency_ms,
            canary_weight_ppm=canary_ppm,
            reason=reason,
        )
        response: pb.StartDrillResponse = self._call(self._stub.StartDrill, request)
        return response

    def end_drill(self, model: str, reason: str = "") -> pb.EndDrillResponse:
        request = pb.EndDrillRequest(model=model, reason=reason)
        response: pb.EndDrillResponse = self._call(self._stub.EndDrill, request)
        return response

    def send_test_notification(self, reason: str = "") -> list[pb.NotificationDelivery]:
        """Have the server send a test event to every configured webhook; what each answered."""
        response: pb.SendTestNotificationResponse = self._call(
            self._stub.SendTestNotification, pb.SendTestNotificationRequest(reason=reason)
        )
        return list(response.deliveries)

    def watch(
        self, model: str = "", send_current: bool = False
    ) -> Iterator[pb.WatchRolloutsResponse]:
        """Every rollout change from now on, in commit order (cancel by closing the client);
        with `send_current`, first every watched rollout as it is now (sequence 0)."""
        stream = self._stub.WatchRollouts(
            pb.WatchRolloutsRequest(model=model, send_current=send_current),
            metadata=self._metadata,
        )
        try:
            yield from stream
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(exc) from None
