"""Scheduling end to end: a slow candidate sheds to stable and is rolled back; batched answers
equal unbatched ones; ModelConfig and ModelStatistics speak Triton's batching and queue terms."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from client.admin import AdminClient
from client.errors import ClientError
from client.inference import InferenceClient
from models.build import build_classifier_slow, build_mlp
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from tests.conftest import start_app
from tests.support.release import FAST_POLICY
from tests.support.waiting import wait_for

TOKEN = "sched"
OPERATOR = (("authorization", f"Bearer {TOKEN}"),)  # loading needs the admin token
#: 50 % canary at once; the error-rate gate is strict and the latency gate loose, so the
#: rollback below is the fallbacks' doing.
POLICY = {
    **FAST_POLICY,
    "steps": [500_000],
    "max_error_rate_increase": 0.01,
    "max_latency_p99_ratio": 10_000.0,
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    app = start_app(
        tmp_path,
        admin_tokens={"ops": TOKEN},
        promotion_tick_seconds=0.05,
        workers=16,
        models={"classifier": {"stable": "1"}},
    )
    yield app
    app.stop(0)


class Load:
    """Keyed closed-loop traffic from `threads` clients until stopped; every answer kept."""

    def __init__(self, app: App, threads: int) -> None:
        self.target = f"127.0.0.1:{app.port}"
        self.stop = threading.Event()
        self.answers: list[tuple[str, str, str, float]] = []  # version, stage, reason, seconds
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in range(threads)]

    def _run(self, thread: int) -> None:
        rng = np.random.default_rng(thread)
        with InferenceClient(self.target) as c:
            i = 0
            while not self.stop.is_set():
                x = rng.standard_normal((1, 4)).astype(np.float32)
                began = time.perf_counter()
                try:
                    r = c.infer("classifier", {"input": x}, routing_key=f"u{thread}-{i}")
                except ClientError as exc:
                    with self.lock:
                        self.errors.append(str(exc))
                else:
                    took = time.perf_counter() - began
                    with self.lock:
                        self.answers.append((r.version, r.stage, r.reason, took))
                i += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_a_slow_candidate_sheds_to_stable_and_is_rolled_back(server: App) -> None:
    build_classifier_slow(server.config.models_dir / "classifier" / "5" / "model.onnx")
    with InferenceClient(f"127.0.0.1:{server.port}", metadata=OPERATOR) as c:
        c.load("classifier")
    with AdminClient(grpc.insecure_channel(f"127.0.0.1:{server.port}"), TOKEN) as admin:
        admin.start("classifier", "5", automatic=True, policy_json=json.dumps(POLICY))
        # 16 callers, half of them keyed to the candidate: more than its slot and its queue of
        # 4 hold, so it is overloaded however fast this machine runs it.
        with Load(server, threads=16) as load:
            deadline = time.monotonic() + 60
            while admin.get("classifier").candidate_version and time.monotonic() < deadline:
                time.sleep(0.05)
        final = admin.get("classifier")
        explained = admin.explain("classifier")
        operations = [e.operation for e in admin.audit("classifier")]
    assert load.errors == []  # every caller got an answer
    assert final.stable_version == "1" and final.last_candidate_version == "5"
    assert "auto_rollback" in operations
    assert explained.action == "rollback"
    gate = next(check for check in explained.checks if check.name == "error_rate")
    assert gate.status == "fail" and gate.observed > gate.threshold
    shed = [a for a in load.answers if a[2] == "candidate_overloaded"]
    assert shed and all(version == "1" and stage == "stable" for version, stage, _, _ in shed)
    scheduler = server.schedulers.find("classifier", "5")
    assert scheduler is not None and scheduler.stats.fallbacks == len(shed)
    assert scheduler.stats.rejected + scheduler.stats.timeouts == len(shed)
    # the candidate holds at most its slot and its queue: stable answers stay quick
    stable = sorted(took for _, stage, reason, took in load.answers if reason == "hash")
    assert stable and stable[len(stable) // 2] < 0.05


def test_candidate_overload_fail_refuses_instead(tmp_path: Path) -> None:
    app = start_app(
        tmp_path,
        admin_tokens={"ops": TOKEN},
        models={
            "classifier": {
                "stable": "1",
                "candidate_overload": "fail",
                "candidate_max_queue_size": 0,
            }
        },
    )
    try:
        build_classifier_slow(app.config.models_dir / "classifier" / "5" / "model.onnx")
        target = f"127.0.0.1:{app.port}"
        with InferenceClient(target, metadata=OPERATOR) as c:
            c.load("classifier")
        with AdminClient(grpc.insecure_channel(target), TOKEN) as admin:
            admin.start("classifier", "5", canary_ppm=500_000)
        with Load(app, threads=4) as load:
            deadline = time.monotonic() + 30
            while not load.errors and time.monotonic() < deadline:
                time.sleep(0.02)
        assert load.errors and all("RESOURCE_EXHAUSTED" in e for e in load.errors)
        assert "version '5' is overloaded: its queue is full" in load.errors[0]
        assert not any(a[2] == "candidate_overloaded" for a in load.answers)
    finally:
        app.stop(0)


def _fixed_model(path: Path) -> None:
    """y = x for x of shape [1, 4]: no batch dimension."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


@pytest.fixture
def batching_server(tmp_path: Path) -> Iterator[App]:
    models = tmp_path / "repository"
    build_mlp(models / "mlp" / "1" / "model.onnx", seed=0)
    _fixed_model(models / "fixed" / "1" / "model.onnx")
    app = start_app(tmp_path, models_dir=models, workers=16)
    yield app
    app.stop(0)


