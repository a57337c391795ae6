"""The request path: route, decode, run, encode — one way, no back and forth.

infer(request, metadata)
  ─▶ names.check_* (model name, version) ─▶ routing_key
  ─▶ router.route(current snapshot) ─▶ telemetry.open_inference (sampled)
  ─▶ registry.get(version)
  ─▶ tensors.decode_inputs ─▶ runner.run ─▶ tensors.encode_outputs
  ├─▶ outcomes.served.record, when the request carries an id (outcome reports join on it)
  ├─▶ shadow.submit, when the route or a keyless draw samples the request
  ├─▶ per-version statistics (input, infer and output times, as Triton reports them)
  └─▶ telemetry.finish, when the call is traced
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from protos.inference import grpc_service_pb2 as pb
from protos.wire import ROUTING_KEY_HEADER
from server.errors import (
    CanaryServeError,
    Contained,
    InvalidInput,
    InvalidTensor,
    MemoryBudgetExceeded,
    ModelFailed,
    ModelNotFound,
    ModelNotReady,
    ModelVersionNotFound,
    ResponseTooLarge,
    ShuttingDown,
    VersionCrashed,
)
from server.outcomes.served import ServedRequests
from server.rollout.router import PPM, Route, RouteReason, RoutingTable, Stage, route
from server.serving import batching, tensors
from server.serving.limits import QueueFull, QueueTimeout
from server.serving.names import check_model_name, check_version
from server.serving.registry import Registry
from server.serving.runner import Arrays, Runner
from server.serving.schedulers import Schedulers
from server.shadow.executor import ShadowExecutor
from server.shadow.job import ShadowJob
from server.telemetry.logs import CallFailures
from server.telemetry.tracing import Telemetry

__all__ = [
    "PARAM_REASON",
    "PARAM_STAGE",
    "ROUTING_KEY_HEADER",
    "ROUTING_KEY_PARAM",
    "STARTING",
    "DataPlane",
    "routing_key",
]

Draw: TypeAlias = Callable[[], float]

#: Response parameters naming how the request was routed.
PARAM_STAGE = "stage"
PARAM_REASON = "route_reason"
#: Why every model is UNAVAILABLE while the server starts (the port opens before models load).
STARTING = "server is starting: loading models"
#: Where a request's routing key comes from: metadata ROUTING_KEY_HEADER, else this parameter.
ROUTING_KEY_PARAM = "routing_key"


def routing_key(request: pb.ModelInferRequest, metadata: Mapping[str, str]) -> str | None:
    """The routing key: metadata wins over the request parameter; empty means none."""
    key = metadata.get(ROUTING_KEY_HEADER)
    if key is None and ROUTING_KEY_PARAM in request.parameters:
        param = request.parameters[ROUTING_KEY_PARAM]
        if param.WhichOneof("parameter_choice") != "string_param":
            raise InvalidInput(f"request parameter '{ROUTING_KEY_PARAM}' must be a string_param")
        key = param.string_param
    return key or None


class DataPlane:
    """Serves inference requests against the registry, routed by the current table."""

    def __init__(
        self,
        registry: Registry,
        table: RoutingTable,
        shadow: ShadowExecutor | None = None,
        draw: Draw = random.random,
        telemetry: Telemetry | None = None,
        max_message_bytes: int | None = None,
        schedulers: Schedulers | None = None,
        call_failures: CallFailures | None = None,
        served: ServedRequests | None = None,
    ) -> None:
        self._registry = registry
        #: Where a candidate's failed calls are logged (rate-limited); None: not logged.
        self.call_failures = call_failures
        #: Who served each request that carried an id, for outcome reports (docs/outcomes.md).
        self.served = served
        #: Bounds what a request may make the server allocate: its inputs' declared size
        #: (zero dimensions counted as 1, `tensors.declared_bytes`) and its outputs' size.
        self._max_bytes = max_message_bytes
        #: Per-version queues, slots and batching (None: every call runs its session directly).
        self.schedulers = schedulers
        self._telemetry = telemetry
        #: The current routing snapshot. `publish` swaps this one reference; request threads
        #: read whichever snapshot is current, lock-free.
        self.table = table
        #: True until the composition root has loaded every model and published their routing:
        #: until then no model can be told missing, so every one is UNAVAILABLE (STARTING).
        self.starting = True
        self._shadow = shadow
        self._draw = draw  # keyless shadow sampling: random, since there is no key to hash
        #: Inference calls in progress in the data plane (shadow work yields to them).
        self.in_flight = 0
        #: Set by App.stop: new calls are refused UNAVAILABLE (retryable) rather than left to
        #: gRPC's shutdown, which cancels the calls still queued for a thread.
        self.draining = False
        self.refused_at = 0.0  # monotonic time of the last call refused while draining
        self._flight = threading.Lock()

    def route(
        self, model: str, key: str | None, metadata: Mapping[str, str], pinned: str | None
    ) -> Route:
        try:
            return route(self.table, model, key, metadata, pinned)
        except ModelNotFound:
            raise self.unroutable(model, pinned) from None

    def unroutable(self, model: str, pinned: str | None = None) -> CanaryServeError:
        """The error for a model the routing table does not hold: UNAVAILABLE while the server
        is starting or the model cannot serve (the registry says why), NOT_FOUND otherwise."""
        if self.starting:
            return ModelNotReady(model, STARTING)
        return self._registry.unroutable(model, pinned)

    def infer(
        self,
        request: pb.ModelInferRequest,
        metadata: Mapping[str, str],
        method: str = "ModelInfer",
    ) -> pb.ModelInferResponse:
        """Serve one request (see `_infer`), counted in `in_flight` while it is served; while
        the server drains before it stops, refuse it (UNAVAILABLE: retry elsewhere)."""
        if self.draining:
            self.refused_at = time.monotonic()
            raise ShuttingDown()
        with self._flight:
            self.in_flight += 1
        try:
            return self._infer(request, metadata, method)
        finally:
            with self._flight:
                self.in_flight -= 1

    def _infer(
        self,
        request: pb.ModelInferRequest,
        metadata: Mapping[str, str],
        method: str,
    ) -> pb.ModelInferResponse:
        """Serve one request; `metadata` is the call's (routing key, cohort rules, traceparent).

        The call is traced when sampling keeps it (always when it fails before routing), and
        counted in the statistics of the version that served it. One function on purpose:
        every Python frame on this path costs several times its `timeit` figure under load.
        """
        start = time.perf_counter_ns()
        telemetry = self._telemetry
        model = request.model_name
        pinned = request.model_version or None
        table = self.table
        try:
            check_model_name(model, "model_name")
            if pinned is not None:
                check_version(pinned, "model_version")
            key = routing_key(request, metadata)
            try:
                chosen = route(table, model, key, metadata, pinned)
            except ModelVersionNotFound:
                if pinned is not None:
                    self._registry.get(model, pinned)  # the precise reason, if any
                raise
            except ModelNotFound:  # the table holds routable models only: ask why not
                raise self.unroutable(model, pinned) from None
        except Exception as exc:
            if telemetry is not None:
                telemetry.unrouted(method, metadata, start, exc, request.id)
            raise
        span = (
            None
            if telemetry is None
            else telemetry.open_inference(method, metadata, model, chosen, key, start)
        )
        ok = False
        version = None
        failure: Exception | None = None
        decoded = ran = encoded = start
        rows = 1
        try:
            version = self._registry.get(model, chosen.version)
            runner = version.runner
            assert runner is not None
            signature = runner.signature
            schedulers = self.schedulers
            scheduler = (
                None
                if schedulers is None
                else schedulers.get(model, chosen.version, runner, chosen.stage)
            )
            # A leader of this version may wait for this request while it is decoded.
            announced = scheduler is not None and scheduler.announce()
            try:
                feeds = tensors.decode_inputs(signature, request, self._max_bytes)
                names = tensors.requested_outputs(signature, request)
            except BaseException:
                if announced and scheduler is not None:
                    scheduler.withdraw()
                raise
            decoded = time.perf_counter_ns()
            try:
                if scheduler is None:
                    arrays = runner.run(names, feeds)
                else:
                    arrays = scheduler.run(names, feeds, announced=announced)
            except (QueueFull, QueueTimeout, Contained) as exc:
                if not self._may_fall_back(chosen, model):
                    raise
                # The candidate is overloaded, or failed in a contained way (its process died,
                # its memory budget): its span records the refusal (the promotion gates count
                # it as a candidate error), and stable serves the caller.
                self._candidate_failed(model, chosen, request.id, span, exc)
                if span is not None:
                    telemetry.finish(span, exc, request.id)  # type: ignore[union-attr]
                    span = None
                assert schedulers is not None and scheduler is not None
                scheduler.count_fallback()
                reason = _FALLBACK_REASONS.get(type(exc), RouteReason.CANDIDATE_OVERLOADED)
                chosen = Route(table.models[model].stable, Stage.STABLE, reason)
                if telemetry is not None:
                    span = telemetry.open_inference(method, metadata, model, chosen, key, start)
                version = self._registry.get(model, chosen.version)
                runner = version.runner
                assert runner is not None
                if runner.signature != signature:  # the candidate's inputs may differ
                    signature = runner.signature
                    feeds = tensors.decode_inputs(signature, request, self._max_bytes)
                    names = tensors.requested_outputs(signature, request)
                arrays = self._run_stable(schedulers, model, chosen, runner, names, feeds)
                scheduler = schedulers.find(model, chosen.version)
            except Exception as exc:
                raise _run_failure(model, chosen.version, feeds, exc) from exc
            ran = time.perf_counter_ns()
            # Triton's inference_count: a batching version counts a request's rows.
            if scheduler is not None and scheduler.max_batch_size:
                rows = batching.rows_of(feeds) or 1
            if self._max_bytes is not None:
                _check_response_size(model, chosen.version, arrays, self._max_bytes)
            response = pb.ModelInferResponse(
                model_name=model, model_version=chosen.version, id=request.id
            )
            response.parameters[PARAM_STAGE].string_param = chosen.stage.value
            response.parameters[PARAM_REASON].string_param = chosen.reason.value
            tensors.encode_outputs(response, names, arrays, signature)
            encoded = time.perf_counter_ns()
            ok = True
            if request.id and self.served is not None:
                self.served.record(
                    request.id, model, chosen.version, chosen.stage, chosen.reason, key is not None
                )
            # Shadow candidates: the route names one, or a keyless call of a model that has a
            # rollout (the router answers NO_ROLLOUT only when there is none) may draw one.
            if self._shadow is not None and (
                chosen.shadow_version is not None
                or (key is None and chosen.reason is not RouteReason.NO_ROLLOUT)
            ):
                trace_context = span.get_span_context() if span is not None else None
                self._maybe_shadow(table, request, chosen, key, feeds, names, arrays, trace_context)
        except Exception as exc:
            failure = exc
            raise
        finally:
            # Statistics first, so a traced call's span export is not counted in its time.
            if version is not None:
                end = time.perf_counter_ns()
                if ok:
                    version.stats.record_success(
                        end - start, decoded - start, ran - decoded, encoded - ran, rows
                    )
                else:
                    version.stats.record_failure(end - start)
                    if failure is not None and chosen.stage is not Stage.STABLE:
                        self._candidate_failed(model, chosen, request.id, span, failure)
            if span is not None:
                telemetry.finish(span, failure, request.id)  # type: ignore[union-attr]
            # The raised error's traceback holds this frame: without this, frame and error
            # would keep each other, and a failed call's tensors, alive until a GC pass.
            failure = None
        return response

    def _candidate_failed(
        self, model: str, chosen: Route, request_id: str, span: object, failure: Exception
    ) -> None:
        if self.call_failures is None:
            return
        context = getattr(span, "get_span_context", None)
        trace_id = f"{context().trace_id:032x}" if context is not None else ""
        self.call_failures.record(
            model, chosen.version, chosen.stage.value, request_id, trace_id, failure
        )

    def _may_fall_back(self, chosen: Route, model: str) -> bool:
        """Whether a request the candidate refused goes to stable: routed (not pinned) to the
        candidate, and the model's policy says fall back."""
        return (
            chosen.stage is not Stage.STABLE
            and chosen.reason is not RouteReason.PINNED
            and self.schedulers is not None
            and self.schedulers.policy(model).candidate_fallback
        )

    @staticmethod
    def _run_stable(
        schedulers: Schedulers,
        model: str,
        chosen: Route,
        runner: Runner,
        names: Sequence[str],
        feeds: Arrays,
    ) -> list[npt.NDArray[np.generic]]:
        try:
            return schedulers.get(model, chosen.version, runner, chosen.stage).run(names, feeds)
        except (QueueFull, QueueTimeout, Contained):
            raise
        except Exception as exc:
            raise ModelFailed(model, chosen.version, exc) from exc

    def _maybe_shadow(
        self,
        table: RoutingTable,
        request: pb.ModelInferRequest,
        chosen: Route,
        key: str | None,
        feeds: Arrays,
        names: Sequence[str],
        arrays: Sequence[npt.NDArray[np.generic]],
        trace_context: object,
    ) -> None:
        if self._shadow is None:
            return
        candidate = chosen.shadow_version
        if candidate is None and key is None and chosen.stage is Stage.STABLE:
            rollout = table.models[request.model_name].rollout
            if (
                rollout is not None
                and rollout.shadow_ppm
                and self._draw() * PPM < rollout.shadow_ppm
            ):
                candidate = rollout.candidate
        if candidate is None:
            return
        runner = self._registry.ready_runner(request.model_name, candidate)
        if runner is None:
            return  # the candidate is not ready: nothing to compare, and never an error
        if self.schedulers is not None:  # shadow runs are the candidate's lowest class
            runner = self.schedulers.get(
                request.model_name, candidate, runner, Stage.SHADOW
            ).shadow_runner
        self._shadow.submit(
            ShadowJob(
                model=request.model_name,
                candidate=candidate,
                runner=runner,
                feeds=feeds,
                output_names=names,
                primary=dict(zip(names, arrays, strict=True)),
                request_id=request.id,
                routing_key=key,
                trace_context=trace_context,
            )
        )


