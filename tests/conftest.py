"""Shared fixtures: a real server on port 0 over a copy of the bundled model repository."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client.inference import InferenceClient
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.config import bundled_models_dir, load_config

#: The bundled demo candidates and the file that keeps v2 stable beside them; tests work on
#: classifier 1 and 2 alone and add their own candidates.
_DEMO_ONLY = ("config.toml", "3", "4")


def make_repository(tmp: Path) -> Path:
    """A private, writable copy of the bundled models (tests may add or break versions)."""
    root = tmp / "models"
    shutil.copytree(
        bundled_models_dir(),
        root,
        ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__", *_DEMO_ONLY),
    )
    return root


def start_app(tmp: Path, **overrides: object) -> App:
    settings: dict[str, object] = {
        "models_dir": make_repository(tmp),
        "state_dir": tmp / "state",
        "port": 0,
        "metrics_port": 0,
        "workers": 8,
        "grace_seconds": 2.0,
        "intra_op_threads": 1,
    }
    settings.update(overrides)
    app = App(load_config(None, settings))
    app.start()
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One server per test module (tests that mutate the repository make their own)."""
    app = start_app(tmp_path_factory.mktemp("server"))
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def target(app: App) -> str:
    return f"127.0.0.1:{app.port}"


@pytest.fixture(scope="module")
def client(target: str) -> Iterator[InferenceClient]:
    with InferenceClient(target) as c:
        yield c


@pytest.fixture(scope="module")
def stub(target: str) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
