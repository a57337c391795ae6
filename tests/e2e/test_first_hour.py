"""A new user's first hour: CLI manners, token-file safety, ports in use, a quiet install."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from client.inference import InferenceClient
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from protos.wire import ADMIN_TOKEN_FILE
from server.api.auth import ensure_token_file
from server.app import App
from server.config import ConfigError, load_config
from tests.conftest import start_app

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0k"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(tmp_path_factory.mktemp("first-hour"), admin_tokens={"ops": TOKEN})
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def target(server: App) -> str:
    return f"127.0.0.1:{server.port}"


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean,
    )


# -- the CLI ---------------------------------------------------------------------------------


def test_global_flags_work_after_the_subcommand(target: str) -> None:
    done = cli("models", "--target", target, "--json", "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert any(row["model"] == "classifier" for row in json.loads(done.stdout))
    done = cli("rollout", "explain", "classifier", "--target", target, "--token", TOKEN)
    assert done.returncode == 0, done.stderr


def test_version_flag_names_the_package_version() -> None:
    done = cli("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"canaryserve \d+\.\d+\.\d+\S*\n", done.stdout)


def test_json_numbers_are_json_numbers(target: str) -> None:
    done = cli("status", "classifier", "--json", "--target", target, "--token", TOKEN)
    assert done.returncode == 0, done.stderr
    rollout = json.loads(done.stdout)[0]
    assert isinstance(rollout["revision"], int)
    done = cli("audit", "--json", "--limit", "3", "--target", target, "--token", TOKEN)
    assert all(isinstance(entry["id"], int) for entry in json.loads(done.stdout))


def test_status_watch_prints_the_current_state_first_one_json_line_each(target: str) -> None:
    flags = ["--target", target, "--token", TOKEN]
    with subprocess.Popen(
        [sys.executable, "-m", "client.cli", "status", "--watch", "--json", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        guard = threading.Timer(30, process.kill)  # a hang ends as EOF, and fails below
        guard.daemon = True
        guard.start()
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())  # one event, one line
        assert "audit" not in first and first["rollout"]["model"] == "classifier"
        models = {first["rollout"]["model"]}
        while len(models) < 3:  # the current state of every model comes before any change
            event = json.loads(process.stdout.readline())
            assert "audit" not in event
            models.add(event["rollout"]["model"])
        assert models == {"classifier", "counter", "shouter"}
        guard.cancel()
        process.terminate()


def test_a_closed_pipe_ends_the_cli_quietly(target: str) -> None:
    command = (
        f"{sys.executable} -m client.cli audit --limit 500 --target {target} --token {TOKEN}"
        " | head -c 10 > /dev/null"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=30
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_no_server_is_said_plainly(unused_port: int) -> None:
    done = cli("models", "--target", f"127.0.0.1:{unused_port}", "--timeout", "3")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"canaryserve: no server at 127.0.0.1:{unused_port} (is `canaryserve serve` running?)"
    )


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- the admin token file --------------------------------------------------------------------


def test_generated_tokens_never_look_like_flags(tmp_path: Path) -> None:
    for i in range(64):  # the old urlsafe tokens began with "-" about one time in 64
        token = ensure_token_file(tmp_path / str(i))
        assert re.fullmatch(r"[0-9a-f]{64}", token)


def test_a_symlinked_token_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    planted = tmp_path / "planted"
    planted.write_text("attacker\n")
    planted.chmod(0o600)
    (state / ADMIN_TOKEN_FILE).symlink_to(planted)
    with pytest.raises(ConfigError, match="symbolic link"):
        ensure_token_file(state)


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = ensure_token_file(state)
    (state / ADMIN_TOKEN_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_token_file(state)
    (state / ADMIN_TOKEN_FILE).chmod(0o600)
    assert ensure_token_file(state) == token


def test_a_state_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by others"):
        App(load_config(None, {"state_dir": state, "port": 0, "metrics_port": -1}))


def test_a_new_state_dir_is_private(tmp_path: Path) -> None:
    ensure_token_file(tmp_path / "new")
    assert (tmp_path / "new").stat().st_mode & 0o077 == 0


# -- ports in use ----------------------------------------------------------------------------


def test_a_grpc_port_in_use_names_the_port_and_the_flag(server: App, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{server.port}.*--port"):
        start_app(tmp_path, port=server.port)


def test_a_metrics_port_in_use_names_the_port_and_the_flag(server: App, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf":{server.metrics_port}.*--metrics-port"):
        start_app(tmp_path, metrics_port=server.metrics_port)


# -- install ---------------------------------------------------------------------------------


def test_the_package_builds_without_warnings_and_ships_the_model_configs(tmp_path: Path) -> None:
    quiet = ["--no-deps", "--no-build-isolation", "-q"]
    leftovers = [ROOT / "build", ROOT / "canaryserve.egg-info"]
    existed = {path for path in leftovers if path.exists()}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *quiet, "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    for path in set(leftovers) - existed:  # setuptools builds in the source tree
        shutil.rmtree(path, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert "would be ignored" not in done.stderr  # setuptools' package-data warning
    (wheel,) = tmp_path.glob("canaryserve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "models/classifier/config.toml" in names
    assert "models/classifier/2/model.onnx" in names


# -- stopping --------------------------------------------------------------------------------


def test_a_call_that_arrives_while_the_server_drains_is_unavailable(tmp_path: Path) -> None:
    """Retryable UNAVAILABLE, not CANCELLED: the drain refuses it before gRPC stops."""
    app = start_app(tmp_path)
    try:
        with InferenceClient(f"127.0.0.1:{app.port}") as client:
            x = {"input": np.zeros((1, 4), np.float32)}
            assert client.infer("classifier", x).version == "2"
            app.dataplane.draining = True  # what App.stop sets first
            with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                request = pb.ModelInferRequest(model_name="classifier")
                request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
                request.raw_input_contents.append(x["input"].tobytes())
                with pytest.raises(grpc.RpcError) as info:
                    pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (info.value.details() or "")
    finally:
        app.stop(0)
