"""The composition root: build every part, start, drain and stop them, in that order."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import generate_latest

from protos.canaryserve.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.canaryserve.outcomes.v1 import outcomes_pb2, outcomes_pb2_grpc
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.api.admin import AdminServicer
from server.api.auth import (
    Authenticator,
    AuthInterceptor,
    check_state_dir,
    ensure_token_file,
)
from server.api.inference import REPOSITORY_CONTROL, InferenceServicer
from server.api.outcomes import OutcomesServicer
from server.api.streams import StreamGuard
from server.config import Config, ConfigError, ModelConfig
from server.errors import ModelNotFound, StoreUnavailable
from server.fleet.client import parse_store_url, wait_reachable
from server.fleet.election import Election
from server.fleet.member import FleetMember
from server.fleet.store import EtcdStore
from server.notify.alerts import StableAlerts
from server.notify.hook import PrePromotionHook
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
from server.rollout.store import SqliteStore, StateStore
from server.serving.dataplane import DataPlane
from server.serving.limits import Limits
from server.serving.limits import Policy as SchedulingPolicy
from server.serving.poller import VersionPoller
from server.serving.registry import LoadState, Registry, RunnerFactory, VersionChange
from server.serving.repository import ModelRepository
from server.serving.retirement import Retirement
from server.serving.roles import Placement, RunnerBuilder, follow_roles
from server.serving.schedulers import Schedulers
from server.serving.usage import cpu_seconds, isolated_restarts
from server.shadow.comparison import ComparisonPolicy
from server.shadow.executor import ShadowExecutor
from server.shadow.headroom import CpuMeter
from server.telemetry.logs import CallFailures
from server.telemetry.metrics import (
    MetricsServer,
    SchedulingSample,
    ServingSources,
    VersionUsage,
    server_registry,
)
from server.telemetry.tracing import Telemetry

__all__ = ["App"]

log = logging.getLogger(__name__)

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
OUTCOMES_SERVICE = outcomes_pb2.DESCRIPTOR.services_by_name["OutcomesService"].full_name
STATE_DB = "state.db"
#: How long no call may have been refused before a draining server stops listening.
_QUIET_S = 0.1


#: How long a server waits at start for its etcd, which may be starting beside it.
STORE_START_WAIT_S = 10.0


def _etcd_store(url: str) -> EtcdStore:
    try:
        target = parse_store_url(url)
    except ValueError as exc:
        raise ConfigError(f"'store': {exc}") from None
    try:
        wait_reachable(target, STORE_START_WAIT_S)
        return EtcdStore(target)
    except StoreUnavailable as exc:
        # At start there is no snapshot to serve from: refuse, naming the store.
        reason = exc.args[0] if exc.args else exc
        raise ConfigError(f"cannot start: {reason} (waited {STORE_START_WAIT_S:g}s)") from None


def _pre_promotion_hook(config: Config) -> PrePromotionHook | None:
    """The configured pre-promotion hook, asked before automatic steps and promotions."""
    hook = config.notifications.pre_promotion_hook
    if hook is None:
        return None
    return PrePromotionHook(hook.url, secret=hook.secret, timeout_s=hook.timeout_seconds)


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
            lambda model: (config.models.get(model) or ModelConfig()).warmup,
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
            policy_for=self._comparison_policy,
            on_result=self.telemetry.shadow_span,
            max_busy=config.shadow_max_busy or None,
            pressure=self._shadow_pressure,
        )
        self._salts: dict[str, str] = {}
        self.schedulers = Schedulers(self._scheduling_policy)
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
        self.election: Election | None = None
        self.store: StateStore
        if config.store:
            etcd = _etcd_store(config.store)
            self.store = etcd
            self.election = Election(
                etcd.client, etcd.root + b"leader", ttl_s=config.leader_ttl_seconds
            )
        else:
            self.store = SqliteStore(config.state_dir / STATE_DB)
        self.rollouts = RolloutController(
            self.store,
            ready_versions=self.registry.ready_versions,
            publish=self._publish,
            grace_seconds=config.rollback_grace_seconds,
            allow_pinning=config.allow_pinning,
            on_audit=self.notifier.on_audit,
        )
        self.repository = ModelRepository(self.registry, self.rollouts)
        hook = _pre_promotion_hook(config)
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
        tokens = dict(config.admin_tokens) or {"generated": ensure_token_file(config.state_dir)}
        self.admin_auth = Authenticator(tokens, "admin")
        inference_tokens = {"inference": config.inference_token} if config.inference_token else {}
        self.inference_auth = Authenticator(inference_tokens, "inference")
        # Outcome reports steer outcome gates: a server that guards inference guards them too,
        # with the inference token, unless outcome tokens of their own are configured.
        self.outcome_auth = Authenticator(
            dict(config.outcome_tokens) or inference_tokens, "outcome"
        )
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
                self._exact_counts,
                self._scheduling_samples,
            ),
            self._usage,
        )
        self.metrics_registry.register(NotificationCollector(self.notifier))
        self.metrics_registry.register(OutcomeCollector(self.outcomes.windows))
        self._metrics: MetricsServer | None = None
        self.port = 0
        self.metrics_port = 0

    def _placement(self, model: str) -> Placement:
        config, settings = self.config, self.config.models.get(model) or ModelConfig()
        keys = (
            "isolation",
            "candidate_isolation",
            "memory_budget_mb",
            "candidate_intra_op_threads",
            "candidate_arena_shrinkage",
        )
        chosen = {
            k: getattr(config, k) if getattr(settings, k) is None else getattr(settings, k)
            for k in keys
        }
        if chosen["candidate_intra_op_threads"] is None:  # the same as stable's by default
            chosen["candidate_intra_op_threads"] = config.intra_op_threads
        return Placement(intra_op_threads=config.intra_op_threads, **chosen)

    def _stable_of(self, model: str) -> str | None:
        """The model's stable version now; before it is routed, the one it will get."""
        routing = self.dataplane.table.models.get(model)
        if routing is not None:
            return routing.stable
        configured = self.config.models.get(model)
        if configured is not None and configured.stable is not None:
            return configured.stable
        on_disk = [p.parent.name for p in (self.config.models_dir / model).glob("*/model.onnx")]
        return max((v for v in on_disk if v.isdigit()), key=int, default=None)

    def _publish(self, table: RoutingTable) -> None:
        self.dataplane.table = table
        follow_roles(
            ((mv.model, mv.version, mv.runner) for mv in self.registry.index()),
            lambda model: routing.stable if (routing := table.models.get(model)) else None,
        )
        for name, routing in table.models.items():
            rollout = routing.rollout
            if rollout is not None and self._salts.get(name) != rollout.salt:
                self._salts[name] = rollout.salt  # a new rollout: its shadow report starts at zero
                self.shadow.reset(name, rollout.candidate)

    def _audit_replaced(self, change: VersionChange) -> None:
        """A forced load replaced a version's file under the same number: say so."""
        self.rollouts.append_audit(
            change.model,
            "version_replaced",
            "repository",
            f"forced load: {change.describe()}",
            {
                "version": change.version,
                "old_sha256": change.old_sha256,
                "new_sha256": change.new_sha256,
            },
        )

    def _comparison_policy(self, model: str) -> ComparisonPolicy:
        settings = self.config.models.get(model) or ModelConfig()
        return ComparisonPolicy(
            atol=settings.shadow_atol,
            rtol=settings.shadow_rtol,
            outputs=settings.shadow_outputs,
            top_k=settings.shadow_top_k,
        )

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

    def _scheduling_policy(self, model: str) -> SchedulingPolicy:
        """The model's scheduling: its `[models.<name>]` keys, else the server-wide ones."""
        config = self.config
        settings = config.models.get(model) or ModelConfig()

        def pick(key: str) -> object:
            value = getattr(settings, key)
            return getattr(config, key) if value is None else value

        def limits(prefix: str) -> Limits:
            return Limits(
                instances=int(pick(f"{prefix}instances")),  # type: ignore[call-overload]
                max_queue_size=int(pick(f"{prefix}max_queue_size")),  # type: ignore[call-overload]
                queue_timeout_s=float(pick(f"{prefix}queue_timeout_seconds")),  # type: ignore[arg-type]
            )

        return SchedulingPolicy(
            stable=limits(""),
            candidate=limits("candidate_"),
            max_batch_size=int(pick("max_batch_size")),  # type: ignore[call-overload]
            max_queue_delay_s=int(pick("max_queue_delay_microseconds")) / 1e6,  # type: ignore[call-overload]
            candidate_fallback=pick("candidate_overload") == "fallback",
        )

    def _check_configured_stable(self) -> None:
        """A configured stable version must exist and be ready the first time it is used."""
        for name, settings in self.config.models.items():
            if settings.stable is None or name not in self.registry.models():
                continue
            try:
                self.rollouts.get(name)
                continue  # saved state wins over the config
            except ModelNotFound:
                pass
            ready = self.registry.ready_versions(name)
            if settings.stable not in ready:
                listed = ", ".join(sorted(ready, key=int)) or "none"
                raise ConfigError(
                    f'[models.{name}] stable = "{settings.stable}" is not a ready version '
                    f"(ready: {listed})"
                )

    def _adopt(self, model: str | None = None) -> None:
        """Give every model with ready versions a rollout state (new ones: stable = default)."""
        defaults: dict[str, str] = {}
        for name in [model] if model else self.registry.models():
            configured = self.config.models.get(name)
            stable = (configured.stable if configured else None) or self.registry.highest_ready(
                name
            )
            if stable is not None:
                defaults[name] = stable
        self.rollouts.adopt(defaults)
        self.rollouts.refresh_ready()

    # -- lifecycle --

    def start(self) -> int:
        """Listen, load and warm every model, then report ready. Returns the bound port."""
        limit = self.config.max_message_bytes
        guards = {INFERENCE_SERVICE: self.inference_auth, OUTCOMES_SERVICE: self.outcome_auth}
        auth = (
            [AuthInterceptor(guards, REPOSITORY_CONTROL)]
            if self.inference_auth.enabled or self.outcome_auth.enabled
            else []
        )
        server = grpc.server(
            # Admin calls are authenticated by the admin servicer itself (it needs the token's
            # name for the audit log); the auth interceptor exists only when inference needs a
            # token. The stream guard comes after it, so a refused call never takes a place.
            interceptors=[*auth, self.streams],
            thread_pool=futures.ThreadPoolExecutor(
                max_workers=self.config.workers, thread_name_prefix="grpc"
            ),
            # Admission control: calls beyond this are refused at once, not queued for a thread.
            maximum_concurrent_rpcs=self.config.call_limit,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 1 if self.config.reuse_port else 0),
            ],
        )
        servicer = InferenceServicer(
            self.registry,
            self.dataplane,
            self._ready.is_set,
            self.repository,
            self.admin_auth,
            self.config.max_message_bytes,
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        admin = AdminServicer(
            self.rollouts,
            self.admin_auth,
            self.dataplane,
            self.shadow,
            self.promotion,
            lambda model: (self.config.models.get(model) or ModelConfig()).promotion,
            self.repository,
            registry=self.registry,
            raw_routing_keys=self.config.shadow_report_raw_keys,
            notifier=self.notifier,
            fleet_shadow=self.fleet.telemetry.shadow_report if self.fleet is not None else None,
            fleet_readiness=self.fleet.repository.readiness if self.fleet is not None else None,
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)  # type: ignore[no-untyped-call]
        outcomes = OutcomesServicer(self.outcomes, lambda: self.dataplane.table, self.outcome_view)
        outcomes_pb2_grpc.add_OutcomesServiceServicer_to_server(outcomes, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        services = (INFERENCE_SERVICE, ADMIN_SERVICE, OUTCOMES_SERVICE)
        reflection.enable_server_reflection(
            (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{self.config.host}:{self.config.port}"
        try:
            self.port = self._listen(server, address)
        except RuntimeError:  # grpc's "Failed to bind to address"
            self.port = 0
        if self.port == 0:
            raise ConfigError(
                f"cannot listen on {address}: the port is in use (another canaryserve?) or the"
                " address is not this machine's; choose another with --port or `port` in the"
                " config file (0 picks a free port)"
            )
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        server.start()
        self._server = server
        self.registry.load_all()
        self._check_configured_stable()
        self._adopt()
        # Later loads: new models get a state, new versions become pinnable (never stable).
        self.registry.on_change(self._adopt)
        self.registry.on_replace(self._audit_replaced)
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
        self.notifier.start()
        self.alerts.start()
        self.promotion.start()
        self._ready.set()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
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

    def _exact_counts(self) -> list[tuple[str, str, int, int]]:
        return [
            (mv.model, mv.version, mv.stats.success_count, mv.stats.fail_count)
            for mv in self.registry.index()
            if mv.state is LoadState.READY
        ]

    def _usage(self) -> list[VersionUsage]:
        return [
            VersionUsage(
                mv.model,
                mv.version,
                mv.load_rss_bytes,
                cpu_seconds(mv.runner),
                isolated_restarts(mv.runner),
            )
            for mv in self.registry.index()
            if mv.state is LoadState.READY
        ]

    def _scheduling_samples(self) -> list[SchedulingSample]:
        samples = []
        for s in sorted(self.schedulers.all(), key=lambda s: (s.model, int(s.version))):
            with s.lock:
                st = s.stats
                samples.append(
                    SchedulingSample(
                        s.model,
                        s.version,
                        s.queued(),
                        s.running(),
                        st.queue_count,
                        st.queue_ns / 1e9,
                        st.executions,
                        dict(st.batch_rows),
                        st.rejected,
                        st.timeouts,
                        st.shadow_shed,
                        st.fallbacks,
                        sum(st.batch_infer_ns.values()) / 1e9,
                    )
                )
        return samples

    def _listen(self, server: grpc.Server, address: str) -> int:
        config = self.config
        if config.tls_cert is None or config.tls_key is None:
            return server.add_insecure_port(address)
        client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
        credentials = grpc.ssl_server_credentials(
            [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )
        return server.add_secure_port(address, credentials)

    def _set_health(self, status: int) -> None:
        for service in ("", INFERENCE_SERVICE, ADMIN_SERVICE, OUTCOMES_SERVICE):
            self.health.set(service, status)

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let calls in flight finish within `grace` seconds, then stop."""
        self._ready.clear()
        self.health.enter_graceful_shutdown()
        self.rollouts.close_subscriptions()  # open watch streams must not hold the drain
        if self._server is not None:
            grace = self.config.grace_seconds if grace is None else grace
            # Drain: calls still arriving, or queued for a thread, are refused UNAVAILABLE at
            # once (retryable) while the calls in flight finish, until the callers have gone
            # quiet (health already says NOT_SERVING) or the grace period ends; then gRPC
            # stops, cancelling only what reaches it in its own last moment.
            plane = self.dataplane
            plane.draining = True
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (
                plane.in_flight or time.monotonic() - plane.refused_at < _QUIET_S
            ):
                time.sleep(0.01)
            self._server.stop(max(0.0, deadline - time.monotonic())).wait()
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
