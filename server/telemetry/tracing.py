"""OpenTelemetry for inference: attribute names, the stage-aware sampler, spans, exporters.

One SERVER span per inference RPC (none for health checks or reflection), continuing the
caller's W3C `traceparent`. The span is opened once the request is routed, with its start time
set to the moment the call arrived, so sampling can depend on the stage: candidate requests are
always recorded, stable ones at `stable_ratio` while the model has a rollout and at
`idle_ratio` when it has none (the span carries its weight 1/ratio so counts can be scaled).
Sampling is also parent-based: a call whose `traceparent` has the sampled flag is always
recorded. The stage-aware draw comes first; a span kept only because its parent was sampled is
marked `canary.sampled.parent_only`, and the windows skip it, so their scaled counts stay what
the draw alone gives. A parent whose flag says "not sampled" counts as no parent: the draw
decides (the windows need their evidence whatever callers sample).
Recorded spans feed the WindowProcessor (the promotion evidence) and any
exporter. Shadow runs get their own spans, linked to the primary's.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from server import __version__
from server.errors import CanaryServeError, status_name
from server.rollout.router import Route, RouteReason, Stage
from server.shadow.job import ShadowResult
from server.telemetry.windows import WindowProcessor

__all__ = [
    "ATTR_KEY_HASH",
    "ATTR_MODEL",
    "ATTR_PARENT_ONLY",
    "ATTR_REASON",
    "ATTR_STAGE",
    "ATTR_VERSION",
    "ATTR_WEIGHT",
    "Telemetry",
]

log = logging.getLogger(__name__)

# Semantic-convention names.
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_STATUS = "rpc.grpc.status_code"
# Ours, under one namespace.
ATTR_MODEL = "canary.model"
ATTR_VERSION = "canary.version"
ATTR_STAGE = "canary.stage"
ATTR_REASON = "canary.route.reason"
ATTR_KEY_HASH = "canary.routing_key.hash"
ATTR_CODE = "canary.status"
ATTR_WEIGHT = "canary.sample_weight"
#: Set on a stable span recorded only because the caller's trace is sampled: not in the windows.
ATTR_PARENT_ONLY = "canary.sampled.parent_only"
ATTR_REQUEST_ID = "canary.request_id"
ATTR_SHADOW_VERSION = "canary.shadow.version"
ATTR_SHADOW_OUTCOME = "canary.shadow.outcome"
ATTR_SHADOW_DISAGREE = "canary.shadow.disagree"
ATTR_SHADOW_REASON = "canary.shadow.reason"

#: gRPC status names and their numbers (fixed by the gRPC spec), for `rpc.grpc.status_code`.
_STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip
_STATUS_NUMBER = {name: number for number, name in enumerate(_STATUS_NAMES)}
_PROPAGATOR = TraceContextTextMapPropagator()


def key_hash(key: str) -> str:
    """A short, stable digest of a routing key: correlates requests without revealing it."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class Telemetry:
    """The tracer provider of one server, with its window processor and exporters."""

    def __init__(
        self,
        *,
        stable_ratio: float = 1.0,
        idle_ratio: float = 1.0,
        exporters: Sequence[SpanExporter] = (),
        otlp_endpoint: str | None = None,
        windows: WindowProcessor | None = None,
    ) -> None:
        self.stable_ratio = stable_ratio
        self.idle_ratio = idle_ratio
        self.draw = random.random
        self.windows = windows or WindowProcessor(
            attr_model=ATTR_MODEL, attr_version=ATTR_VERSION, attr_code=ATTR_CODE,
            attr_weight=ATTR_WEIGHT, attr_skip=ATTR_PARENT_ONLY,
        )  # fmt: skip
        self.provider = TracerProvider(
            # Sampling is decided by open_inference before a span exists (stage-aware, then
            # parent-based); whatever is opened is recorded.
            sampler=ALWAYS_ON,
            resource=Resource.create(
                {"service.name": "canaryserve", "service.version": __version__}
            ),
        )
        self.provider.add_span_processor(self.windows)
        processors: list[SpanProcessor] = [SimpleSpanProcessor(e) for e in exporters]
        if otlp_endpoint:
            processors.append(BatchSpanProcessor(_otlp(otlp_endpoint)))
        for p in processors:
            self.provider.add_span_processor(p)
        self.tracer = self.provider.get_tracer("canaryserve", __version__)

    def open_inference(
        self,
        method: str,
        metadata: Mapping[str, str],
        model: str,
        route: Route,
        key: str | None,
        start_perf_ns: int,
    ) -> trace.Span | None:
        """The SERVER span of one routed inference call, or None when sampling skips it.

        Stage-aware sampling happens here, before the SDK is involved: a stable call that is
        not sampled, and carries no sampled `traceparent`, costs one random draw and creates
        nothing (the SDK's start_span is the dominant cost of tracing on the hot path).
        Candidate calls are always recorded; so are calls whose caller's trace is sampled.
        """
        stable = route.stage is Stage.STABLE
        parent: Context | None = None
        parent_only = False
        if stable:
            ratio = self.idle_ratio if route.reason is RouteReason.NO_ROLLOUT else self.stable_ratio
            if ratio < 1.0 and self.draw() >= ratio:
                if "traceparent" not in metadata:
                    return None
                parent = _sampled_parent(metadata)
                if parent is None:
                    return None
                parent_only = True  # the caller's trace is sampled; the draw did not keep it
        attrs: dict[str, str | float | bool] = {
            ATTR_MODEL: model,
            ATTR_VERSION: route.version,
            ATTR_STAGE: route.stage.value,
            ATTR_REASON: route.reason.value,
        }
        if parent_only:
            attrs[ATTR_PARENT_ONLY] = True  # exported, never counted in the windows
        elif stable:
            attrs[ATTR_WEIGHT] = 1.0 / ratio
        if key is not None:
            attrs[ATTR_KEY_HASH] = key_hash(key)
        return self._open(method, metadata, attrs, start_perf_ns, parent)

    def unrouted(
        self,
        method: str,
        metadata: Mapping[str, str],
        start_perf_ns: int,
        error: BaseException,
        request_id: str,
    ) -> None:
        """Trace a call that failed before it was routed (always: there is no stage to sample)."""
        self.finish(self._open(method, metadata, {}, start_perf_ns), error, request_id)

    def finish(self, span: trace.Span, error: BaseException | None, request_id: str) -> None:
        """End an inference span with the call's outcome, as its gRPC status name and number."""
        if error is None:
            code, message = "OK", ""
        elif isinstance(error, CanaryServeError):
            code, message = status_name(error), str(error)
        else:
            code, message = "INTERNAL", type(error).__name__
        span.set_attributes({RPC_STATUS: _STATUS_NUMBER.get(code, 2), ATTR_CODE: code})
        if request_id:
            span.set_attribute(ATTR_REQUEST_ID, request_id)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"[:500]))
        span.end()

    def _open(
        self,
        method: str,
        metadata: Mapping[str, str],
        attrs: Mapping[str, str | float | bool],
        start_perf_ns: int,
        parent: Context | None = None,
    ) -> trace.Span:
        # The caller's W3C `traceparent`, if it sent one, becomes the parent (`parent`: already
        # extracted). The span starts when the call arrived: the wall clock now, less the time
        # spent since then.
        if parent is None:
            parent = _PROPAGATOR.extract(metadata) if "traceparent" in metadata else Context()
        return self.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                RPC_SYSTEM: "grpc",
                RPC_SERVICE: "inference.GRPCInferenceService",
                RPC_METHOD: method,
                **attrs,
            },
            start_time=time.time_ns() - (time.perf_counter_ns() - start_perf_ns),
        )

    def shadow_span(self, result: ShadowResult) -> None:
        """A span for one shadow run, linked to its primary (the job's trace_context).

        Every error and disagreement is traced; runs that agree at `stable_ratio`.
        """
        job = result.job
        interesting = result.error or (result.comparison is not None and result.comparison.disagree)
        if not interesting and self.stable_ratio < 1.0 and self.draw() >= self.stable_ratio:
            return  # agreeing runs are traced at the stable ratio; every disagreement and error
        links = [Link(job.trace_context)] if isinstance(job.trace_context, SpanContext) else []
        end = time.time_ns()
        duration = int(((result.latency_s or 0.0) + result.queued_s) * 1e9)
        attrs: dict[str, str | bool] = {
            ATTR_MODEL: job.model,
            ATTR_SHADOW_VERSION: job.candidate,
            ATTR_STAGE: "shadow",
            ATTR_SHADOW_OUTCOME: result.outcome.value,
            ATTR_REQUEST_ID: job.request_id,
        }
        if result.comparison is not None:
            attrs[ATTR_SHADOW_DISAGREE] = result.comparison.disagree
            worst = result.comparison.worst()
            if worst is not None and worst.reason is not None:
                attrs[ATTR_SHADOW_REASON] = f"{worst.name}: {worst.reason.value}"
        span = self.tracer.start_span(
            "shadow", context=Context(), kind=SpanKind.INTERNAL, attributes=attrs, links=links,
            start_time=end - duration,
        )  # fmt: skip
        if result.error:
            span.set_status(Status(StatusCode.ERROR, result.error))
        span.end(end_time=end)

    def decision_event(
        self, model: str, candidate: str, attributes: Mapping[str, str | int | float]
    ) -> None:
        """A span with one promotion decision as its event, for trace-based audit trails."""
        span = self.tracer.start_span(
            "promotion.decide",
            context=Context(),
            kind=SpanKind.INTERNAL,
            attributes={ATTR_MODEL: model, ATTR_SHADOW_VERSION: candidate},
        )
        span.add_event("decision", attributes)
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


#: Last hex digit of a traceparent's flags when the sampled bit (0x01) is set.
_ODD_HEX = frozenset("13579bdf")


def _sampled_parent(metadata: Mapping[str, str]) -> Context | None:
    """The caller's context when its `traceparent` is valid and sampled, else None.

    A string check first: most callers that send a traceparent send unsampled ones (their own
    tracer samples), and extracting costs about 5 µs, which those calls do not pay.
    """
    header = metadata.get("traceparent", "")
    if len(header) < 55 or header[54] not in _ODD_HEX:
        return None
    parent = _PROPAGATOR.extract(metadata)
    context = trace.get_current_span(parent).get_span_context()
    return parent if context.is_valid and context.trace_flags.sampled else None


def _otlp(endpoint: str) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # an optional extra
        raise RuntimeError(
            "otlp_endpoint is set but the OTLP exporter is not installed: "
            "pip install 'canaryserve[otlp]'"
        ) from exc
    exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    return exporter
