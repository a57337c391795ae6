"""The server's configuration: one typed, immutable object, loaded and validated once at start.

Sources, later wins: built-in defaults, a TOML file (`--config`), command-line flags.
Every key is documented on its field below and in docs/config.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from protos.wire import ADMIN_TOKEN_ENV, DEFAULT_PORT, DEFAULT_STATE_DIR, OUTCOME_TOKEN_ENV
from server.coercion import coerce
from server.notify.settings import (
    NotificationConfig,
    NotificationConfigError,
    parse_notifications,
)
from server.promotion.policy import Policy

__all__ = [
    "ENV_TOKEN_NAME",
    "WARMUP_INPUTS",
    "Config",
    "ConfigError",
    "ModelConfig",
    "WarmupConfig",
    "bundled_models_dir",
    "load_config",
    "with_env_admin_token",
    "with_env_outcome_token",
]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and what is wrong."""


def bundled_models_dir() -> Path:
    """The example model repository shipped with canaryserve."""
    import models

    return Path(models.__file__).resolve().parent


#: What a configured warm-up sample is made of (server.serving.warmup.INPUTS).
WARMUP_INPUTS = ("zeros", "random", "file")


@dataclass(frozen=True)
class WarmupConfig:
    """How each version of a model is warmed before it serves (`[models.<name>.warmup]`, like
    Triton's model_warmup). A configured sample that fails makes the version UNAVAILABLE."""

    inputs: str = "zeros"
    """The sample: "zeros" (empty strings for BYTES), "random" (floats standard normal,
    integers 0..9, booleans; BYTES fall back to empty strings, as in Triton) or "file"."""
    file: str | None = None
    """With inputs = "file": an .npz archive, relative to the model directory, holding one
    array per model input, named after it (bytes or str arrays for BYTES)."""
    batch_size: int = 1
    """Rows of the sample: a variable first dimension gets this size (a file's arrays are
    repeated this many times along it); the model's inputs must have one when above 1."""
    count: int = 1
    """How many times the sample runs."""


@dataclass(frozen=True)
class ModelConfig:
    """Settings of one model, from a `[models.<name>]` table."""

    stable: str | None = None
    """Version that is stable when the server first sees the model (default: the highest)."""
    shadow_atol: float = 1e-5
    """Shadow comparison: absolute tolerance before an output counts as different."""
    shadow_rtol: float = 1e-3
    """Shadow comparison: tolerance relative to the stable answer."""
    shadow_outputs: tuple[str, ...] = ()
    """Shadow comparison: outputs whose differences count as disagreement (empty: all)."""
    shadow_top_k: int = 3
    """Shadow comparison: k of the top-k overlap reported for class-score outputs."""
    promotion: Policy | None = None
    """Promotion policy of automatic rollouts (`[models.<name>.promotion]`, docs/promotion.md)."""
    warmup: WarmupConfig | None = None
    """Warm-up sample of every version (`[models.<name>.warmup]`). Without it, zeros: a model
    that refuses them is served unwarmed, with a warning in the log."""
    # Scheduling (docs/scheduling.md): None takes the server-wide key of the same name.
    instances: int | None = None
    max_queue_size: int | None = None
    queue_timeout_seconds: float | None = None
    max_batch_size: int | None = None
    max_queue_delay_microseconds: int | None = None
    candidate_instances: int | None = None
    candidate_max_queue_size: int | None = None
    candidate_queue_timeout_seconds: float | None = None
    candidate_overload: str | None = None
    # Containment (docs/scheduling.md): None takes the server-wide key of the same name.
    isolation: str | None = None
    candidate_isolation: str | None = None
    memory_budget_mb: int | None = None
    candidate_intra_op_threads: int | None = None
    candidate_arena_shrinkage: bool | None = None


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


_TABLES = ("models", "notifications")
_SCALARS = {f.name: f for f in dataclasses.fields(Config) if f.name not in _TABLES}
_MODEL_KEYS = {f.name for f in dataclasses.fields(ModelConfig)}
_WARMUP_KEYS = {f.name for f in dataclasses.fields(WarmupConfig)}
_SCHEDULING_KEYS = (
    "instances",
    "max_queue_size",
    "queue_timeout_seconds",
    "max_batch_size",
    "max_queue_delay_microseconds",
    "candidate_instances",
    "candidate_max_queue_size",
    "candidate_queue_timeout_seconds",
    "candidate_overload",
)
_PLACEMENT_KEYS = (
    "isolation",
    "candidate_isolation",
    "memory_budget_mb",
    "candidate_intra_op_threads",
    "candidate_arena_shrinkage",
)