def test_model_config_reports_batching_as_triton_does(batching_server: App) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{batching_server.port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    mlp = stub.ModelConfig(pb.ModelConfigRequest(name="mlp")).config
    assert mlp.max_batch_size == 16
    assert mlp.dynamic_batching.max_queue_delay_microseconds == 4000
    assert [list(i.dims) for i in mlp.input] == [[256]]  # the batch dimension left out
    assert [list(o.dims) for o in mlp.output] == [[10]]
    assert mlp.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert mlp.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert [(g.kind, g.count) for g in mlp.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 1)]
    fixed = stub.ModelConfig(pb.ModelConfigRequest(name="fixed")).config
    assert fixed.max_batch_size == 0 and [list(i.dims) for i in fixed.input] == [[1, 4]]
    assert fixed.WhichOneof("scheduling_choice") is None
    channel.close()


def test_model_config_reports_configured_microseconds_exactly(tmp_path: Path) -> None:
    """249 µs is 0.000249 s, which truncation would report as 248."""
    build_mlp(tmp_path / "repository" / "mlp" / "1" / "model.onnx", seed=0)
    app = start_app(
        tmp_path,
        models_dir=tmp_path / "repository",
        max_queue_delay_microseconds=249,
        queue_timeout_seconds=0.000249,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        batching = stub.ModelConfig(pb.ModelConfigRequest(name="mlp")).config.dynamic_batching
        channel.close()
    finally:
        app.stop(0)
    assert batching.max_queue_delay_microseconds == 249
    assert batching.default_queue_policy.default_timeout_microseconds == 249


def test_batched_answers_equal_unbatched_ones_and_a_bad_request_fails_alone(
    batching_server: App, tmp_path: Path
) -> None:
    session = ort.InferenceSession(
        str(batching_server.config.models_dir / "mlp" / "1" / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1 + i % 3, 256)).astype(np.float32) for i in range(96)]
    bad = {7, 40, 77}  # wrong width: fails validation, alone
    target = f"127.0.0.1:{batching_server.port}"
    results: dict[int, object] = {}

    def client(indices: range) -> None:
        with InferenceClient(target) as c:
            for i in indices:
                x = inputs[i][:, :255] if i in bad else inputs[i]
                try:
                    results[i] = c.infer("mlp", {"input": x}).outputs["logits"]
                except ClientError as exc:
                    results[i] = exc

    threads = [threading.Thread(target=client, args=(range(t, 96, 12),)) for t in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, x in enumerate(inputs):
        if i in bad:
            assert isinstance(results[i], ClientError) and results[i].code == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
        else:
            [expected] = session.run(["logits"], {"input": x})
            np.testing.assert_allclose(results[i], expected, rtol=1e-5, atol=1e-5)  # type: ignore[arg-type]
    with InferenceClient(target) as c:
        [stats] = c.statistics("mlp", "1")
    assert stats.inference_stats.success.count == 93
    assert stats.execution_count <= 93
    assert sum(b.compute_infer.count for b in stats.batch_stats) == stats.execution_count
    rows = sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats)
    assert rows == sum(len(x) for i, x in enumerate(inputs) if i not in bad)
    assert stats.inference_count == rows  # Triton's meaning: each row is one inference
    assert stats.inference_stats.queue.count == 93


TRITON_CONFIG = """
import json, sys
import numpy as np
import tritonclient.grpc as tc
client = tc.InferenceServerClient(sys.argv[1])
config = client.get_model_config("mlp", as_json=True)["config"]
x = np.zeros((3, 256), dtype=np.float32)  # a batch of 3 rows, as perf_analyzer's -b 3 sends
inp = tc.InferInput("input", [3, 256], "FP32")
inp.set_data_from_numpy(x)
out = client.infer("mlp", [inp]).as_numpy("logits")
print(json.dumps({"config": config, "shape": list(out.shape)}))
"""


def test_tritonclient_reads_the_batching_config(batching_server: App) -> None:
    if importlib.util.find_spec("tritonclient") is None:  # never imported here: see test_interop
        pytest.skip("tritonclient is not installed")
    proc = subprocess.run(
        [sys.executable, "-c", TRITON_CONFIG, f"127.0.0.1:{batching_server.port}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    config = seen["config"]
    assert config["max_batch_size"] == 16
    assert config["input"][0]["dims"] == ["256"]
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 64
    assert config["instance_group"] == [{"kind": "KIND_CPU", "count": 1}]
    assert seen["shape"] == [3, 10]


def test_an_isolated_version_learns_its_run_cost_and_leaders_wait_for_company(
    tmp_path: Path,
) -> None:
    """The server's thread spends no CPU while an isolated version runs in its process: the
    run's wall time is what the scheduler learns, so overlapping calls gather into batches."""
    build_classifier_slow(tmp_path / "repository" / "slow" / "1" / "model.onnx", 2048)
    app = start_app(tmp_path, models_dir=tmp_path / "repository", workers=16, isolation="process")
    try:
        target = f"127.0.0.1:{app.port}"
        stop = threading.Event()

        def client() -> None:
            with InferenceClient(target) as c:
                while not stop.is_set():
                    c.infer("slow", {"input": np.ones((1, 4), np.float32)})

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        try:
            scheduler = wait_for(lambda: app.schedulers.find("slow", "1"))
            wait_for(lambda: scheduler.stats.gathers > 0, timeout=30)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert scheduler.company.run_cpu_s >= 150e-6  # a run and its round trip
    finally:
        app.stop(0)
