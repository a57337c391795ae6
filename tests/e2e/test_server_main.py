"""The server's own entry point, `python -m server`: flags, the environment's admin token,
exit codes, and draining on SIGINT (SIGTERM through `canaryserve serve`: test_restart.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.admin import AdminClient
from client.channel import open_channel
from server.__main__ import build_parser, config_from
from server.config import ConfigError
from tests.conftest import make_repository

LISTENING = re.compile(r"canaryserve listening on 127\.0\.0\.1:(\d+)")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    return {**env, **extra}


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "canaryserve.toml"
    path.write_text('port = 9001\nhost = "0.0.0.0"\nworkers = 3\n')
    args = build_parser().parse_args(["--config", str(path), "--port", "9002"])
    config = config_from(args, {})
    assert (config.host, config.port, config.workers) == ("0.0.0.0", 9002, 3)


def test_poll_models_takes_seconds_and_is_off_by_default() -> None:
    assert config_from(build_parser().parse_args([]), {}).poll_models_seconds == 0.0
    args = build_parser().parse_args(["--poll-models", "2.5"])
    assert config_from(args, {}).poll_models_seconds == 2.5


def test_the_environment_token_is_added_as_the_admin_token_named_env(tmp_path: Path) -> None:
    path = tmp_path / "canaryserve.toml"
    path.write_text('[admin_tokens]\nops = "t0k"\n')
    args = build_parser().parse_args(["--config", str(path)])
    config = config_from(args, {"CANARYSERVE_ADMIN_TOKEN": "from-env"})
    assert dict(config.admin_tokens) == {"ops": "t0k", "env": "from-env"}


def test_without_the_environment_token_the_configured_tokens_stand_alone() -> None:
    args = build_parser().parse_args([])
    assert dict(config_from(args, {}).admin_tokens) == {}
    assert dict(config_from(args, {"CANARYSERVE_ADMIN_TOKEN": ""}).admin_tokens) == {}
    # The name the CLI once read for the token it sends is not an admin token of the server.
    assert dict(config_from(args, {"CANARYSERVE_TOKEN": "old"}).admin_tokens) == {}


def test_a_blank_environment_token_is_a_config_error() -> None:
    args = build_parser().parse_args([])
    with pytest.raises(ConfigError, match="CANARYSERVE_ADMIN_TOKEN is set but blank"):
        config_from(args, {"CANARYSERVE_ADMIN_TOKEN": "  "})


def server(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "server", "--state-dir", str(tmp_path / "state"), *args]


def test_a_bad_config_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "canaryserve.toml"
    path.write_text('workers = "many"\n')
    done = subprocess.run(
        server(tmp_path, "--config", str(path), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert done.returncode == 2
    assert "canaryserve: 'workers' must be an integer" in done.stderr


def test_a_configured_stable_that_does_not_exist_exits_2_without_a_traceback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "canaryserve.toml"
    path.write_text('metrics_port = -1\n\n[models.classifier]\nstable = "7"\n')
    done = subprocess.run(
        server(tmp_path, "--config", str(path), "--port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert done.returncode == 2, done.stderr
    assert 'stable = "7" is not a ready version' in done.stderr
    assert "Traceback" not in done.stderr


def test_sigint_drains_and_exits_0_and_the_environment_token_is_accepted(tmp_path: Path) -> None:
    models = make_repository(tmp_path)
    log = tmp_path / "server.log"
    command = server(tmp_path, "--models", str(models), "--port", "0", "--metrics-port", "-1")
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=tmp_path,
            env=clean_env(CANARYSERVE_ADMIN_TOKEN="from-env"),
        )
    try:
        deadline = time.monotonic() + 30
        match = None
        while match is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            match = LISTENING.search(log.read_text())
        assert match is not None, log.read_text()
        with AdminClient(open_channel(f"127.0.0.1:{match.group(1)}"), "from-env") as admin:
            assert [r.model for r in admin.rollouts()] == ["classifier", "counter", "shouter"]
        process.send_signal(signal.SIGINT)
        code = process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = log.read_text()
    assert code == 0, text
    assert "received SIGINT; draining" in text
    # Logs are JSON lines when stderr is not a terminal (--log-format auto).
    assert '"logger": "canaryserve", "message": "stopped"' in text
    assert "Traceback" not in text
    # The environment's token is configured, so none is generated.
    assert not (tmp_path / "state" / "admin.token").exists()