def _coerce(key: str, value: Any, kind: Any) -> Any:
    return coerce(f"'{key}'", value, kind, ConfigError)


def _models(table: Any) -> Mapping[str, ModelConfig]:
    if not isinstance(table, dict):
        raise ConfigError("'models' must be a table of [models.<name>] tables")
    out: dict[str, ModelConfig] = {}
    for name, body in table.items():
        if not isinstance(body, dict):
            raise ConfigError(f"[models.{name}] must be a table")
        unknown = set(body) - _MODEL_KEYS
        if unknown:
            raise ConfigError(
                f"[models.{name}] has unknown key(s) {sorted(unknown)}; "
                f"known: {sorted(_MODEL_KEYS)}"
            )
        stable = body.get("stable")
        if stable is not None and not (isinstance(stable, str) and stable.isdigit()):
            raise ConfigError(f'[models.{name}] stable must be a version string like "1"')
        values: dict[str, Any] = {"stable": stable}
        for key in ("shadow_atol", "shadow_rtol"):
            if key in body:
                values[key] = _coerce(f"[models.{name}] {key}", body[key], "float")
        if "shadow_top_k" in body:
            top_k = _coerce(f"[models.{name}] shadow_top_k", body["shadow_top_k"], "int")
            if top_k < 1:
                raise ConfigError(f"[models.{name}] shadow_top_k must be at least 1")
            values["shadow_top_k"] = top_k
        if "shadow_outputs" in body:
            outputs = body["shadow_outputs"]
            if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
                raise ConfigError(f"[models.{name}] shadow_outputs must be a list of output names")
            values["shadow_outputs"] = tuple(outputs)
        if "promotion" in body:
            values["promotion"] = _promotion(name, body["promotion"])
        if "warmup" in body:
            values["warmup"] = _warmup(name, body["warmup"])
        for key in _SCHEDULING_KEYS + _PLACEMENT_KEYS:
            if key in body:
                values[key] = _coerce(f"[models.{name}] {key}", body[key], _SCALARS[key].type)
        out[name] = ModelConfig(**values)
    return MappingProxyType(out)


def _promotion(model: str, table: Any) -> Policy:
    if not isinstance(table, dict):
        raise ConfigError(f"[models.{model}.promotion] must be a table (docs/promotion.md)")
    try:
        return Policy.from_dict(table)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[models.{model}.promotion]: {exc}") from None


