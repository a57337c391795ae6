"""Loading the TOML configuration: every key, the errors that name the key, per-model stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Config, ConfigError, ModelConfig, load_config, with_env_outcome_token

EVERY_KEY = """
models_dir = "/srv/models"
host = "0.0.0.0"
port = 9123
state_dir = "/var/lib/canaryserve"
workers = 3
max_concurrent_calls = 8
max_streams = 2
stream_idle_timeout_seconds = 5
max_message_bytes = 2048
grace_seconds = 2
intra_op_threads = 2
instances = 2
max_queue_size = 9
queue_timeout_seconds = 1.5
max_batch_size = 32
max_queue_delay_microseconds = 500
candidate_instances = 2
candidate_max_queue_size = 3
candidate_queue_timeout_seconds = 0.25
candidate_overload = "fail"
isolation = "process"
candidate_isolation = "process"
memory_budget_mb = 512
candidate_intra_op_threads = 2
candidate_arena_shrinkage = false
candidate_priority = "idle"
allow_pinning = false
inference_token = "inf"
rollback_grace_seconds = 30.5
shadow_workers = 2
shadow_queue_size = 8
shadow_timeout_seconds = 0.5
shadow_max_busy = 0.5
shadow_max_cpu = 0.75
metrics_port = 9124
stable_trace_ratio = 0.25
idle_trace_ratio = 0.5
promotion_tick_seconds = 0.5
shadow_report_raw_keys = true
otlp_endpoint = "collector:4317"
tls_cert = "/etc/cs/server.pem"
tls_key = "/etc/cs/server.key"
tls_client_ca = "/etc/cs/ca.pem"
store = "etcd://10.0.0.1:2379,10.0.0.2:2379/canaryserve"
processes = 4
reuse_port = true
leader_ttl_seconds = 9
outcome_join_max_requests = 500
outcome_join_ttl_seconds = 120.5
outcome_max_names = 4
poll_models_seconds = 2.5

[outcome_tokens]
shop = "tok-o"

[admin_tokens]
alice = "tok-a"
deploy-bot = "tok-b"

[notifications]
queue_size = 16

[models.classifier]
stable = "1"

