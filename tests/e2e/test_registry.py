"""The registry behind a running server: a broken version isolated, reloads under load."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from client.errors import ClientError
from client.inference import InferenceClient
from tests.support.servers import start_app
from tests.support.waiting import WAIT, wait_for

X = np.zeros((1, 4), dtype=np.float32)
OPERATOR = (("authorization", "Bearer tok"),)  # repository control needs the admin token


def test_corrupt_version_is_reported_and_others_serve(tmp_path: Path) -> None:
    app = start_app(tmp_path, admin_tokens={"ops": "tok"})
    try:
        broken = app.config.models_dir / "classifier" / "3"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"this is not an onnx file")
        with InferenceClient(f"127.0.0.1:{app.port}", metadata=OPERATOR) as client:
            with pytest.raises(ClientError) as info:
                client.load("classifier")
            assert info.value.code == "FAILED_PRECONDITION"
            assert "version 3: failed to load" in info.value.details
            assert "ready and serving: 1, 2" in info.value.details
            index = {(m.name, m.version): m for m in client.index()}
            assert index[("classifier", "3")].state == "UNAVAILABLE"
            assert "failed to load" in index[("classifier", "3")].reason
            assert client.infer("classifier", {"input": X}).version == "2"
            with pytest.raises(ClientError) as info:
                client.infer("classifier", {"input": X}, version="3")
            assert info.value.code == "UNAVAILABLE"
    finally:
        app.stop(0)


def test_load_and_unload_under_concurrent_inference(tmp_path: Path) -> None:
    """Reloading one model and loading a new version loses no call of anyone."""
    app = start_app(tmp_path, admin_tokens={"ops": "tok"})
    target = f"127.0.0.1:{app.port}"
    stop = threading.Event()
    failures: list[str] = []
    served = [0] * 4  # calls answered, per worker

    def load_loop(worker: int) -> None:
        with InferenceClient(target) as c:
            while not stop.is_set():
                try:
                    c.infer("classifier", {"input": X})
                    served[worker] += 1
                except ClientError as exc:  # pragma: no cover - the assertion reports it
                    failures.append(str(exc))

    def calls_served(more: int) -> None:
        goal = sum(served) + more
        wait_for(lambda: failures or sum(served) >= goal, message=f"{more} more calls served")

    workers = [threading.Thread(target=load_loop, args=(w,)) for w in range(len(served))]
    for w in workers:
        w.start()
    try:
        with InferenceClient(target, metadata=OPERATOR) as admin:
            calls_served(20)  # the load is running before anything reloads
            new = app.config.models_dir / "classifier" / "3"
            shutil.copytree(app.config.models_dir / "classifier" / "1", new)
            for _ in range(3):
                admin.load("classifier")
                calls_served(5)
                admin.unload("counter")
                admin.load("counter")
                calls_served(5)
            assert admin.model_ready("classifier", "3")
    finally:
        stop.set()
        for w in workers:
            w.join(WAIT)
        app.stop(0)
    assert failures == []
    assert sum(served) > 0
