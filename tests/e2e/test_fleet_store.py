"""Processes sharing one store follow each other's writes: the store's watch and
RolloutController.sync, on the in-memory fake, on SQLite between servers, and `--processes N`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from server.app import App
from server.errors import RevisionMismatch
from server.rollout.controller import RolloutController
from server.rollout.router import RoutingTable
from server.rollout.state import Phase, SetWeight, StartRollout
from server.testing import MemoryStore
from tests.conftest import make_repository, start_app
from tests.support.fleet import eventually, free_port

READY = frozenset({"1", "2"})
TOKENS = {"alice": "tok-a"}


def controller(store: MemoryStore, tables: list[RoutingTable]) -> RolloutController:
    c = RolloutController(store, ready_versions=lambda _m: READY, publish=tables.append)
    store.watch(c.sync)
    return c


def test_controllers_on_one_store_follow_each_others_writes() -> None:
    store = MemoryStore()
    a_tables: list[RoutingTable] = []
    b_tables: list[RoutingTable] = []
    a, b = controller(store, a_tables), controller(store, b_tables)
    a.adopt({"m": "1"})
    b.adopt({"m": "2"})  # already adopted through a: a's stable stands, no error
    eventually(lambda: "m" in b_tables[-1].models, what="b sees m")
    assert b.get("m").stable == "1"

    sub = b.subscribe("m")
    a.execute("m", StartRollout("2", canary_ppm=10_000), actor="t", reason="go")
    eventually(lambda: b.get("m").phase is Phase.CANARY, what="b sees the rollout")
    rollout = b_tables[-1].models["m"].rollout
    assert rollout is not None and rollout.salt == a.get("m").salt  # one salt for both
    event = sub.get(timeout=5)
    assert event is not None and event.result.after.revision == a.get("m").revision


def test_of_two_writers_with_one_revision_exactly_one_wins() -> None:
    store = MemoryStore()
    a, b = controller(store, []), controller(store, [])
    a.adopt({"m": "1"})
    eventually(lambda: "m" in [s.model for s in b.states()], what="b sees m")
    a.execute("m", StartRollout("2", canary_ppm=10_000), actor="t", reason="go")
    eventually(lambda: b.get("m").phase is Phase.CANARY, what="b sees the rollout")
    revision = a.get("m").revision
    a.execute("m", SetWeight(20_000), actor="a", reason="", expected_revision=revision)
    # Whether or not b has heard of a's write yet, b's write from the same revision loses
    # (in memory if it has, in the store's compare-and-set if not).
    with pytest.raises(RevisionMismatch):
        b.execute("m", SetWeight(30_000), actor="b", reason="", expected_revision=revision)
    assert a.get("m").canary_ppm == 20_000
    eventually(lambda: b.get("m").canary_ppm == 20_000, what="b takes a's write")


# -- SQLite: two servers on one state dir ---------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[App, App]]:
    state = tmp_path / "state"
    a = start_app(tmp_path / "a", state_dir=state, admin_tokens=TOKENS)
    b = start_app(tmp_path / "b", state_dir=state, admin_tokens=TOKENS)
    yield a, b
    a.stop(0)
    b.stop(0)


def admin(app: App) -> AdminClient:
    return AdminClient(open_channel(f"127.0.0.1:{app.port}"), "tok-a")


def test_servers_sharing_a_state_dir_see_each_others_writes(pair: tuple[App, App]) -> None:
    a, b = pair
    with admin(a) as via_a, admin(b) as via_b:
        started = via_a.start("classifier", "1", canary_ppm=50_000).rollout
        eventually(lambda: via_b.get("classifier").revision == started.revision, 5, "b follows")
        routing = b.dataplane.table.models["classifier"].rollout
        assert routing is not None and routing.salt == a.rollouts.get("classifier").salt
        # The other way round, and the kill switch through b rolls back a too.
        via_b.set_weight("classifier", 100_000)
        eventually(lambda: a.rollouts.get("classifier").canary_ppm == 100_000, 5, "a follows")
        via_b.kill_switch(reason="stop")
        eventually(lambda: a.dataplane.table.models["classifier"].rollout is None, 5, "a stops")
        # A write from a stale revision loses: ABORTED, never a silent overwrite.
        stale = started.revision
        with pytest.raises(ClientError) as info:
            via_a.set_weight("classifier", 10_000, expected_revision=stale)
        assert info.value.code in {"ABORTED", "FAILED_PRECONDITION"}


# -- canaryserve serve --processes 2 ---------------------------------------------------------

STARTED = re.compile(r"canaryserve: 2 processes on 127\.0\.0\.1:(\d+)")


def metric(port: int, name: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


def test_two_processes_share_one_port_and_one_sqlite_store(tmp_path: Path) -> None:
    models = make_repository(tmp_path)
    metrics = free_port()  # the second process takes metrics + 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    env["CANARYSERVE_ADMIN_TOKEN"] = "tok-a"
    args = ["--models", str(models), "--state-dir", str(tmp_path / "state"), "--port", "0"]
    args += ["--metrics-port", str(metrics), "--processes", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "server", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = STARTED.search(line)
        assert match, f"no start line: {line!r}"
        port = int(match.group(1))
        weights = "canaryserve_canary_weight_ratio"
        with AdminClient(open_channel(f"127.0.0.1:{port}"), "tok-a") as client:
            client.start("classifier", "1", canary_ppm=250_000)
        # Whichever process took the call, both publish the rollout (each its own metrics).
        for p in (metrics, metrics + 1):
            eventually(lambda p=p: 'model="classifier"} 0.25' in metric(p, weights), 10, str(p))
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
    assert code == 0