[models.counter]
"""


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "canaryserve.toml"
    path.write_text(text)
    return path


def test_every_key_is_read_from_the_file(tmp_path: Path) -> None:
    config = load_config(toml(tmp_path, EVERY_KEY))
    assert config.models_dir == Path("/srv/models")
    assert config.host == "0.0.0.0"
    assert config.port == 9123
    assert config.state_dir == Path("/var/lib/canaryserve")
    assert config.workers == 3
    assert config.max_message_bytes == 2048
    assert config.grace_seconds == 2.0 and isinstance(config.grace_seconds, float)
    assert config.intra_op_threads == 2
    assert config.allow_pinning is False
    assert config.inference_token == "inf"
    assert config.rollback_grace_seconds == 30.5
    assert (config.shadow_workers, config.shadow_queue_size) == (2, 8)
    assert (config.shadow_timeout_seconds, config.shadow_max_busy) == (0.5, 0.5)
    assert (config.metrics_port, config.stable_trace_ratio) == (9124, 0.25)
    assert config.idle_trace_ratio == 0.5
    assert config.otlp_endpoint == "collector:4317"
    assert config.promotion_tick_seconds == 0.5
    assert config.shadow_report_raw_keys is True
    assert config.tls_cert == Path("/etc/cs/server.pem")
    assert config.tls_key == Path("/etc/cs/server.key")
    assert config.tls_client_ca == Path("/etc/cs/ca.pem")
    assert dict(config.admin_tokens) == {"alice": "tok-a", "deploy-bot": "tok-b"}
    assert config.store == "etcd://10.0.0.1:2379,10.0.0.2:2379/canaryserve"
    assert (config.processes, config.reuse_port, config.leader_ttl_seconds) == (4, True, 9)
    assert dict(config.outcome_tokens) == {"shop": "tok-o"}
    assert (config.outcome_join_max_requests, config.outcome_join_ttl_seconds) == (500, 120.5)
    assert config.outcome_max_names == 4
    assert config.poll_models_seconds == 2.5
    assert dict(config.models) == {
        "classifier": ModelConfig(stable="1"),
        "counter": ModelConfig(stable=None),
    }


def test_the_example_covers_every_config_field(tmp_path: Path) -> None:
    # A tripwire: a key added to Config must be added to EVERY_KEY (and docs/config.md).
    config = load_config(toml(tmp_path, EVERY_KEY))
    defaults = Config()
    unchanged = [
        name
        for name in Config.__dataclass_fields__
        if getattr(config, name) == getattr(defaults, name)
    ]
    assert unchanged == [], f"EVERY_KEY does not set {unchanged}: add them"


def test_every_per_model_key_is_read_from_the_file(tmp_path: Path) -> None:
    text = (
        "[models.classifier]\n"
        'stable = "1"\n'
        "shadow_atol = 0.25\n"
        "shadow_rtol = 0.5\n"
        'shadow_outputs = ["scores"]\n'
        "shadow_top_k = 2\n"
    )
    model = load_config(toml(tmp_path, text)).models["classifier"]
    assert model.stable == "1"
    assert (model.shadow_atol, model.shadow_rtol) == (0.25, 0.5)
    assert tuple(model.shadow_outputs) == ("scores",)
    assert model.shadow_top_k == 2


def test_no_file_gives_the_documented_defaults() -> None:
    config = load_config(None)
    assert (config.host, config.port, config.workers) == ("127.0.0.1", 8001, 16)
    assert config.state_dir == Path(".canaryserve")
    assert (config.grace_seconds, config.allow_pinning, config.inference_token) == (
        10.0,
        True,
        None,
    )
    assert dict(config.admin_tokens) == {}
    # The bundled repository's own defaults keep v2 stable beside its demo candidates 3 and 4.
    assert {name: m.stable for name, m in config.models.items()} == {"classifier": "2"}


def test_repository_defaults_are_overridden_key_by_key(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    (repo / "m").mkdir(parents=True)
    (repo / "m" / "config.toml").write_text('stable = "1"\nshadow_rtol = 0.5\n')
    config = load_config(None, {"models_dir": repo, "models": {"m": {"stable": "2"}}})
    assert (config.models["m"].stable, config.models["m"].shadow_rtol) == ("2", 0.5)


def test_overrides_win_over_the_file_and_none_is_skipped(tmp_path: Path) -> None:
    path = toml(tmp_path, 'host = "0.0.0.0"\nport = 9000\n')
    config = load_config(path, {"port": 0, "host": None, "state_dir": tmp_path})
    assert (config.host, config.port, config.state_dir) == ("0.0.0.0", 0, tmp_path)


def test_unknown_key_is_rejected_with_the_known_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, 'colour = "blue"\n'))
    message = str(info.value)
    assert "unknown config key 'colour'" in message
    for known in ("models_dir", "port", "admin_tokens", "tls_client_ca", "grace_seconds"):
        assert known in message


def test_unknown_per_model_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, '[models.classifier]\nstabel = "1"\n'))
    assert "[models.classifier]" in str(info.value) and "stabel" in str(info.value)
    assert "stable" in str(info.value)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('port = "8001"', "port"),
        ("port = 1.5", "port"),
        ("workers = true", "workers"),
        ('grace_seconds = "10"', "grace_seconds"),
        ("grace_seconds = false", "grace_seconds"),
        ('allow_pinning = "yes"', "allow_pinning"),
        ("host = 5", "host"),
        ("models_dir = 3", "models_dir"),
        ("inference_token = true", "inference_token"),
        ("tls_cert = []", "tls_cert"),
        ('admin_tokens = "tok-a"', "admin_tokens"),
        ("admin_tokens = { alice = 1 }", "admin_tokens"),
        ('admin_tokens = { alice = "" }', "admin_tokens"),
        ('models = "classifier"', "models"),
        ("models.classifier.stable = 1", "models.classifier"),
        ('models.classifier.stable = "v1"', "models.classifier"),
        ('models.classifier = "1"', "models.classifier"),
    ],
)
def test_wrong_type_is_rejected_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, line + "\n"))
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("port = 70000", "port"),
        ("port = -1", "port"),
        ("workers = 0", "workers"),
        ("max_message_bytes = 10", "max_message_bytes"),
        ("grace_seconds = -1", "grace_seconds"),
        ("intra_op_threads = -2", "intra_op_threads"),
        ("outcome_join_max_requests = 0", "outcome_join_max_requests"),
        ("outcome_max_names = 0", "outcome_max_names"),
        ("outcome_join_ttl_seconds = 0", "outcome_join_ttl_seconds"),
    ],
)
def test_out_of_range_value_is_rejected_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, line + "\n"))
    assert f"'{key}'" in str(info.value)


def test_tls_cert_without_tls_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, 'tls_cert = "/etc/cs/server.pem"\n'))
    assert "'tls_cert' and 'tls_key' go together" in str(info.value)
    with pytest.raises(ConfigError):
        load_config(toml(tmp_path, 'tls_key = "/etc/cs/server.key"\n'))


def test_tls_client_ca_without_a_server_certificate_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, 'tls_client_ca = "/etc/cs/ca.pem"\n'))
    assert "tls_client_ca" in str(info.value)


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, "port = \n"))
    assert "not valid TOML" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert "cannot read config file" in str(info.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('isolation = "container"', '\'isolation\' must be "none" or "process"'),
        ('[models.classifier]\ncandidate_isolation = "yes"', "[models.classifier] 'candidate"),
        ("memory_budget_mb = 100", "at least 256 (the runtime alone needs about 110 MiB)"),
        ("[models.classifier]\nmemory_budget_mb = -1", "[models.classifier] 'memory_budget_mb'"),
        ("candidate_intra_op_threads = -1", "'candidate_intra_op_threads' must be >= 0"),
        ('candidate_arena_shrinkage = "no"', "'candidate_arena_shrinkage' must be true or false"),
        ('candidate_priority = "high"', '\'candidate_priority\' must be "normal", "low" or "idle"'),
        ("[models.classifier]\ncandidate_priority = 5", "priority' must be a string, got 5"),
    ],
)
def test_containment_keys_are_checked(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, text + "\n"))
    assert says in str(info.value)


def test_containment_keys_per_model_override_the_server_wide_ones(tmp_path: Path) -> None:
    config = load_config(
        toml(
            tmp_path, 'candidate_isolation = "process"\n[models.classifier]\nmemory_budget_mb = 0\n'
        )
    )
    assert config.candidate_isolation == "process" and config.memory_budget_mb == 2048
    assert config.models["classifier"].memory_budget_mb == 0
    assert config.models["classifier"].candidate_isolation is None  # the server-wide key


def test_the_outcome_token_comes_from_the_environment_too() -> None:
    config = with_env_outcome_token(Config(), {"CANARYSERVE_OUTCOME_TOKEN": "o-1"})
    assert dict(config.outcome_tokens) == {"env": "o-1"}
    assert with_env_outcome_token(Config(), {}) == Config()
    with pytest.raises(ConfigError, match="blank"):
        with_env_outcome_token(Config(), {"CANARYSERVE_OUTCOME_TOKEN": "  "})
