"""A whole-model load in a fleet where one version fails to load: the versions that loaded
reach every replica (the fleet's desired set names them), the failing one is named in the
call's error and is not added. Two real replicas on a real etcd."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.errors import ClientError
from client.inference import InferenceClient
from server.app import App
from tests.support.fleet import Etcd, etcd
from tests.support.servers import start_app
from tests.support.waiting import wait_for

__all__ = ["etcd"]  # the fixture, imported

TOKEN = "tok-a"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def pair(tmp_path: Path, etcd: Etcd) -> Iterator[list[App]]:
    apps: list[App] = []
    try:
        for name in ("a", "b"):
            apps.append(
                start_app(
                    tmp_path / name,
                    store=etcd.url("fleet"),
                    state_dir=tmp_path / name / "state",
                    admin_tokens={"alice": TOKEN},
                    leader_ttl_seconds=2,
                    models={"classifier": {"stable": "1"}},
                )
            )
        yield apps
    finally:
        for app in apps:
            app.stop(0)


def add_versions(app: App) -> None:
    """Version 3 (a good copy of 1) and version 4 (a corrupt file) on this replica's disk."""
    models = app.config.models_dir / "classifier"
    shutil.copytree(models / "1", models / "3")
    (models / "4").mkdir()
    (models / "4" / "model.onnx").write_bytes(b"this is not an onnx model")


def test_a_whole_model_load_with_a_corrupt_version_propagates_the_versions_that_loaded(
    pair: list[App],
) -> None:
    a, b = pair
    for app in pair:
        add_versions(app)
    with (
        InferenceClient(f"127.0.0.1:{a.port}", metadata=OPERATOR) as c,
        pytest.raises(ClientError) as refused,
    ):
        c.load("classifier")
    assert refused.value.code == "FAILED_PRECONDITION"
    assert "version 4: failed to load" in refused.value.details
    assert "version 3:" not in refused.value.details
    assert "3" in a.registry.ready_versions("classifier")
    # The version that loaded through A reaches B; the corrupt one is not asked of B.
    wait_for(
        lambda: "3" in b.registry.ready_versions("classifier"),
        message="version 3, loaded through A, is loaded on B",
    )
    assert b.fleet is not None
    _, desired = b.fleet.repository.desired("classifier")
    assert "3" in desired.loaded and "4" not in desired.loaded
    assert "4" not in b.registry.ready_versions("classifier")
    states = {mv.version: mv.state.value for mv in b.registry.index() if mv.model == "classifier"}
    assert "4" not in states  # B never tried it: nobody loaded it successfully
