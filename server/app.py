"""The composition root: build every part, start, drain and stop them, in that order.

The parts it builds from the configuration live in `server.assembly` (the store, per-model
policies, authenticators, adoption, metrics sources, the gRPC server); `App` wires them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import partial

import grpc
from grpc_health.v1 import health, health_pb2
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import generate_latest

from server.api.admin import AdminServicer
from server.api.auth import check_state_dir
from server.api.inference import InferenceServicer
from server.api.outcomes import OutcomesServicer
from server.api.streams import StreamGuard
from server.assembly import adoption, policies, sources
from server.assembly.access import access
from server.assembly.grpc_server import add_services, drain, grpc_server, listen, set_health
from server.assembly.publication import Publication, stable_of
from server.assembly.stores import state_store
from server.config import Config, ConfigError
from server.fleet.election import Election
from server.fleet.member import FleetMember
from server.fleet.store import EtcdStore
from server.notify.alerts import StableAlerts
from server.notify.metrics import NotificationCollector
from server.notify.notifier import Notifier
from server.outcomes.merged import OutcomeSource
from server.outcomes.metrics import OutcomeCollector
from server.outcomes.recorder import OutcomeRecorder
from server.outcomes.served import ServedRequests
from server.outcomes.windows import OutcomeWindows
from server.promotion.controller import PromotionController
from server.rollout.controller import RolloutController
from server.rollout.router import RoutingTable
from server.rollout.store import StateStore
from server.serving.dataplane import DataPlane
from server.serving.poller import VersionPoller
from server.serving.registry import Registry, RunnerFactory
from server.serving.repository import ModelRepository
from server.serving.retirement import Retirement
from server.serving.roles import Placement, RunnerBuilder
from server.serving.schedulers import Schedulers
from server.shadow.executor import ShadowExecutor
from server.shadow.headroom import CpuMeter
from server.telemetry.logs import CallFailures
from server.telemetry.metrics import MetricsServer, ServingSources, server_registry
from server.telemetry.tracing import Telemetry

__all__ = ["App"]

log = logging.getLogger(__name__)


class App:
    """One canaryserve server process: registry, data plane, gRPC services."""

    def __init__(
        self,
        config: Config,
        runner_factory: RunnerFactory | None = None,
        span_exporters: Sequence[SpanExporter] = (),
    ) -> None:
        self.config = config
        self.registry = Registry(
            config.models_dir,
            runner_factory or RunnerBuilder(self._placement, self._stable_of),
            partial(policies.warmup, config),
        )
        self._ready = threading.Event()
        self.telemetry = Telemetry(
            stable_ratio=config.stable_trace_ratio,
            idle_ratio=config.idle_trace_ratio,
            otlp_endpoint=config.otlp_endpoint,
            exporters=span_exporters,
        )
        self._cpu = CpuMeter(config.shadow_max_cpu)
        self.shadow = ShadowExecutor(
            workers=config.shadow_workers,
            queue_size=config.shadow_queue_size,
            timeout_s=config.shadow_timeout_seconds,
            policy_for=partial(policies.comparison_policy, config),
            on_result=self.telemetry.shadow_span,
            max_busy=config.shadow_max_busy or None,
            pressure=self._shadow_pressure,
        )
        self.schedulers = Schedulers(partial(policies.scheduling_policy, config))
        # A version that stops serving closes its runner and leaves the scheduling series.
        self.registry.on_change(Retirement(self.registry, self.schedulers).follow)
        served = ServedRequests(config.outcome_join_max_requests, config.outcome_join_ttl_seconds)
        self.dataplane = DataPlane(
            self.registry,
            RoutingTable(allow_pinning=config.allow_pinning),
            self.shadow,
            telemetry=self.telemetry,
            max_message_bytes=config.max_message_bytes,
            schedulers=self.schedulers,
            call_failures=CallFailures(),
            served=served,
        )
        self.outcomes = OutcomeRecorder(
            served,
            OutcomeWindows(),
            lambda: self.dataplane.table,
            max_names=config.outcome_max_names,
        )
        self.notifier = Notifier(config.notifications)
        check_state_dir(config.state_dir)
        self.store: StateStore
        self.election: Election | None
        self.store, self.election = state_store(config)
        self.rollouts = RolloutController(
            self.store,
            ready_versions=self.registry.ready_versions,
            publish=Publication(self.dataplane, self.registry, self.shadow),
            grace_seconds=config.rollback_grace_seconds,
            allow_pinning=config.allow_pinning,
            on_audit=self.notifier.on_audit,
        )
        self.repository = ModelRepository(self.registry, self.rollouts)
        hook = policies.pre_promotion_hook(config)
        self.poller = (
            VersionPoller(self.registry, config.poll_models_seconds)
            if config.poll_models_seconds > 0
            else None
        )
        self.fleet: FleetMember | None = None
        if isinstance(self.store, EtcdStore) and self.election is not None:
            self.fleet = FleetMember(
                self.store,
                self.election.identity,
                self.rollouts,
                self.telemetry.windows,
                self.shadow,
                self.registry,
                self.repository,
                ttl_s=config.leader_ttl_seconds,
                outcomes=self.outcomes.windows,
            )
        #: Outcomes for the gates and `ab`: in a fleet, every live replica's reports.
        self.outcome_view: OutcomeSource = (
            self.fleet.outcomes.view if self.fleet else self.outcomes.windows
        )
        self.promotion = PromotionController(
            self.rollouts,
            self.telemetry.windows,
            self.shadow,
            tick_s=config.promotion_tick_seconds,
            is_leader=self.election.is_leader if self.election is not None else None,
            confirm=hook.confirm_decision if hook is not None else None,
            evidence=self.fleet.telemetry if self.fleet is not None else None,
            on_decision=lambda d: self.telemetry.decision_event(
                d.evidence.model, d.evidence.candidate_version, d.trace_attributes()
            ),
            outcomes=self.outcome_view,
        )
        self.alerts = StableAlerts(
            config.notifications.alerts,
            self.rollouts.states,
            self.telemetry.windows.summary,
            self.notifier.publish,
            is_leader=self.election.is_leader if self.election is not None else None,
            tick_s=config.notifications.alert_tick_seconds,
        )
        callers = access(config)
        self.admin_auth = callers.admin
        self.inference_auth = callers.inference
        self.outcome_auth = callers.outcome
        self.health = health.HealthServicer()
        self.streams = StreamGuard(config.stream_limit, config.stream_idle_timeout_seconds)
        self._server: grpc.Server | None = None
        #: Every /metrics family, read at scrape time; more collectors may be registered here.
        self.metrics_registry = server_registry(
            ServingSources(
                self.telemetry.windows,
                self.rollouts.states,
                self.shadow,
                lambda: dict(self.promotion.counts),
                partial(sources.exact_counts, self.registry),
                partial(sources.scheduling_samples, self.schedulers),
            ),
            partial(sources.usage, self.registry),
        )
        self.metrics_registry.register(NotificationCollector(self.notifier))
        self.metrics_registry.register(OutcomeCollector(self.outcomes.windows))
        self._metrics: MetricsServer | None = None
        self.port = 0
        self.metrics_port = 0

    def _placement(self, model: str) -> Placement:
        return policies.placement(self.config, model)

    def _stable_of(self, model: str) -> str | None:
        return stable_of(self.config, self.dataplane.table, model)

    def _shadow_pressure(self, model: str, at_submit: bool) -> str | None:
        """Why shadow work of `model` must not run now, or None: an inference call is being
        served (`primary_busy`: the primary needs the CPU; at submit, one besides the call
        that sampled the job), the process used more than shadow_max_cpu of its cores over
        the last 50 ms (`cpu_busy`), or the model's stable version has requests waiting
        (`primary_queued`)."""
        if self.dataplane.in_flight > (1 if at_submit else 0):
            return "primary_busy"
        if self._cpu.busy():
            return "cpu_busy"
        routing = self.dataplane.table.models.get(model)
        return None if routing is None else self.schedulers.pressure(model, routing.stable)

    def _adopt(self, model: str | None = None) -> None:
        """Give every model with ready versions a rollout state (new ones: stable = default)."""
        adoption.adopt(self.config, self.registry, self.rollouts, model)

    # -- lifecycle --

    def start(self) -> int:
        """Listen, load and warm every model, then report ready. Returns the bound port."""
        server = grpc_server(self.config, self.inference_auth, self.outcome_auth, self.streams)
        inference = InferenceServicer(
            self.registry,
            self.dataplane,
            self._ready.is_set,
            self.repository,
            self.admin_auth,
            self.config.max_message_bytes,
        )
        admin = AdminServicer(
            self.rollouts,
            self.admin_auth,
            self.dataplane,
            self.shadow,
            self.promotion,
            partial(policies.promotion_policy, self.config),
            self.repository,
            registry=self.registry,
            raw_routing_keys=self.config.shadow_report_raw_keys,
            notifier=self.notifier,
            fleet_shadow=self.fleet.telemetry.shadow_report if self.fleet is not None else None,
            fleet_readiness=self.fleet.repository.readiness if self.fleet is not None else None,
        )
        outcomes = OutcomesServicer(self.outcomes, lambda: self.dataplane.table, self.outcome_view)
        add_services(server, inference, admin, outcomes, self.health)
        self.port = listen(server, self.config)
        set_health(self.health, health_pb2.HealthCheckResponse.NOT_SERVING)
        server.start()
        self._server = server
        self.registry.load_all()
        adoption.check_configured_stable(self.config, self.registry, self.rollouts)
        self._adopt()
        # Later loads: new models get a state, new versions become pinnable (never stable).
        self.registry.on_change(self._adopt)
        self.registry.on_replace(partial(adoption.audit_replaced, self.rollouts))
        self.dataplane.starting = False  # every model loaded and routed: NOT_FOUND means so
        # Other processes and replicas writing the same store: follow them.
        self.store.watch(self.rollouts.sync)
        if self.election is not None:
            self.election.start()
        if self.fleet is not None:
            self.fleet.start()
        if self.poller is not None:
            self.poller.start()
        if self.config.metrics_port >= 0:
            try:
                self._metrics = MetricsServer(
                    self.config.host, self.config.metrics_port, self.metrics_registry
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve metrics on {self.config.host}:{self.config.metrics_port}:"
                    f" {exc.strerror}; choose another port with --metrics-port or `metrics_port`"
                    " in the config file (-1 turns metrics off)"
                ) from None
            self._metrics.start()
            self.metrics_port = self._metrics.port
            log.info("metrics on http://%s:%d/metrics", self.config.host, self.metrics_port)
        self.notifier.start()
        self.alerts.start()
        self.promotion.start()
        self._ready.set()
        set_health(self.health, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "canaryserve listening on %s:%d (%d models)",
            self.config.host,
            self.port,
            len(self.registry.models()),
        )
        return self.port

    def metrics(self) -> str:
        """The Prometheus exposition of this server (text format)."""
        return generate_latest(self.metrics_registry).decode()

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let calls in flight finish within `grace` seconds, then stop."""
        self._ready.clear()
        self.health.enter_graceful_shutdown()
        self.rollouts.close_subscriptions()  # open watch streams must not hold the drain
        if self._server is not None:
            grace = self.config.grace_seconds if grace is None else grace
            drain(self._server, self.dataplane, grace)
            self._server = None
        self.streams.close()
        if self.poller is not None:
            self.poller.close()
        self.promotion.shutdown()
        self.alerts.shutdown()
        if self.dataplane.call_failures is not None:
            self.dataplane.call_failures.flush()
        if self.election is not None:
            self.election.close()
        if self.fleet is not None:
            self.fleet.close()
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics = None
        self.shadow.shutdown(timeout=min(grace or 0.0, 2.0) + 0.5)
        self.telemetry.shutdown()
        self.notifier.shutdown(timeout=min(grace or 0.0, 2.0) + 0.5)
        self.store.close()
        for mv in self.registry.index():  # isolated versions' processes
            close = getattr(mv.runner, "close", None)
            if close is not None:
                close()

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()
