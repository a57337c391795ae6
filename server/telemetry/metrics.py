"""Prometheus text exposition of the server's state, on its own HTTP port (default 8002).

Exact per-version request counts come from the registry's statistics (every request). The
request, error and latency series by gRPC code come from the telemetry windows (traced calls,
counts scaled by sampling weight, so estimates). Rollout weights and stages come from the
current routing snapshot, shadow statistics from the shadow executor, promotion decisions from
the controller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeAlias

from server.rollout.state import RolloutState
from server.shadow.executor import ShadowExecutor
from server.telemetry.windows import LATENCY_BOUNDS_MS, WindowProcessor

__all__ = ["CONTENT_TYPE", "MetricsServer", "SchedulingSample", "render"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Decisions: TypeAlias = Callable[[], Mapping[tuple[str, str], int]]
Rollouts: TypeAlias = Callable[[], Iterable[RolloutState]]
_SHADOW_COUNTERS = ("sampled", "completed", "dropped", "errors", "timeouts", "disagreements")


@dataclass(frozen=True)
class SchedulingSample:
    """One version's scheduler at one moment (docs/scheduling.md), for the exposition."""

    model: str
    version: str
    queued: int
    running: int
    queue_count: int
    queue_seconds: float
    executions: int
    batch_rows: Mapping[int, int] = field(default_factory=dict)
    rejected: int = 0
    timeouts: int = 0
    shadow_shed: int = 0
    fallbacks: int = 0


def _labels(**labels: str) -> str:
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + body + "}"


def render(
    windows: WindowProcessor,
    rollouts: Iterable[RolloutState],
    shadow: ShadowExecutor,
    decisions: Mapping[tuple[str, str], int],
    exact: Iterable[tuple[str, str, int, int]] = (),
    scheduling: Iterable[SchedulingSample] = (),
) -> str:
    """The whole exposition, one consistent-enough read of each source.

    `exact` holds (model, version, successes, failures) of every loaded version;
    `scheduling` each version scheduler's counters.
    """
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family(
        "canaryserve_inference_requests_total",
        "counter",
        "Every inference request that reached a version, by result (exact, not sampled).",
    )
    for model, version, successes, failures in exact:
        for result, count in (("success", successes), ("failure", failures)):
            labels = _labels(model=model, version=version, result=result)
            out.append(f"canaryserve_inference_requests_total{labels} {count}")

    totals = windows.totals()
    family(
        "canaryserve_requests_total",
        "counter",
        "Traced inference calls by version and gRPC code, scaled by sampling weight.",
    )
    for (model, version), t in sorted(totals.items()):
        for code, n in sorted(t.by_code.items()):
            labels = _labels(model=model, version=version, code=code)
            out.append(f"canaryserve_requests_total{labels} {n:g}")
    family("canaryserve_errors_total", "counter", "Inference calls that did not return OK.")
    for (model, version), t in sorted(totals.items()):
        errors = sum(n for code, n in t.by_code.items() if code not in ("OK", "CANCELLED"))
        out.append(f"canaryserve_errors_total{_labels(model=model, version=version)} {errors:g}")
    family("canaryserve_request_duration_seconds", "histogram", "Inference latency.")
    for (model, version), t in sorted(totals.items()):
        running = 0.0
        for bound, n in zip((*LATENCY_BOUNDS_MS, None), t.latency, strict=True):
            running += n
            le = "+Inf" if bound is None else f"{bound / 1000:g}"
            labels = _labels(model=model, version=version, le=le)
            out.append(f"canaryserve_request_duration_seconds_bucket{labels} {running:g}")
        labels = _labels(model=model, version=version)
        out.append(f"canaryserve_request_duration_seconds_sum{labels} {t.latency_sum_s:g}")
        out.append(f"canaryserve_request_duration_seconds_count{labels} {running:g}")

    states = list(rollouts)
    family("canaryserve_version_stage", "gauge", "1 for each version's current rollout stage.")
    for s in states:
        out.append(
            f"canaryserve_version_stage{_labels(model=s.model, version=s.stable, stage='stable')} 1"
        )
        if s.candidate:
            stage = s.phase.value
            labels = _labels(model=s.model, version=s.candidate, stage=stage)
            out.append(f"canaryserve_version_stage{labels} 1")
    # Each family's samples follow its own HELP and TYPE, as the text format requires.
    family("canaryserve_canary_weight_ratio", "gauge", "Share of keyed traffic on the candidate.")
    out.extend(
        f"canaryserve_canary_weight_ratio{_labels(model=s.model)} {s.canary_ppm / 1e6:g}"
        for s in states
    )
    family("canaryserve_shadow_rate_ratio", "gauge", "Share of stable traffic shadowed.")
    out.extend(
        f"canaryserve_shadow_rate_ratio{_labels(model=s.model)} {s.shadow_ppm / 1e6:g}"
        for s in states
    )
    family("canaryserve_rollout_revision", "gauge", "Revision of the model's rollout state.")
    out.extend(f"canaryserve_rollout_revision{_labels(model=s.model)} {s.revision}" for s in states)

    reports = shadow.snapshot()
    for counter in _SHADOW_COUNTERS:
        name = f"canaryserve_shadow_{counter}_total"
        family(name, "counter", f"Shadow jobs: {counter}.")
        for r in reports:
            labels = _labels(model=r.model, candidate=r.candidate)
            out.append(f"{name}{labels} {getattr(r, counter)}")
    name = "canaryserve_shadow_dropped_by_reason_total"
    family(name, "counter", "Shadow jobs not run, by why (queue_full, primary_queued, ...).")
    for r in reports:
        for reason, n in sorted(r.dropped_by_reason.items()):
            labels = _labels(model=r.model, candidate=r.candidate, reason=reason)
            out.append(f"{name}{labels} {n}")
    _scheduling(out, family, list(scheduling))
    family("canaryserve_shadow_queue_depth", "gauge", "Shadow jobs waiting.")
    out.append(f"canaryserve_shadow_queue_depth {shadow.queue_depth()}")
    family("canaryserve_promotion_decisions_total", "counter", "Promotion decisions by action.")
    for (model, action), n in sorted(decisions.items()):
        out.append(
            f"canaryserve_promotion_decisions_total{_labels(model=model, action=action)} {n}"
        )
    return "\n".join(out) + "\n"


