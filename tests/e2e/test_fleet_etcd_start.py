"""A replica started before its etcd (a README sequence, a pod beside its etcd) waits for it,
saying so, and serves once it answers; one whose etcd never comes refuses to start, naming the
store (test_fleet_etcd.py)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from client.inference import InferenceClient
from server.app import App
from tests.conftest import start_app
from tests.support.fleet import Etcd, require_etcd
from tests.support.waiting import wait_for


def test_a_replica_started_before_its_etcd_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_etcd()
    etcd = Etcd(tmp_path / "etcd")  # ports chosen, not started yet
    started: list[App] = []
    failed: list[BaseException] = []

    def start() -> None:
        try:
            started.append(start_app(tmp_path / "r", store=etcd.url("fleet")))
        except BaseException as exc:  # reported below, not lost in the thread
            failed.append(exc)

    caplog.set_level(logging.WARNING, logger="server.fleet.client")
    replica = threading.Thread(target=start, daemon=True)
    replica.start()
    try:
        wait_for(lambda: "waiting up to 10s for the state store" in caplog.text or failed)
        assert not failed, failed
        etcd.start()
        replica.join(60)
        assert not failed and started, failed
        with InferenceClient(f"127.0.0.1:{started[0].port}") as client:
            x = np.zeros((1, 4), dtype=np.float32)
            assert client.infer("classifier", {"input": x}, routing_key="k").version
    finally:
        for app in started:
            app.stop(0)
        etcd.stop()
