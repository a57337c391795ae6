"""Loading the TOML configuration: every key, the errors that name the key, per-model stable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.inference import InferenceClient
from server.app import App
from server.config import Config, ConfigError, ModelConfig, load_config
from tests.conftest import make_repository

EVERY_KEY = """
models_dir = "/srv/models"
host = "0.0.0.0"
port = 9123
state_dir = "/var/lib/canaryserve"
workers = 3
max_message_bytes = 2048
grace_seconds = 2
intra_op_threads = 2
instances = 2
max_queue_size = 9
queue_timeout_seconds = 1.5
max_batch_size = 16
candidate_instances = 2
candidate_max_queue_size = 3
candidate_queue_timeout_seconds = 0.25
candidate_overload = "fail"
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
otlp_endpoint = "collector:4317"
tls_cert = "/etc/cs/server.pem"
tls_key = "/etc/cs/server.key"
tls_client_ca = "/etc/cs/ca.pem"

[admin_tokens]
alice = "tok-a"
deploy-bot = "tok-b"

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
    assert config.tls_cert == Path("/etc/cs/server.pem")
    assert config.tls_key == Path("/etc/cs/server.key")
    assert config.tls_client_ca == Path("/etc/cs/ca.pem")
    assert dict(config.admin_tokens) == {"alice": "tok-a", "deploy-bot": "tok-b"}
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


def test_configured_stable_is_the_stable_version_at_first_start(tmp_path: Path) -> None:
    path = toml(tmp_path, '[admin_tokens]\nops = "t0k"\n\n[models.classifier]\nstable = "1"\n')
    config = load_config(
        path,
        {
            "models_dir": make_repository(tmp_path),
            "state_dir": tmp_path / "state",
            "port": 0,
            "metrics_port": 0,
            "intra_op_threads": 1,
        },
    )
    app = App(config)
    app.start()
    target = f"127.0.0.1:{app.port}"
    try:
        with InferenceClient(target) as client:
            x = np.zeros((1, 4), dtype=np.float32)
            answer = client.infer("classifier", {"input": x})
            assert (answer.version, answer.reason) == ("1", "no_rollout")
            assert client.infer("classifier", {"input": x}, routing_key="user-1").version == "1"
            assert client.infer("counter", {"ids": np.ones((1, 2), np.int64)}).version == "1"
        with AdminClient(open_channel(target), "t0k") as admin:
            assert admin.get("classifier").stable_version == "1"
            # So version 2 can be the candidate.
            assert (
                admin.start("classifier", "2", canary_ppm=10_000).rollout.candidate_version == "2"
            )
    finally:
        app.stop(0)


def test_configured_stable_that_does_not_exist_fails_start_naming_it(tmp_path: Path) -> None:
    # Otherwise the server persists stable "7" for classifier at first start (saved states win
    # over the config later) and every request without a version fails NOT_FOUND.
    config = load_config(
        toml(tmp_path, '[models.classifier]\nstable = "7"\n'),
        {
            "models_dir": make_repository(tmp_path),
            "state_dir": tmp_path / "state",
            "port": 0,
            "metrics_port": 0,
            "intra_op_threads": 1,
            "admin_tokens": {"ops": "t0k"},
        },
    )
    app = App(config)
    try:
        with pytest.raises(Exception, match=r"classifier.*[\"']7[\"']"):
            app.start()
    finally:
        app.stop(0)


def test_serve_with_a_bad_config_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = toml(tmp_path, 'workers = "many"\n')
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "serve", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "'workers' must be an integer" in done.stderr
