"""The shadow report shows routing-key hashes, as spans do, unless configured otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from client.cli import main
from client.inference import InferenceClient
from models.build import build_classifier_perturbed
from server.app import App
from server.telemetry.tracing import key_hash
from tests.support.release import TOKEN, admin, reload, serve

KEYS = [f"alice-{i}@example.com" for i in range(800)]


def _worst(app: App) -> list[dict[str, object]]:
    build_classifier_perturbed(app.config.models_dir / "classifier" / "3" / "model.onnx")
    reload(app)
    rng = np.random.default_rng(3)
    with admin(app) as ops:
        ops.start("classifier", "3", shadow_ppm=1_000_000, no_guard=True)
        with InferenceClient(f"127.0.0.1:{app.port}") as c:
            for key in KEYS:
                x = rng.standard_normal((1, 4)).astype(np.float32)
                c.infer("classifier", {"input": x}, routing_key=key)
        assert app.shadow.force_flush(timeout=20)
        worst = json.loads(ops.shadow_report("classifier").report_json)["worst"]
    assert worst, "the perturbed candidate disagrees on about 1% of inputs"
    return list(worst)


def test_the_shadow_report_shows_key_hashes_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = serve(tmp_path, shadow_max_cpu=1.0)  # count every shadow run, however loaded
    try:
        worst = _worst(app)
        hashes = {key_hash(k): k for k in KEYS}
        for w in worst:
            assert "routing_key" not in w and w["routing_key_hash"] in hashes
        target = f"127.0.0.1:{app.port}"
        assert main(["--target", target, "shadow", "classifier", "--token", TOKEN]) == 0
        text = capsys.readouterr().out
    finally:
        app.stop(0)
    assert f"key #{worst[0]['routing_key_hash']}" in text
    assert "example.com" not in text


def test_raw_keys_when_configured(tmp_path: Path) -> None:
    app = serve(tmp_path, shadow_report_raw_keys=True, shadow_max_cpu=1.0)
    try:
        worst = _worst(app)
    finally:
        app.stop(0)
    assert all(w["routing_key"] in KEYS and "routing_key_hash" not in w for w in worst)
