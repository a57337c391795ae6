"""Shadow mode against a running server: callers always get stable's answer; the report tells."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from client.admin import AdminClient
from client.inference import InferenceClient
from models.build import build_classifier_faulty, build_classifier_perturbed
from server.app import App
from tests.support.servers import start_app

TOKEN = "shadow-test-token"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)  # loading needs the admin token


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    # The candidates are built from classifier v1, so v1 is stable here.
    app = start_app(
        tmp_path,
        admin_tokens={"ops": TOKEN},
        shadow_queue_size=4096,
        shadow_max_busy=100.0,  # these tests count every shadow run: no budget shedding
        shadow_timeout_seconds=60.0,  # ... and no expiry in the queue on a loaded machine
        shadow_max_cpu=1.0,  # nor shedding for CPU headroom (the client runs in this process)
        models={"classifier": {"stable": "1"}},
    )
    yield app
    app.stop(0)


def _admin(app: App) -> AdminClient:
    return AdminClient(grpc.insecure_channel(f"127.0.0.1:{app.port}"), TOKEN)


def _add_candidate(app: App, builder: object) -> None:
    builder(app.config.models_dir / "classifier" / "3" / "model.onnx")  # type: ignore[operator]
    with InferenceClient(f"127.0.0.1:{app.port}", metadata=OPERATOR) as c:
        c.load("classifier")


def _traffic(app: App, n: int, seed: int = 7) -> list[tuple[np.ndarray, np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    answers = []
    with InferenceClient(f"127.0.0.1:{app.port}") as c:
        for i in range(n):
            x = rng.standard_normal((1, 4)).astype(np.float32)
            key = f"user-{i}" if i % 4 else None  # some keyless traffic too
            result = c.infer("classifier", {"input": x}, routing_key=key, request_id=f"r{i}")
            answers.append((x, result.outputs["scores"], result.version))
    return answers


def test_shadow_never_changes_responses_and_reports_disagreement(server: App) -> None:
    _add_candidate(server, build_classifier_perturbed)
    with _admin(server) as admin:
        # No guard rails: ~1% disagreement would (rightly) roll it back before the 1500 calls.
        admin.start("classifier", "3", shadow_ppm=1_000_000, reason="shadow test", no_guard=True)
        answers = _traffic(server, 1500)
        assert server.shadow.force_flush(timeout=20)
        report = admin.shadow_report("classifier")
    with InferenceClient(f"127.0.0.1:{server.port}") as c:
        for x, scores, version in answers[:50]:
            assert version == "1"
            stable = c.infer("classifier", {"input": x}, version="1").outputs["scores"]
            np.testing.assert_array_equal(scores, stable)
    assert {v for _, _, v in answers} == {"1"}
    assert report.candidate_version == "3"
    assert report.sampled == 1500 and report.completed == 1500
    assert report.dropped == report.errors == 0
    # The perturbed candidate flips the argmax on about 1% of normal inputs.
    assert 0.002 < report.disagreement_rate < 0.03
    assert report.disagreement_rate_low < report.disagreement_rate < report.disagreement_rate_high
    detail = json.loads(report.report_json)
    assert detail["worst"] and detail["worst"][0]["request_id"].startswith("r")


def test_failing_candidate_leaves_every_primary_successful(server: App) -> None:
    _add_candidate(server, build_classifier_faulty)
    with _admin(server) as admin:
        admin.start("classifier", "3", shadow_ppm=1_000_000)
        answers = _traffic(server, 400, seed=3)
        assert server.shadow.force_flush(timeout=20)
        report = admin.shadow_report("classifier")
    assert len(answers) == 400  # no call failed
    assert report.errors > 0
    assert report.errors + report.completed + report.dropped + report.timeouts == report.sampled
    assert "failed" in report.report_json or "out of" in report.report_json


def test_shadow_rate_samples_keys_deterministically(server: App) -> None:
    _add_candidate(server, build_classifier_perturbed)
    with _admin(server) as admin:
        admin.start("classifier", "3", shadow_ppm=100_000)
        keys = [f"k{i}" for i in range(600)]
        sampled = {k for k in keys if admin.route("classifier", k).shadow_version == "3"}
        assert 30 < len(sampled) < 95  # about 10 %
        with InferenceClient(f"127.0.0.1:{server.port}") as c:
            x = np.zeros((1, 4), np.float32)
            for k in keys:
                c.infer("classifier", {"input": x}, routing_key=k)
        assert server.shadow.force_flush(timeout=20)
        assert admin.shadow_report("classifier").sampled == len(sampled)


def test_canary_requests_are_not_shadowed_against_themselves(server: App) -> None:
    _add_candidate(server, build_classifier_perturbed)
    with _admin(server) as admin:
        admin.start("classifier", "3", shadow_ppm=1_000_000, canary_ppm=500_000)
        with InferenceClient(f"127.0.0.1:{server.port}") as c:
            x = np.zeros((1, 4), np.float32)
            versions = [
                c.infer("classifier", {"input": x}, routing_key=f"u{i}").version for i in range(300)
            ]
        assert server.shadow.force_flush(timeout=20)
        report = admin.shadow_report("classifier")
    assert report.sampled == versions.count("1")
    assert 0 < versions.count("3") < 300