def _warmup(model: str, table: Any) -> WarmupConfig:
    where = f"[models.{model}.warmup]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table (docs/config.md)")
    unknown = set(table) - _WARMUP_KEYS
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) {sorted(unknown)}; known: {sorted(_WARMUP_KEYS)}"
        )
    inputs = _coerce(f"{where} inputs", table.get("inputs", "zeros"), "str")
    if inputs not in WARMUP_INPUTS:
        allowed = ", ".join(f'"{i}"' for i in WARMUP_INPUTS)
        raise ConfigError(f"{where} inputs must be one of {allowed}, got {inputs!r}")
    file = table.get("file")
    if inputs == "file":
        if file is None:
            raise ConfigError(f'{where} inputs = "file" needs file = "<name>.npz"')
        file = _coerce(f"{where} file", file, "str")
        path = Path(file)
        if path.is_absolute() or ".." in path.parts or path.suffix != ".npz":
            raise ConfigError(
                f"{where} file must be an .npz path inside the model directory, "
                f"relative to it, got {file!r}"
            )
    elif file is not None:
        raise ConfigError(f'{where} file is read only with inputs = "file" (inputs is {inputs!r})')
    counts: dict[str, int] = {}
    for key in ("batch_size", "count"):
        counts[key] = _coerce(f"{where} {key}", table.get(key, 1), "int")
        if counts[key] < 1:
            raise ConfigError(f"{where} {key} must be at least 1, got {counts[key]}")
    return WarmupConfig(inputs=inputs, file=file, **counts)


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` (None values are skipped)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        values.update(data)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in _TABLES:
            continue
        spec = _SCALARS.get(key)
        if spec is None:
            raise ConfigError(f"unknown config key '{key}'; known keys: {sorted(_SCALARS)}")
        kwargs[key] = _coerce(key, value, spec.type)
    models_dir = kwargs.get("models_dir") or bundled_models_dir()
    if "notifications" in values:
        try:
            kwargs["notifications"] = parse_notifications(values["notifications"])
        except NotificationConfigError as exc:
            raise ConfigError(str(exc)) from None
    kwargs["models"] = _models(_merge(_repository_defaults(models_dir), values.get("models", {})))
    config = Config(**kwargs)
    _validate(config)
    return config


#: A model directory may carry its own defaults: `<models_dir>/<model>/config.toml`, holding the
#: keys of a `[models.<name>]` table. The server's config overrides them key by key.
MODEL_DEFAULTS_FILE = "config.toml"


def _repository_defaults(models_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(Path(models_dir).glob(f"*/{MODEL_DEFAULTS_FILE}")):
        try:
            out[path.parent.name] = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read model defaults {path}: {exc}") from exc
    return out


def _merge(defaults: dict[str, Any], configured: Any) -> Any:
    if not isinstance(configured, dict):
        return configured  # _models() reports the type error
    merged = {name: dict(table) for name, table in defaults.items()}
    for name, table in configured.items():
        if isinstance(table, dict) and isinstance(merged.get(name), dict):
            merged[name].update(table)
        else:
            merged[name] = table
    return merged


#: The name (in the audit log) of the admin token taken from `CANARYSERVE_ADMIN_TOKEN`.
ENV_TOKEN_NAME = "env"


def with_env_admin_token(config: Config, environ: Mapping[str, str]) -> Config:
    """`config` plus the admin token in `environ[CANARYSERVE_ADMIN_TOKEN]`, when set, named
    "env" (the server accepts it; the CLI sends the same variable)."""
    token = environ.get(ADMIN_TOKEN_ENV, "")
    if not token:
        return config
    if not token.strip():
        raise ConfigError(f"{ADMIN_TOKEN_ENV} is set but blank")
    tokens = MappingProxyType({**config.admin_tokens, ENV_TOKEN_NAME: token})
    return dataclasses.replace(config, admin_tokens=tokens)


def with_env_outcome_token(config: Config, environ: Mapping[str, str]) -> Config:
    """`config` plus the outcome token in `environ[CANARYSERVE_OUTCOME_TOKEN]`, named "env"."""
    token = environ.get(OUTCOME_TOKEN_ENV, "")
    if not token:
        return config
    if not token.strip():
        raise ConfigError(f"{OUTCOME_TOKEN_ENV} is set but blank")
    tokens = MappingProxyType({**config.outcome_tokens, ENV_TOKEN_NAME: token})
    return dataclasses.replace(config, outcome_tokens=tokens)


def _validate(config: Config) -> None:
    if config.outcome_join_max_requests < 1 or config.outcome_max_names < 1:
        raise ConfigError("'outcome_join_max_requests' and 'outcome_max_names' must be >= 1")
    if not config.outcome_join_ttl_seconds > 0:
        got = config.outcome_join_ttl_seconds
        raise ConfigError(f"'outcome_join_ttl_seconds' must be > 0, got {got}")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"'port' must be 0..65535, got {config.port}")
    if not -1 <= config.metrics_port <= 65535:
        raise ConfigError(f"'metrics_port' must be -1 (off) or 0..65535, got {config.metrics_port}")
    if config.workers < 1:
        raise ConfigError(f"'workers' must be at least 1, got {config.workers}")
    streams, calls = config.stream_limit, config.call_limit
    if not 0 <= streams < config.workers:
        raise ConfigError(
            f"'max_streams' must be 0..{config.workers - 1}, below 'workers' "
            f"({config.workers}): each stream holds a worker thread while it is open, and unary "
            f"calls need one too; got {streams}"
        )
    if calls <= streams:
        raise ConfigError(
            f"'max_concurrent_calls' must exceed 'max_streams' ({streams}), or open streams "
            f"would leave no room for unary calls; got {calls}"
        )
    if not config.stream_idle_timeout_seconds > 0:
        got = config.stream_idle_timeout_seconds
        raise ConfigError(f"'stream_idle_timeout_seconds' must be > 0, got {got}")
    if config.max_message_bytes < 1024:
        got = config.max_message_bytes
        raise ConfigError(f"'max_message_bytes' must be at least 1024, got {got}")
    if config.grace_seconds < 0:
        raise ConfigError(f"'grace_seconds' must be >= 0, got {config.grace_seconds}")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("'tls_cert' and 'tls_key' go together")
    if config.tls_client_ca is not None and config.tls_cert is None:
        raise ConfigError("'tls_client_ca' (mTLS) needs 'tls_cert' and 'tls_key'")
    if not 0 < config.shadow_max_cpu <= 1:
        raise ConfigError(f"'shadow_max_cpu' must be in (0, 1], got {config.shadow_max_cpu}")
    if config.shadow_max_busy < 0:
        raise ConfigError(
            f"'shadow_max_busy' must be >= 0 (0: no budget), got {config.shadow_max_busy}"
        )
    if config.shadow_workers < 1 or config.shadow_queue_size < 1:
        raise ConfigError("'shadow_workers' and 'shadow_queue_size' must be at least 1")
    for name in ("stable_trace_ratio", "idle_trace_ratio"):
        ratio = getattr(config, name)
        if not 0 < ratio <= 1:
            raise ConfigError(f"'{name}' must be in (0, 1], got {ratio}")
    if config.store and not config.store.startswith("etcd://"):
        raise ConfigError(
            f"'store' must be empty (SQLite in state_dir) or etcd://HOST:PORT/PREFIX,"
            f" got {config.store!r}"
        )
    if not 1 <= config.processes <= 64:
        raise ConfigError(f"'processes' must be 1..64, got {config.processes}")
    if config.poll_models_seconds < 0:
        raise ConfigError(
            f"'poll_models_seconds' must be >= 0 (0: off), got {config.poll_models_seconds}"
        )
    if config.leader_ttl_seconds < 2:
        raise ConfigError(
            f"'leader_ttl_seconds' must be at least 2, got {config.leader_ttl_seconds}"
        )
    _validate_scheduling("", config)
    for name, model in config.models.items():
        _validate_scheduling(f"[models.{name}] ", model)
    if config.intra_op_threads < 0:
        raise ConfigError(f"'intra_op_threads' must be >= 0, got {config.intra_op_threads}")
    _validate_placement("", config)
    for name, model in config.models.items():
        _validate_placement(f"[models.{name}] ", model)


#: A budget below this cannot hold the runtime itself (about 110 MiB before any model).
MIN_MEMORY_BUDGET_MB = 256


def _validate_placement(where: str, settings: Config | ModelConfig) -> None:
    for key in ("isolation", "candidate_isolation"):
        value = getattr(settings, key)
        if value is not None and value not in ("none", "process"):
            raise ConfigError(f'{where}\'{key}\' must be "none" or "process", got {value!r}')
    budget = settings.memory_budget_mb
    if budget is not None and budget != 0 and budget < MIN_MEMORY_BUDGET_MB:
        raise ConfigError(
            f"{where}'memory_budget_mb' must be 0 (no limit) or at least {MIN_MEMORY_BUDGET_MB}"
            f" (the runtime alone needs about 110 MiB), got {budget}"
        )
    threads = settings.candidate_intra_op_threads
    if threads is not None and threads < 0:
        raise ConfigError(f"{where}'candidate_intra_op_threads' must be >= 0, got {threads}")


def _validate_scheduling(where: str, settings: Config | ModelConfig) -> None:
    for key in ("instances", "candidate_instances"):
        value = getattr(settings, key)
        if value is not None and value < 1:
            raise ConfigError(f"{where}'{key}' must be at least 1, got {value}")
    for key in (
        "max_queue_size",
        "candidate_max_queue_size",
        "max_batch_size",
        "max_queue_delay_microseconds",
        "queue_timeout_seconds",
        "candidate_queue_timeout_seconds",
    ):
        value = getattr(settings, key)
        if value is not None and value < 0:
            raise ConfigError(f"{where}'{key}' must be >= 0, got {value}")
    overload = settings.candidate_overload
    if overload is not None and overload not in ("fallback", "fail"):
        raise ConfigError(
            f'{where}\'candidate_overload\' must be "fallback" or "fail", got {overload!r}'
        )
