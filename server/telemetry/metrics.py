"""The Prometheus endpoint, on its own HTTP port (default 8002): the server's registry and the
HTTP server that exposes it with prometheus_client's exposition.

Each server has a `CollectorRegistry` of its own (never the global one): its collectors read
the server's state at scrape time (server.telemetry.collectors and .resources), and a new
family is one more `registry.register(collector)`. The text format is the default; a scraper
that asks for OpenMetrics in its Accept header (Prometheus does) gets it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder

from server.rollout.state import RolloutState
from server.shadow.executor import ShadowExecutor
from server.telemetry.collectors import SchedulingSample, ServingCollector, ServingSources
from server.telemetry.resources import UsageCollector, VersionUsage, register_process_collectors
from server.telemetry.windows import WindowProcessor

__all__ = [
    "MetricsServer",
    "SchedulingSample",
    "ServingSources",
    "VersionUsage",
    "render",
    "server_registry",
]

log = logging.getLogger(__name__)


def server_registry(
    sources: ServingSources, usage: Callable[[], Iterable[VersionUsage]] = lambda: ()
) -> CollectorRegistry:
    """A registry with the serving families, the per-version usage families and the process,
    platform and GC collectors."""
    registry = CollectorRegistry()
    registry.register(ServingCollector(sources))
    registry.register(UsageCollector(usage))
    register_process_collectors(registry)
    return registry


def render(
    windows: WindowProcessor,
    rollouts: Iterable[RolloutState],
    shadow: ShadowExecutor,
    decisions: Mapping[tuple[str, str], int],
    exact: Iterable[tuple[str, str, int, int]] = (),
    scheduling: Iterable[SchedulingSample] = (),
) -> str:
    """The serving families alone, in the text format, from values read once."""
    registry = CollectorRegistry()
    states, rows, samples = list(rollouts), list(exact), list(scheduling)
    sources = ServingSources(
        windows, lambda: states, shadow, lambda: decisions, lambda: rows, lambda: samples
    )
    registry.register(ServingCollector(sources))
    return generate_latest(registry).decode()


class MetricsServer:
    """Serves `registry` at /metrics on a daemon thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "metrics are at /metrics")
                    return
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                try:
                    data = encoder(registry)
                except Exception:  # a scrape must never take the server down
                    log.exception("rendering metrics failed")
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
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
