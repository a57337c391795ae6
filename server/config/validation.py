"""The checks a loaded configuration must pass: ranges, keys that go together, choices."""

from __future__ import annotations

from server.config.errors import ConfigError
from server.config.model import ModelConfig
from server.config.settings import Config

__all__ = ["MIN_MEMORY_BUDGET_MB", "validate"]


def validate(config: Config) -> None:
    """Raise ConfigError naming the first key whose value the server cannot use."""
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
    priority = settings.candidate_priority
    if priority is not None and priority not in ("normal", "low", "idle"):
        raise ConfigError(
            f'{where}\'candidate_priority\' must be "normal", "low" or "idle", got {priority!r}'
        )


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
