"""Finished inference spans built by hand, to feed a WindowProcessor without a server.

The attribute names are the tracing module's own, so a processor from `window_processor`
reads these spans exactly as the server's reads the spans of real calls.
"""

from __future__ import annotations

import itertools

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from server.clock import Clock
from server.telemetry.tracing import ATTR_CODE, ATTR_MODEL, ATTR_VERSION, ATTR_WEIGHT
from server.telemetry.windows import WindowProcessor

__all__ = ["feed", "inference_span", "window_processor"]

_trace_ids = itertools.count(1)


def window_processor(clock: Clock, *, bucket_s: float = 1.0, buckets: int = 600) -> WindowProcessor:
    """A WindowProcessor on `clock`, reading the server's span attributes."""
    return WindowProcessor(
        attr_model=ATTR_MODEL,
        attr_version=ATTR_VERSION,
        attr_code=ATTR_CODE,
        attr_weight=ATTR_WEIGHT,
        bucket_s=bucket_s,
        buckets=buckets,
        clock=clock,
    )


def inference_span(
    model: str | None,
    version: str | None,
    ms: float | None = 1.0,
    code: str = "OK",
    weight: float | None = None,
    trace_id: int | None = None,
) -> ReadableSpan:
    """A finished span of one call that took `ms` milliseconds and ended with `code`.

    model or version None: a call that was never routed; ms None: a span that never ended.
    weight: the sampling weight a stable span carries (none: a candidate's, weight 1). Each
    span gets a fresh trace id unless given.
    """
    attributes: dict[str, str | float] = {ATTR_CODE: code}
    if model is not None:
        attributes[ATTR_MODEL] = model
    if version is not None:
        attributes[ATTR_VERSION] = version
    if weight is not None:
        attributes[ATTR_WEIGHT] = weight
    tid = next(_trace_ids) if trace_id is None else trace_id
    return ReadableSpan(
        name="ModelInfer",
        context=SpanContext(trace_id=tid, span_id=1, is_remote=False),
        attributes=attributes,
        start_time=1_000_000_000,
        end_time=None if ms is None else 1_000_000_000 + round(ms * 1_000_000),
    )


def feed(
    windows: WindowProcessor,
    model: str,
    version: str,
    n: int,
    *,
    ms: float = 1.0,
    code: str = "OK",
    weight: float | None = None,
) -> None:
    """`n` finished calls of (model, version), each `ms` long, at the processor's clock now."""
    for _ in range(n):
        windows.on_end(inference_span(model, version, ms, code, weight))
