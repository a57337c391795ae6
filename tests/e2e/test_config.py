"""The configuration as a started server reads it: configured stables, a bad file at `serve`."""

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
from server.config import load_config
from tests.support.servers import make_repository, start_app


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "canaryserve.toml"
    path.write_text(text)
    return path


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


def test_a_candidates_onnxruntime_threads_follow_intra_op_threads_unless_set(
    tmp_path: Path,
) -> None:
    """So a promotion rebuilds nothing by default, whatever `intra_op_threads` is."""
    app = start_app(tmp_path / "a", intra_op_threads=2)
    try:
        placement = app._placement("classifier")
        assert (placement.intra_op_threads, placement.candidate_intra_op_threads) == (2, 2)
        assert placement.build_key(stable=True) == placement.build_key(stable=False)
    finally:
        app.stop(0)
    app = start_app(tmp_path / "b", intra_op_threads=2, candidate_intra_op_threads=1)
    try:
        assert app._placement("classifier").candidate_intra_op_threads == 1
    finally:
        app.stop(0)
