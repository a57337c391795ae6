"""Loading and unloading single versions: the admin LoadModel/UnloadModel RPCs, AdminClient and
`canaryserve model load|unload MODEL [VERSION]`.

A version routing uses — the stable version, the active candidate, the previous stable within
its rollback grace period — is refused with FAILED_PRECONDITION saying why and what to do;
any other version loads and unloads on its own, audited with the operator's token name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from server.app import App
from tests.conftest import make_repository, start_app

TOKEN = "tok-alice"
GRACE = 2.0
X = np.zeros((1, 4), dtype=np.float32)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    repo = make_repository(tmp_path / "repo")
    shutil.copytree(repo / "classifier" / "1", repo / "classifier" / "3")
    app = start_app(
        tmp_path,
        models_dir=repo,
        admin_tokens={"alice": TOKEN},
        rollback_grace_seconds=GRACE,
        models={"classifier": {"stable": "2"}},  # 3 is on disk from the start, not stable
    )
    yield app
    app.stop(0)


@pytest.fixture
def admin(server: App) -> Iterator[AdminClient]:
    with AdminClient(open_channel(f"127.0.0.1:{server.port}"), TOKEN) as client:
        yield client


@pytest.fixture
def infer(server: App) -> Iterator[InferenceClient]:
    with InferenceClient(f"127.0.0.1:{server.port}") as client:
        yield client


def refused(admin: AdminClient, version: str) -> str:
    with pytest.raises(ClientError) as info:
        admin.unload("classifier", version, reason="test")
    assert info.value.code == "FAILED_PRECONDITION", info.value
    return info.value.details


def test_versions_routing_uses_cannot_be_unloaded(
    server: App, admin: AdminClient, infer: InferenceClient
) -> None:
    assert "'2': it is the stable version; promote another version first" in refused(admin, "2")
    admin.start("classifier", "3", canary_ppm=200_000)
    why = refused(admin, "3")
    assert "candidate of the active canary rollout; roll it back or promote it first" in why
    assert "roll it back or promote it first" in refused(admin, "")  # the whole model
    admin.transition("promote", "classifier")
    why = refused(admin, "2")
    assert "previous stable, the rollback target until" in why and "unload it after" in why
    assert "stable version" in refused(admin, "3")
    assert {
        infer.infer("classifier", {"input": X}, routing_key=f"u{i}").version for i in range(20)
    } == {"3"}
    # Nothing refused left an audit row; version 1 (no role) unloads at once.
    assert [v.state for v in admin.unload("classifier", "1")] == ["UNAVAILABLE"]
    time.sleep(GRACE + 0.2)  # the grace period ends: version 2 is no one's rollback target
    assert [v.reason for v in admin.unload("classifier", "2")] == ["unloaded"]
    ops = [e.operation for e in admin.audit("classifier") if e.actor == "alice"]
    assert ops == ["start", "promote", "unload", "unload"]


def test_one_version_loads_and_unloads_on_its_own(
    server: App, admin: AdminClient, infer: InferenceClient
) -> None:
    assert [(v.version, v.state) for v in admin.unload("classifier", "3")] == [("3", "UNAVAILABLE")]
    with pytest.raises(ClientError) as info:
        infer.infer("classifier", {"input": X}, version="3")
    assert info.value.code in ("NOT_FOUND", "UNAVAILABLE")
    assert infer.infer("classifier", {"input": X}, version="1").version == "1"  # untouched
    loaded = admin.load("classifier", "3", reason="bring 3 back")
    assert [(v.version, v.state) for v in loaded] == [("3", "READY")]
    assert infer.infer("classifier", {"input": X}, version="3").version == "3"
    rows = [e for e in admin.audit("classifier") if e.operation in ("load", "unload")]
    assert [(e.operation, e.actor, e.reason) for e in rows] == [
        ("unload", "alice", ""),
        ("load", "alice", "bring 3 back"),
    ]
    assert json.loads(rows[1].extra_json) == {
        "rpc": "LoadModel",
        "version": "3",
        "states": {"3": "READY"},
    }
    for call, code in [
        (lambda: admin.load("classifier", "9"), "NOT_FOUND"),
        (lambda: admin.unload("classifier", "9"), "NOT_FOUND"),
        (lambda: admin.load("classifier", "03"), "INVALID_ARGUMENT"),
        (lambda: admin.unload("nope"), "NOT_FOUND"),
    ]:
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.code == code, info.value


def cli(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "--target", target, *args, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean,
        check=False,
    )


def test_the_cli_loads_and_unloads(server: App) -> None:
    target = f"127.0.0.1:{server.port}"
    done = cli(target, "model", "unload", "classifier", "3", "--reason", "retire 3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "classifier version 3: UNAVAILABLE (unloaded)"
    done = cli(target, "model", "load", "classifier", "--json")
    assert done.returncode == 0, done.stderr
    assert [(v["version"], v["state"]) for v in json.loads(done.stdout)] == [
        ("1", "READY"),
        ("2", "READY"),
        ("3", "READY"),
    ]
    done = cli(target, "model", "unload", "classifier", "2")
    assert done.returncode == 1
    assert "FAILED_PRECONDITION" in done.stderr and "stable version" in done.stderr
