"""The server run as deploy/ runs it, without a container runtime: the image's command line
(ENTRYPOINT + CMD) and the Kubernetes pod's (its args, the ConfigMap's TOML byte for byte, the
Secret's variable, a real etcd). Only what names this machine changes: ports (0, so tests run
side by side), the state directory (under a 0777 directory, as an emptyDir is) and the etcd
endpoint. Each must start, report SERVING to the probes, answer an inference and drain on
SIGTERM within the pod's grace period."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.admin import AdminClient
from client.channel import open_channel
from client.inference import InferenceClient
from tests.support.fleet import Etcd, etcd
from tests.support.waiting import wait_for

__all__ = ["etcd"]  # the fixture

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LISTENING = re.compile(r"canaryserve listening on 0\.0\.0\.0:(\d+)")
TOKEN = "a-token-from-the-secret"


def instruction(name: str) -> list[str]:
    (line,) = re.findall(rf"^{name}\s+(.+)$", (DEPLOY / "Dockerfile").read_text(), flags=re.M)
    return list(json.loads(line))


def pod() -> tuple[dict[str, Any], dict[str, str]]:
    """The Deployment's container and the ConfigMap's data."""
    docs = {
        d["kind"]: d
        for path in (DEPLOY / "kubernetes").glob("*.yaml")
        for d in yaml.safe_load_all(path.read_text())
    }
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container, docs["ConfigMap"]["data"]


def replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    if flag in args:
        args = list(args)
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


class Running:
    """`python -m server ARGS` in `cwd`, its log in a file, SIGTERM on exit."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.log = cwd / "server.log"
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        found = wait_for(
            lambda: LISTENING.search(self.log.read_text()) or self.process.poll() is not None,
            60,
            message="the server never listened",
        )
        assert isinstance(found, re.Match), self.log.read_text()
        self.target = f"127.0.0.1:{found.group(1)}"

    def stop(self) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the drain took."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        return code, time.monotonic() - start


@pytest.fixture
def environment() -> Iterator[dict[str, str]]:
    yield {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}


def check_serving(target: str, services: list[str]) -> None:
    with open_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in services:
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert status.status == health_pb2.HealthCheckResponse.SERVING, service
    with InferenceClient(target) as client:
        x = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
        result = client.infer("classifier", {"input": x}, routing_key="user-42")
        assert result.outputs["scores"].shape == (1, 3) and result.version


def test_the_image_command_line_serves_the_bundled_models_on_every_interface(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    entrypoint, cmd = instruction("ENTRYPOINT"), instruction("CMD")
    assert entrypoint[:1] == ["python"]
    state = cmd[cmd.index("--state-dir") + 1]
    args = [*entrypoint[1:], *replace_flag(cmd, "--state-dir", str(tmp_path / state.strip("/")))]
    server = Running([*args, "--port", "0", "--metrics-port", "0"], tmp_path, environment)
    try:
        check_serving(server.target, [""])
    finally:
        code, _ = server.stop()
    assert code == 0, server.log.read_text()


def test_the_kubernetes_pod_command_line_and_configmap_serve_over_etcd(
    tmp_path: Path, environment: dict[str, str], etcd: Etcd
) -> None:
    container, data = pod()
    ((name, toml),) = data.items()
    config = tmp_path / "etc" / name
    config.parent.mkdir()
    config.write_text(toml)  # byte for byte
    empty_dir = tmp_path / "var-lib-canaryserve"
    empty_dir.mkdir()
    empty_dir.chmod(0o777)  # what an emptyDir is; the server's state_dir is a subdirectory
    args = replace_flag(container["args"], "--config", str(config))
    state_dir = re.search(r'^state_dir = "(.+)"$', toml, flags=re.M)
    assert state_dir is not None
    local_state = empty_dir / Path(state_dir.group(1)).name
    overrides = ["--port", "0", "--metrics-port", "0", "--state-dir", str(local_state)]
    env = {**environment, container["env"][0]["name"]: TOKEN}
    server = Running(
        ["-m", "server", *args, *overrides, "--store", etcd.url("canaryserve")], tmp_path, env
    )
    try:
        probes = ("startupProbe", "readinessProbe", "livenessProbe")
        services = [container[probe]["grpc"].get("service", "") for probe in probes]
        check_serving(server.target, services)
        with AdminClient(open_channel(server.target), TOKEN) as admin:
            assert "classifier" in [r.model for r in admin.rollouts()]
        assert (local_state.stat().st_mode & 0o777) == 0o700
    finally:
        code, took = server.stop()
    log = server.log.read_text()
    assert code == 0, log
    assert "received SIGTERM; draining (grace 20.0s)" in log  # the ConfigMap's grace_seconds
    grace = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())["spec"][
        "template"
    ]["spec"]["terminationGracePeriodSeconds"]
    assert took < grace, f"an idle server took {took:.1f}s to stop"
