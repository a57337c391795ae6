"""The AdminService servicer: thin — authenticate, convert, delegate to the rollout controller
(and, for loading and unloading model versions, to the model repository)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import grpc

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from protos.canaryserve.admin.v1 import admin_pb2_grpc as pb_grpc
from server.api.admin_convert import audit_pb, cohort_rule, rollout_pb
from server.api.auth import Authenticator
from server.api.fleet_view import FleetReadiness, FleetShadow, add_fleet_shadow, replica_readiness
from server.api.status import translate_errors, translate_stream_errors
from server.errors import CanaryServeError, FailedPrecondition, InvalidInput
from server.notify.notifier import Notifier
from server.promotion.controller import PromotionController
from server.promotion.gates import first_step
from server.promotion.policy import Policy
from server.rollout.changes import CommandResult
from server.rollout.controller import RolloutController
from server.rollout.state import (
    Command,
    JSONValue,
    Pause,
    Promote,
    Resume,
    Rollback,
    RolloutState,
    SetShadow,
    SetWeight,
    StartRollout,
    Undo,
)
from server.serving.dataplane import DataPlane
from server.serving.drills import Drills
from server.serving.names import (
    check_model_name,
    check_optional_model_name,
    check_optional_version,
    check_version,
)
from server.serving.registry import ModelVersion, Registry
from server.serving.repository import ModelRepository
from server.serving.signature import incompatibilities
from server.shadow.executor import ShadowExecutor
from server.telemetry.tracing import key_hash

__all__ = ["AdminServicer"]

_WATCH_POLL_S = 0.5
R = TypeVar("R")
PolicySource = Callable[[str], Policy | None]


def _require_model(model: str) -> str:
    return check_model_name(model, "model")


def _version_state(mv: ModelVersion) -> pb.ModelVersionState:
    return pb.ModelVersionState(version=mv.version, state=mv.state.value, reason=mv.reason)


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Rollout operations for authenticated operators."""

    def __init__(
        self,
        controller: RolloutController,
        auth: Authenticator,
        dataplane: DataPlane,
        shadow: ShadowExecutor,
        promotion: PromotionController,
        configured_policy: PolicySource,
        repository: ModelRepository,
        registry: Registry | None = None,
        raw_routing_keys: bool = False,
        notifier: Notifier | None = None,
        fleet_shadow: FleetShadow | None = None,
        fleet_readiness: FleetReadiness | None = None,
    ) -> None:
        self._fleet_readiness = fleet_readiness
        self._repository = repository
        self._fleet_shadow = fleet_shadow
        self._controller = controller
        self._auth = auth
        self._dataplane = dataplane
        self._shadow = shadow
        self._promotion = promotion
        self._configured_policy = configured_policy
        self._registry = registry
        self._raw_routing_keys = raw_routing_keys
        self._notifier = notifier
        self._drills = Drills(registry, controller) if registry is not None else None

    def _rollout(self, state: RolloutState) -> pb.Rollout:
        """The rollout message, with the sha256 of each version's model file as loaded."""
        message = rollout_pb(state)
        message.stable_sha256 = self._sha256(state.model, state.stable)
        if state.candidate is not None:
            message.candidate_sha256 = self._sha256(state.model, state.candidate)
        return message

    def _sha256(self, model: str, version: str) -> str:
        if self._registry is None:
            return ""
        mv = (
            self._registry.versions(model).get(version)
            if model in self._registry.models()
            else None
        )
        return mv.sha256 if mv is not None else ""

    def _actor(self, context: grpc.ServicerContext) -> str:
        return self._auth.identify(context.invocation_metadata())

    def _write(
        self,
        request: Any,
        context: grpc.ServicerContext,
        command: Command,
        extra: Mapping[str, JSONValue] | None = None,
    ) -> CommandResult:
        return self._controller.execute(
            _require_model(request.model),
            command,
            actor=self._actor(context),
            reason=request.reason,
            expected_revision=request.expected_revision or None,
            dry_run=request.dry_run,
            extra=extra,
        )

    def _respond(
        self,
        request: Any,
        context: grpc.ServicerContext,
        command: Command,
        response: Callable[..., R],
    ) -> R:
        """Execute a write and answer with the rollout after it (changed: False on dry runs)."""
        out = self._write(request, context, command)
        return response(
            rollout=self._rollout(out.after), changed=out.changed and not request.dry_run
        )

    @translate_errors
    def GetRollout(
        self, request: pb.GetRolloutRequest, context: grpc.ServicerContext
    ) -> pb.GetRolloutResponse:
        self._actor(context)
        state = self._controller.get(_require_model(request.model))
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
    def StartRollout(
        self, request: pb.StartRolloutRequest, context: grpc.ServicerContext
    ) -> pb.StartRolloutResponse:
        check_version(request.candidate_version, "candidate_version")
        shadow_ppm, canary_ppm = request.shadow_rate_ppm, request.canary_weight_ppm
        policy = guard = None
        extra: dict[str, JSONValue] = {}
        if request.automatic or request.policy_json:
            if request.no_guard:
                raise InvalidInput(
                    "no_guard is for manual rollouts: an automatic rollout's policy is its"
                    " guard rails (pause it to take over)"
                )
            policy = self._policy(request)
            if not shadow_ppm and not canary_ppm:
                _, canary_ppm, shadow_ppm = first_step(policy)
            extra["guard_rails"] = "policy"
        elif request.no_guard:
            extra["guard_rails"] = "off (no_guard)"
        else:
            guard = self._configured_policy(request.model) or Policy()
            extra["guard_rails"] = "on"
        changes = self._signature_changes(request.model, request.candidate_version)
        if changes and not request.allow_signature_change:
            raise FailedPrecondition(
                f"version {request.candidate_version} of model '{request.model}' is not"
                " compatible with the stable version: "
                + "; ".join(changes)
                + " (pass allow_signature_change, --allow-signature-change, to roll it out"
                " anyway)"
            )
        if changes:
            extra["signature_change"] = changes
        stable = self._controller.get(_require_model(request.model)).stable
        extra["stable_sha256"] = self._sha256(request.model, stable)
        extra["candidate_sha256"] = self._sha256(request.model, request.candidate_version)
        command = StartRollout(
            candidate=request.candidate_version,
            shadow_ppm=shadow_ppm,
            canary_ppm=canary_ppm,
            cohort_rules=tuple(cohort_rule(r) for r in request.cohort_rules),
            policy=policy.as_dict() if policy is not None else None,
            guard=guard.as_dict() if guard is not None else None,
        )
        out = self._write(request, context, command, extra)
        return pb.StartRolloutResponse(
            rollout=self._rollout(out.after), changed=out.changed and not request.dry_run
        )

    @translate_errors
    def SetWeight(
        self, request: pb.SetWeightRequest, context: grpc.ServicerContext
    ) -> pb.SetWeightResponse:
        return self._respond(
            request, context, SetWeight(request.canary_weight_ppm), pb.SetWeightResponse
        )

    @translate_errors
    def SetShadow(
        self, request: pb.SetShadowRequest, context: grpc.ServicerContext
    ) -> pb.SetShadowResponse:
        return self._respond(
            request, context, SetShadow(request.shadow_rate_ppm), pb.SetShadowResponse
        )

    @translate_errors
    def Promote(
        self, request: pb.PromoteRequest, context: grpc.ServicerContext
    ) -> pb.PromoteResponse:
        return self._respond(request, context, Promote(), pb.PromoteResponse)

    @translate_errors
    def Rollback(
        self, request: pb.RollbackRequest, context: grpc.ServicerContext
    ) -> pb.RollbackResponse:
        return self._respond(request, context, Rollback(), pb.RollbackResponse)

    @translate_errors
    def Pause(self, request: pb.PauseRequest, context: grpc.ServicerContext) -> pb.PauseResponse:
        return self._respond(request, context, Pause(), pb.PauseResponse)

    @translate_errors
    def Resume(self, request: pb.ResumeRequest, context: grpc.ServicerContext) -> pb.ResumeResponse:
        return self._respond(request, context, Resume(), pb.ResumeResponse)

    @translate_errors
    def UndoPromotion(
        self, request: pb.UndoPromotionRequest, context: grpc.ServicerContext
    ) -> pb.UndoPromotionResponse:
        return self._respond(request, context, Undo(), pb.UndoPromotionResponse)

    @translate_errors
    def StartDrill(
        self, request: pb.StartDrillRequest, context: grpc.ServicerContext
    ) -> pb.StartDrillResponse:
        actor = self._actor(context)
        model = _require_model(request.model)
        if self._drills is None:
            raise FailedPrecondition("this server cannot run drills (no registry)")
        version, out = self._drills.start(
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
        model = _require_model(request.model)
        if self._drills is None:
            raise FailedPrecondition("this server cannot run drills (no registry)")
        report = self._drills.end(model, actor=actor, reason=request.reason)
        return pb.EndDrillResponse(
            caught=report.caught,
            seconds_to_rollback=report.seconds_to_rollback or 0.0,
            candidate_requests=report.candidate_requests,
            callers_affected=report.callers_affected,
            drill_version=report.drill_version,
            rollout=self._rollout(report.rollout),
            report_json=json.dumps(report.as_dict(), sort_keys=True),
        )

    @translate_errors
    def SendTestNotification(
        self, request: pb.SendTestNotificationRequest, context: grpc.ServicerContext
    ) -> pb.SendTestNotificationResponse:
        actor = self._actor(context)
        results = self._notifier.send_test(actor, request.reason) if self._notifier else []
        return pb.SendTestNotificationResponse(
            deliveries=[
                pb.NotificationDelivery(
                    receiver=r.receiver,
                    delivered=r.attempt.delivered,
                    http_status=r.attempt.status or 0,
                    error=r.attempt.error,
                    seconds=r.attempt.seconds,
                )
                for r in results
            ]
        )

    @translate_errors
    def KillSwitch(
        self, request: pb.KillSwitchRequest, context: grpc.ServicerContext
    ) -> pb.KillSwitchResponse:
        outcomes = self._controller.kill_switch(
            actor=self._actor(context), reason=request.reason, dry_run=request.dry_run
        )
        return pb.KillSwitchResponse(rolled_back=[self._rollout(o.after) for o in outcomes])

    @translate_errors
    def Route(self, request: pb.RouteRequest, context: grpc.ServicerContext) -> pb.RouteResponse:
        self._actor(context)
        chosen = self._dataplane.route(
            _require_model(request.model),
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
    def GetShadowReport(
        self, request: pb.GetShadowReportRequest, context: grpc.ServicerContext
    ) -> pb.GetShadowReportResponse:
        self._actor(context)
        model = self._controller.get(_require_model(request.model)).model
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

    def _signature_changes(self, model: str, candidate: str) -> list[str]:
        """How `candidate` would break callers of `model`'s stable version (docs/promotion.md);
        empty when it is compatible, or when the stage machine will refuse the start anyway."""
        if self._registry is None or not model:
            return []
        stable = self._controller.get(model).stable
        if candidate == stable:
            return []
        try:
            old = self._registry.get(model, stable).signature
            new = self._registry.get(model, candidate).signature
        except CanaryServeError:  # not ready: apply() says so, in its words
            return []
        return incompatibilities(old, new)

    def _policy(self, request: pb.StartRolloutRequest) -> Policy:
        if request.policy_json:
            try:
                data = json.loads(request.policy_json)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"policy_json is not valid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise InvalidInput("policy_json must be a JSON object (see docs/promotion.md)")
            return Policy.from_dict(data)
        configured = self._configured_policy(request.model)
        return configured if configured is not None else Policy()

    @translate_errors
    def ExplainRollout(
        self, request: pb.ExplainRolloutRequest, context: grpc.ServicerContext
    ) -> pb.ExplainRolloutResponse:
        self._actor(context)
        decision = self._promotion.explain(_require_model(request.model))
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
    def ApproveStep(
        self, request: pb.ApproveStepRequest, context: grpc.ServicerContext
    ) -> pb.ApproveStepResponse:
        actor = self._actor(context)
        model = _require_model(request.model)
        self._promotion.approve(model)
        self._controller.append_audit(model, "approve_step", actor, request.reason)
        return pb.ApproveStepResponse(rollout=self._rollout(self._controller.get(model)))

    @translate_errors
    def LoadModel(
        self, request: pb.LoadModelRequest, context: grpc.ServicerContext
    ) -> pb.LoadModelResponse:
        actor = self._actor(context)
        loaded = self._repository.load(
            _require_model(request.model),
            check_optional_version(request.version) or None,
            actor=actor,
            reason=request.reason,
            rpc="LoadModel",
        )
        return pb.LoadModelResponse(versions=[_version_state(mv) for mv in loaded])

    @translate_errors
    def UnloadModel(
        self, request: pb.UnloadModelRequest, context: grpc.ServicerContext
    ) -> pb.UnloadModelResponse:
        actor = self._actor(context)
        unloaded = self._repository.unload(
            _require_model(request.model),
            check_optional_version(request.version) or None,
            actor=actor,
            reason=request.reason,
            rpc="UnloadModel",
        )
        return pb.UnloadModelResponse(versions=[_version_state(mv) for mv in unloaded])

    @translate_stream_errors
    def WatchRollouts(
        self, request: pb.WatchRolloutsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchRolloutsResponse]:
        self._actor(context)
        if check_optional_model_name(request.model):
            self._controller.get(request.model)  # NOT_FOUND rather than a silent stream
        current, sub = self._controller.watch(request.model or None)
        try:
            if request.send_current:
                for state in current:
                    yield pb.WatchRolloutsResponse(sequence=0, rollout=self._rollout(state))
            while context.is_active():
                # Falling behind raises: the client must read the state again.
                event = sub.get(timeout=_WATCH_POLL_S)
                if event is None:
                    if sub.closed:
                        return
                    continue
                yield pb.WatchRolloutsResponse(
                    sequence=event.sequence,
                    rollout=self._rollout(event.result.after),
                    audit=audit_pb(event.audit),
                )
        finally:
            self._controller.unsubscribe(sub)
