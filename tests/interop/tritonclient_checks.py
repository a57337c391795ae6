"""Checks run by tritonclient.grpc against a running server, in their own process.

tritonclient registers Triton's own `inference.*` protobuf descriptors, which cannot share a
process with canaryserve's generated ones, so tests/interop/test_tritonclient.py runs this file as a
subprocess: `python tritonclient_checks.py HOST:PORT MODELS_DIR ADMIN_TOKEN` prints one JSON object,
check name → "ok" or the failure.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tc

X = np.array([[0.5, -1.0, 2.0, 0.1], [1.5, 0.3, -0.7, 2.2]], dtype=np.float32)


def direct(
    models: Path, model: str, version: str, feeds: dict[str, np.ndarray]
) -> list[np.ndarray]:
    session = ort.InferenceSession(
        str(models / model / version / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def run_checks(url: str, models: Path, token: str) -> dict[str, str]:
    client = tc.InferenceServerClient(url)
    checks: dict[str, Callable[[], None]] = {}

    def check(fn: Callable[[], None]) -> Callable[[], None]:
        checks[fn.__name__] = fn
        return fn

    @check
    def server_live_and_ready() -> None:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata().name == "canaryserve"

    @check
    def model_ready() -> None:
        assert client.is_model_ready("classifier")
        assert client.is_model_ready("classifier", "1")
        assert not client.is_model_ready("classifier", "42")
        assert not client.is_model_ready("nope")  # Triton: ready=false, not an error

    @check
    def model_metadata() -> None:
        meta = client.get_model_metadata("classifier", as_json=True)
        assert meta["versions"] == ["1", "2"], meta
        assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}, (
            meta
        )

    @check
    def model_config() -> None:
        config = client.get_model_config("counter", as_json=True)["config"]
        assert config["name"] == "counter"
        assert config["input"][0]["data_type"] == "TYPE_INT64", config

    @check
    def repository_index() -> None:
        index = client.get_model_repository_index(as_json=True)["models"]
        names = {(m["name"], m["version"]) for m in index}
        assert {("classifier", "1"), ("classifier", "2"), ("counter", "1")} <= names, index

    def infer_classifier(version: str) -> tc.InferResult:
        inp = tc.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        return client.infer("classifier", [inp], model_version=version, priority=1)

    @check
    def infer_without_version() -> None:
        result = infer_classifier("")
        want = direct(models, "classifier", "2", {"input": X})[0]
        np.testing.assert_allclose(result.as_numpy("scores"), want, rtol=1e-6)
        assert result.get_response().model_version == "2"

    @check
    def infer_with_version() -> None:
        result = infer_classifier("1")
        want = direct(models, "classifier", "1", {"input": X})[0]
        np.testing.assert_allclose(result.as_numpy("scores"), want, rtol=1e-6)
        assert result.get_response().model_version == "1"

    @check
    def infer_int64_and_bytes() -> None:
        ids = np.array([[3, 4, 5]], dtype=np.int64)
        inp = tc.InferInput("ids", list(ids.shape), "INT64")
        inp.set_data_from_numpy(ids)
        out = client.infer("counter", [inp], outputs=[tc.InferRequestedOutput("total")])
        assert out.as_numpy("total").tolist() == [12]
        text = np.array([b"abc", b"Zed"], dtype=np.object_)
        inp = tc.InferInput("text", [2], "BYTES")
        inp.set_data_from_numpy(text)
        assert client.infer("shouter", [inp]).as_numpy("upper").tolist() == [b"ABC", b"ZED"]

    @check
    def errors_are_clear() -> None:
        try:
            client.infer("nope", [])
        except tc.InferenceServerException as exc:
            assert exc.status() == "StatusCode.NOT_FOUND", exc.status()
        else:
            raise AssertionError("unknown model did not fail")

    @check
    def unload_and_load() -> None:
        try:
            client.unload_model("counter")  # repository control needs the admin token
        except tc.InferenceServerException as exc:
            assert exc.status() == "StatusCode.UNAUTHENTICATED", exc.status()
        else:
            raise AssertionError("unload without the admin token did not fail")
        admin = {"authorization": f"Bearer {token}"}
        client.unload_model("counter", headers=admin)
        assert not client.is_model_ready("counter")
        client.load_model("counter", headers=admin)
        assert client.is_model_ready("counter")

    @check
    def statistics() -> None:
        stats = client.get_inference_statistics("classifier", as_json=True)["model_stats"]
        counts = {s["version"]: int(s["inference_stats"]["success"].get("count", 0)) for s in stats}
        assert counts["1"] >= 1 and counts["2"] >= 1, counts

    results: dict[str, str] = {}
    for name, fn in checks.items():
        try:
            fn()
            results[name] = "ok"
        except Exception:
            results[name] = traceback.format_exc(limit=3)
    return results


if __name__ == "__main__":
    print(json.dumps(run_checks(sys.argv[1], Path(sys.argv[2]), sys.argv[3])))