#: Why stable served a request routed to the candidate, by what the candidate raised.
_FALLBACK_REASONS = {
    VersionCrashed: RouteReason.CANDIDATE_CRASHED,
    MemoryBudgetExceeded: RouteReason.CANDIDATE_OVER_BUDGET,
}


def _check_response_size(
    model: str, version: str, arrays: Sequence[npt.NDArray[np.generic]], limit: int
) -> None:
    """Refuse outputs over the message limit before encoding copies them."""
    size = sum(a.nbytes for a in arrays)
    if size > limit:
        raise ResponseTooLarge(
            f"model '{model}' version '{version}' answered with {size} bytes of outputs, over "
            f"the limit of {limit} bytes (max_message_bytes); send a smaller batch"
        )


def _run_failure(model: str, version: str, feeds: Arrays, exc: Exception) -> CanaryServeError:
    """What a run that raised means: many kernels refuse empty tensors, which the signature
    allows, so with an empty input the request is what the model cannot take; otherwise the
    version failed on a valid request."""
    empty = next((name for name, array in feeds.items() if array.size == 0), None)
    if empty is None:
        return ModelFailed(model, version, exc)
    shape = list(feeds[empty].shape)
    return InvalidTensor(
        empty,
        f"shape {shape} is empty, and model '{model}' version '{version}' cannot run on an "
        f"empty tensor there: {exc}",
    )
