"""The admin RPCs that change a rollout: start it (with its guard rails and the signature
check), step its weight or shadow rate, promote, roll back, pause, resume, undo, approve a
step, and the kill switch."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import grpc

from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.api.admin_base import AdminBase, require_model
from server.api.admin_convert import cohort_rule
from server.api.status import translate_errors
from server.errors import CanaryServeError, FailedPrecondition, InvalidInput
from server.promotion.gates import first_step
from server.promotion.policy import Policy
from server.rollout.changes import CommandResult
from server.rollout.state import (
    Command,
    JSONValue,
    Pause,
    Promote,
    Resume,
    Rollback,
    SetShadow,
    SetWeight,
    StartRollout,
    Undo,
)
from server.serving.names import check_version
from server.serving.signature import incompatibilities

__all__ = ["RolloutCommands"]

R = TypeVar("R")


class RolloutCommands(AdminBase):
    """Writes through the rollout controller: audited, compare-and-set, dry-runnable."""

    def _write(
        self,
        request: Any,
        context: grpc.ServicerContext,
        command: Command,
        extra: Mapping[str, JSONValue] | None = None,
    ) -> CommandResult:
        return self._controller.execute(
            require_model(request.model),
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
        stable = self._controller.get(require_model(request.model)).stable
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
    def ApproveStep(
        self, request: pb.ApproveStepRequest, context: grpc.ServicerContext
    ) -> pb.ApproveStepResponse:
        actor = self._actor(context)
        model = require_model(request.model)
        self._promotion.approve(model)
        self._controller.append_audit(model, "approve_step", actor, request.reason)
        return pb.ApproveStepResponse(rollout=self._rollout(self._controller.get(model)))

    @translate_errors
    def KillSwitch(
        self, request: pb.KillSwitchRequest, context: grpc.ServicerContext
    ) -> pb.KillSwitchResponse:
        outcomes = self._controller.kill_switch(
            actor=self._actor(context), reason=request.reason, dry_run=request.dry_run
        )
        return pb.KillSwitchResponse(rolled_back=[self._rollout(o.after) for o in outcomes])