def _scheduling(
    out: list[str], family: Callable[[str, str, str], None], samples: list[SchedulingSample]
) -> None:
    gauges = (
        ("canaryserve_queue_depth", "Requests waiting in the version's queue.", "queued"),
        ("canaryserve_instances_busy", "Runs of the version in progress.", "running"),
    )
    counters = (
        ("canaryserve_queue_requests_total", "Requests that left the queue to run.", "queue_count"),
        ("canaryserve_queue_seconds_total", "Their time in the queue.", "queue_seconds"),
        ("canaryserve_executions_total", "Session runs (a batch is one).", "executions"),
        ("canaryserve_fallbacks_total", "Candidate requests stable served.", "fallbacks"),
    )
    for name, help_text, attr in gauges:
        family(name, "gauge", help_text)
        for s in samples:
            out.append(f"{name}{_labels(model=s.model, version=s.version)} {getattr(s, attr)}")
    for name, help_text, attr in counters:
        family(name, "counter", help_text)
        for s in samples:
            out.append(f"{name}{_labels(model=s.model, version=s.version)} {getattr(s, attr):g}")
    name = "canaryserve_sheds_total"
    family(name, "counter", "Requests the version's queue refused: full, timeout, shadow.")
    for s in samples:
        for reason, n in (("full", s.rejected), ("timeout", s.timeouts), ("shadow", s.shadow_shed)):
            out.append(f"{name}{_labels(model=s.model, version=s.version, reason=reason)} {n}")
    name = "canaryserve_batch_executions_total"
    family(name, "counter", "Session runs by batch size (rows).")
    for s in samples:
        for rows, n in sorted(s.batch_rows.items()):
            labels = _labels(model=s.model, version=s.version, batch_size=str(rows))
            out.append(f"{name}{labels} {n}")


class MetricsServer:
    """Serves `render(...)` at /metrics on a daemon thread."""

    def __init__(self, host: str, port: int, body: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "metrics are at /metrics")
                    return
                try:
                    data = body().encode()
                except Exception:  # a scrape must never take the server down
                    log.exception("rendering metrics failed")
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="canaryserve-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
