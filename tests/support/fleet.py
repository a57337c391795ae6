"""Helpers of the fleet tests: a real etcd on free loopback ports, and waiting for convergence.

etcd is Debian's etcd-server (/usr/bin/etcd, installed by .ci/install-etcd.sh). Without it the
etcd tests skip on a developer's machine and fail in CI (CI=true), where it must be installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from protos.etcd.etcdserverpb import rpc_pb2 as rpc
from server.errors import StoreUnavailable
from server.fleet.client import EtcdClient, parse_store_url

if TYPE_CHECKING:  # the unit tier never imports the composition root
    from server.app import App

ETCD = os.environ.get("CANARYSERVE_ETCD", "/usr/bin/etcd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Etcd:
    """One etcd member (alone by default), restartable on the same ports and data directory."""

    def __init__(self, data_dir: Path, name: str = "test") -> None:
        self.data_dir = data_dir
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        #: `--initial-cluster`: this member alone, unless an EtcdCluster names its peers.
        self.initial_cluster = f"{name}={self.peer_url}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def url(self, prefix: str) -> str:
        return f"etcd://{self.endpoint}/{prefix}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process (a cluster's members must all be launched before any is ready)."""
        client = f"http://{self.endpoint}"
        log = open(self.data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                ETCD,
                f"--name={self.name}",
                f"--data-dir={self.data_dir}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={self.peer_url}",
                f"--initial-advertise-peer-urls={self.peer_url}",
                f"--initial-cluster={self.initial_cluster}",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()

    def wait_ready(self) -> None:
        """Until a read through this member succeeds (which needs the cluster's quorum)."""
        assert self.process is not None
        log = self.data_dir.with_suffix(".log")
        probe = EtcdClient(parse_store_url(self.url("probe")), timeout=0.5)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    probe.range(rpc.RangeRequest(key=b"/probe"))
                    return
                except StoreUnavailable:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError(f"etcd did not start (log: {log.name})") from None
                    time.sleep(0.1)
        finally:
            probe.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


class EtcdCluster:
    """An etcd cluster of `size` members (three by default) on loopback ports."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.members = [Etcd(root / f"etcd{i}", name=f"m{i}") for i in range(size)]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member.initial_cluster = cluster

    def url(self, prefix: str, members: list[Etcd] | None = None) -> str:
        """`etcd://` with the endpoints of `members` (default: all), in that order."""
        endpoints = ",".join(m.endpoint for m in members or self.members)
        return f"etcd://{endpoints}/{prefix}"

    def start(self) -> None:
        for member in self.members:
            member.launch()
        for member in self.members:
            member.wait_ready()

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def require_etcd() -> None:
    if shutil.which(ETCD) is None:
        message = f"{ETCD} is missing: run .ci/install-etcd.sh (Debian's etcd-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    require_etcd()
    server = Etcd(tmp_path / "etcd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    require_etcd()
    cluster = EtcdCluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until `check()` holds (convergence, not timing: the limit is generous)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout}s: {what}")
        time.sleep(0.02)


def operator_cli(target: str, token: str, *args: str) -> str:
    """What `canaryserve --target TARGET ARGS...` prints (the admin token from the env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    env["CANARYSERVE_ADMIN_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "--target", target, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def leads(app: App) -> bool:
    """Whether `app` is the fleet's promotion leader now."""
    return app.election is not None and app.election.is_leader()
