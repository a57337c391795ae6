"""The server-wide settings: `Config`, one typed, immutable object with a docstring per key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from protos.wire import DEFAULT_PORT, DEFAULT_STATE_DIR
from server.config.model import ModelConfig
from server.notify.settings import NotificationConfig

__all__ = ["Config", "bundled_models_dir"]


def bundled_models_dir() -> Path:
    """The example model repository shipped with canaryserve."""
    import models

    return Path(models.__file__).resolve().parent


@dataclass(frozen=True)
class Config:
    """Everything the server reads at start. Nothing else reads the environment."""

    models_dir: Path = field(default_factory=bundled_models_dir)
    """Model repository: `<models_dir>/<model>/<version>/model.onnx`."""
    host: str = "127.0.0.1"
    """Address the gRPC server listens on (`0.0.0.0` for every interface)."""
    port: int = DEFAULT_PORT
    """gRPC port for inference and admin; 0 picks a free port (printed at start)."""
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    """Directory for durable state (rollouts, audit log, generated token)."""
    store: str = ""
    """Where rollout state and the audit log live. Empty: SQLite in `state_dir` (processes
    sharing the directory follow each other's writes within a second).
    `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`: etcd, shared by a fleet (docs/fleet.md)."""
    processes: int = 1
    """Serving processes on one port (SO_REUSEPORT), each loading the models once and sharing
    the configured store; metrics ports count up from `metrics_port` (docs/fleet.md)."""
    reuse_port: bool = False
    """Listen with SO_REUSEPORT, so that several processes share the port (`processes` sets
    it for its children)."""
    poll_models_seconds: float = 0.0
    """Poll mode (Triton's): every this many seconds, load the model and version directories
    that appeared in models_dir; they are never routed to until a rollout names them. 0: off
    (load and unload through the API)."""
    leader_ttl_seconds: int = 5
    """With an etcd store: the promotion leader's lease; when the leader dies another replica
    takes over within about this long."""
    workers: int = 16
    """Threads serving gRPC calls; bounds the calls in progress at once."""
    max_concurrent_calls: int | None = None
    """Calls admitted at once, running or waiting for a thread; one more is refused at once with
    RESOURCE_EXHAUSTED. Default: 4 x workers. Must exceed max_streams."""
    max_streams: int | None = None
    """Streaming calls open at once (ModelStreamInfer, WatchRollouts, health Watch,
    reflection); one more is refused at once with RESOURCE_EXHAUSTED. A stream holds a worker
    thread for its whole life, so this must stay below `workers`: unary calls then always find
    a thread. Default: a quarter of `workers`, at least 1 (none when workers is 1)."""
    stream_idle_timeout_seconds: float = 60.0
    """A request stream (ModelStreamInfer) that sends nothing, or reads none of its answers,
    for this long is ended with DEADLINE_EXCEEDED, freeing its thread and its place."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest request or response message; bigger ones fail with RESOURCE_EXHAUSTED. It also
    bounds what a request may declare: its input shapes together, counting zero dimensions as
    1, must fit it (else INVALID_ARGUMENT, before the model runs), outputs over it are
    refused before they are encoded, and a ModelStreamInfer answer over it becomes that
    message's error_message (the stream goes on)."""
    grace_seconds: float = 10.0
    """On SIGTERM/SIGINT, how long calls in flight may take to finish before being cancelled."""
    intra_op_threads: int = 1
    """onnxruntime threads per session run (0: onnxruntime's default, one per core). One thread
    per run, with the version's `instances` running side by side, measured fastest on 2 cores
    (docs/scheduling.md): a pool per session competes with the gRPC threads for the cores."""
    instances: int = 1
    """Runs of a stable version in progress at once (its concurrency slots); more requests
    wait in the version's queue. Per model: `[models.<name>] instances`."""
    max_queue_size: int = 64
    """Requests a stable version queues at most; one more fails at once with
    RESOURCE_EXHAUSTED."""
    queue_timeout_seconds: float = 5.0
    """Longest wait in a stable version's queue before DEADLINE_EXCEEDED (0: no limit)."""
    max_batch_size: int = 16
    """Rows the scheduler may merge into one run of a model that can batch (the first dimension
    of every input and output is dynamic); 0 turns dynamic batching off."""
    max_queue_delay_microseconds: int = 4000
    """Longest a batch's leader waits for requests already on their way to the version. It
    waits only for a model whose run costs at least 150 µs of CPU while requests overlap, and
    stops as soon as the requests lately seen at once are here (docs/scheduling.md); 0: never
    waits (a batch is what queued while the previous run was busy)."""
    candidate_instances: int = 1
    """Runs of a candidate (any version but stable) in progress at once."""
    candidate_max_queue_size: int = 4
    """Requests a candidate queues at most; past it a candidate request is overloaded."""
    candidate_queue_timeout_seconds: float = 0.05
    """Longest wait in a candidate's queue before the request is overloaded."""
    candidate_overload: str = "fallback"
    """What an overloaded candidate request does: "fallback" (stable serves it, the response
    says route_reason=candidate_overloaded and the candidate's window counts an error) or
    "fail" (the caller gets RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED)."""
    isolation: str = "none"
    """"process": every version runs its session in a process of its own (shared-memory
    tensors, its own memory limit, restarted when it dies); "none": in the server's process.
    Per model: `[models.<name>] isolation`."""
    candidate_isolation: str = "none"
    """"process": a version runs in a process of its own while it is a candidate (not stable);
    a promoted version moves into the server's process in the background."""
    memory_budget_mb: int = 2048
    """Memory limit (RLIMIT_DATA, MiB) of an isolated version's process: a run that needs more
    fails for that version alone (RESOURCE_EXHAUSTED; a candidate's request falls back to
    stable). 0: no limit. Versions in the server's process have no enforced budget."""
    candidate_intra_op_threads: int | None = None
    """onnxruntime threads per run of a candidate (any version but stable). Default: the same as
    `intra_op_threads`, so a promotion rebuilds nothing; when they differ, a role change builds
    the version's session anew for its new role in the background and swaps it in."""
    candidate_arena_shrinkage: bool = True
    """A candidate's runs hand back the memory onnxruntime's arena grew by, so a candidate that
    needs 1 GiB for one request does not keep 1 GiB."""
    candidate_priority: str = "normal"
    """OS scheduling priority of a candidate's in-process runs: "normal" (the request's own
    thread, as stable), "low" (threads of their own at nice 10) or "idle" (threads of their
    own in SCHED_IDLE: only cores nothing else wants). Lower, stable's calls get the cores
    first, but the candidate's latency then measures the server's load as much as the
    candidate, and its gates can roll a good candidate back on a busy machine
    (docs/scheduling.md)."""
    allow_pinning: bool = True
    """Whether a request's explicit `model_version` selects that version."""
    models: Mapping[str, ModelConfig] = field(default_factory=lambda: MappingProxyType({}))
    """Per-model settings, from `[models.<name>]` tables."""
    admin_tokens: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Admin bearer tokens by name (the name goes to the audit log). Empty: one is generated
    into `<state_dir>/admin.token` on first start. `CANARYSERVE_ADMIN_TOKEN` adds one named
    "env"."""
    inference_token: str | None = None
    """When set, inference calls need `authorization: Bearer <this token>` too."""
    outcome_tokens: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Bearer tokens of the Outcomes service (outcome reports, `canaryserve ab`) by name.
    Empty: the service is open. `CANARYSERVE_OUTCOME_TOKEN` adds one named "env"."""
    outcome_join_max_requests: int = 100_000
    """Requests (those carrying an id) whose serving version is remembered for outcome
    reports, the oldest forgotten first: about 21 MB at the default."""
    outcome_join_ttl_seconds: float = 3600.0
    """How long a request's serving version is remembered for outcome reports by request id;
    later reports join by routing key (docs/outcomes.md)."""
    outcome_max_names: int = 32
    """Outcome names kept per model; a report of one more name is RESOURCE_EXHAUSTED."""
    rollback_grace_seconds: float = 600.0
    """After a promotion, how long `rollout undo` may restore the previous stable in one
    audited change (every version on disk stays loaded; later, going back is a new rollout)."""
    shadow_workers: int = 1
    """Threads running shadow candidates, separate from the request threads."""
    shadow_queue_size: int = 64
    """Shadow jobs waiting at most; when full, new ones are dropped and counted."""
    shadow_timeout_seconds: float = 2.0
    """A shadow job older than this is skipped and counted as a timeout."""
    shadow_max_busy: float = 0.0
    """Seconds of shadow work allowed per second of wall time (all shadow workers together),
    past which sampled requests are dropped; 0 (the default): no budget. Shadow runs are the
    candidate scheduler's lowest class and are shed when the stable version has requests
    waiting, so they use idle capacity only (docs/scheduling.md)."""
    shadow_max_cpu: float = 0.5
    """Shadow work runs on idle capacity: while this process (request threads and shadow
    workers together) used more than this share of its usable cores over the last 50 ms,
    sampled requests are dropped (reason `cpu_busy`) instead of compared. 1.0: never."""
    metrics_port: int = 8002
    """Port of the Prometheus text endpoint `/metrics` (on `host`); 0 picks a free port, -1
    turns it off."""
    stable_trace_ratio: float = 0.1
    """Share of stable-version inference calls traced while the model has a rollout (candidate
    calls: all). Windows scale counts by the inverse; a span costs tens of microseconds, so
    this keeps tracing off most of the hot path while the stable baseline still gets
    thousands of samples per minute. A call whose W3C traceparent is sampled is traced
    anyway, outside the windows."""
    idle_trace_ratio: float = 0.01
    """Share of inference calls traced for a model with no rollout (calls the router sends to
    stable because there is none; pinned calls use stable_trace_ratio). Promotion reads the
    windows only during a rollout, but when the stable version saw too few calls in the
    current step its baseline looks back 10 minutes, which early in a rollout reaches into
    this sparser period. Exact request counts stay in ModelStatistics and
    `canaryserve_inference_requests_total`."""
    shadow_report_raw_keys: bool = False
    """Whether the shadow report (`canaryserve shadow`, the admin GetShadowReport) shows the
    worst disagreements' raw routing keys; by default it shows their hashes (`routing_key_hash`,
    the digest spans carry as `canary.routing_key.hash`), so the report reveals no more than a
    trace does."""
    promotion_tick_seconds: float = 1.0
    """How often the promotion controller looks for rollouts whose interval has elapsed."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector for traces (e.g. "localhost:4317"); needs the `otlp` extra."""
    tls_cert: Path | None = None
    """Server certificate chain (PEM). With tls_key, the server speaks TLS only."""
    tls_key: Path | None = None
    """Server private key (PEM)."""
    tls_client_ca: Path | None = None
    """CA bundle (PEM) for client certificates: when set, clients must present one (mTLS)."""
    notifications: NotificationConfig = field(default_factory=NotificationConfig)
    """Webhooks, the pre-promotion hook and stable alerts (`[notifications]`,
    docs/notifications.md)."""

    @property
    def call_limit(self) -> int:
        """`max_concurrent_calls`, or its default."""
        if self.max_concurrent_calls is not None:
            return self.max_concurrent_calls
        return 4 * self.workers

    @property
    def stream_limit(self) -> int:
        """`max_streams`, or its default."""
        if self.max_streams is not None:
            return self.max_streams
        return max(1, self.workers // 4) if self.workers > 1 else 0
