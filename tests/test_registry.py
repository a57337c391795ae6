"""The registry: versions side by side, broken versions isolated, reloads that drop nothing."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from client.errors import ClientError
from client.inference import InferenceClient
from server.errors import ModelNotFound, ModelVersionNotFound, VersionNotReady
from server.serving.registry import LoadState, Registry
from server.serving.runner import OnnxRunner
from tests.conftest import make_repository, start_app

X = np.zeros((1, 4), dtype=np.float32)
OPERATOR = (("authorization", "Bearer tok"),)  # repository control needs the admin token


def test_loads_every_version_side_by_side(tmp_path: Path) -> None:
    registry = Registry(make_repository(tmp_path), OnnxRunner)
    registry.load_all()
    assert registry.models() == ["classifier", "counter", "shouter"]
    assert registry.ready_versions("classifier") == {"1", "2"}
    assert registry.highest_ready("classifier") == "2"
    with pytest.raises(ModelNotFound, match="known models"):
        registry.get("nope", "1")
    with pytest.raises(ModelVersionNotFound, match="versions: 1, 2"):
        registry.get("classifier", "3")


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


def test_unloaded_model_is_unavailable(tmp_path: Path) -> None:
    registry = Registry(make_repository(tmp_path), OnnxRunner)
    registry.load_all()
    registry.unload("counter")
    with pytest.raises(VersionNotReady, match="UNAVAILABLE: unloaded"):
        registry.get("counter", "1")
    registry.load("counter")
    assert registry.get("counter", "1").state is LoadState.READY


def test_reload_keeps_unchanged_sessions(tmp_path: Path) -> None:
    registry = Registry(make_repository(tmp_path), OnnxRunner)
    registry.load_all()
    before = registry.get("classifier", "1")
    registry.load("classifier")
    assert registry.get("classifier", "1") is before


def test_load_and_unload_under_concurrent_inference(tmp_path: Path) -> None:
    """Reloading one model and loading a new version loses no call of anyone."""
    app = start_app(tmp_path, admin_tokens={"ops": "tok"})
    target = f"127.0.0.1:{app.port}"
    stop = threading.Event()
    failures: list[str] = []
    served = [0]

    def load_loop() -> None:
        with InferenceClient(target) as c:
            while not stop.is_set():
                try:
                    c.infer("classifier", {"input": X})
                    served[0] += 1
                except ClientError as exc:  # pragma: no cover - the assertion reports it
                    failures.append(str(exc))

    workers = [threading.Thread(target=load_loop) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        with InferenceClient(target, metadata=OPERATOR) as admin:
            new = app.config.models_dir / "classifier" / "3"
            shutil.copytree(app.config.models_dir / "classifier" / "1", new)
            for _ in range(3):
                admin.load("classifier")
                admin.unload("counter")
                admin.load("counter")
            assert admin.model_ready("classifier", "3")
    finally:
        stop.set()
        for w in workers:
            w.join()
        app.stop(0)
    assert failures == []
    assert served[0] > 0


@pytest.mark.parametrize("model", ["classifier", "counter", "shouter"])
def test_runner_answers_like_the_public_session_run(model: str) -> None:
    """OnnxRunner answers exactly what a plain onnxruntime session answers, for every dtype."""
    import onnxruntime as ort

    from server.config import bundled_models_dir

    path = bundled_models_dir() / model / "1" / "model.onnx"
    runner = OnnxRunner(path, intra_op_threads=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    feeds: dict[str, np.ndarray] = {}
    for spec in runner.signature.inputs:
        shape = tuple(3 if d is None else d for d in spec.shape)
        if spec.dtype.oip == "BYTES":
            feeds[spec.name] = np.array(["ab", "", "ünï"][: shape[0]], dtype=object).reshape(shape)
        elif spec.dtype.numpy.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype.numpy)
        else:
            feeds[spec.name] = rng.integers(-50, 50, shape).astype(spec.dtype.numpy)
    names = runner.signature.output_names
    ours = runner.run(names, feeds)
    theirs = session.run(list(names), feeds)
    assert len(ours) == len(theirs) == len(names)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)
