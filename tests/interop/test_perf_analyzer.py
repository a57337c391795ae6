"""Interop: Triton's own load generator, perf_analyzer, against a running canaryserve.

perf_analyzer (the C++ binary of the tritonclient 2.50.0 wheel) is installed by
.ci/install-perf-analyzer.sh as .tools/perf_analyzer/perf_analyzer, a wrapper that finds the
libcudart it links. Without it these tests skip locally and fail under CI (CI set).

Each run measures three windows of 0.5 s with the stability check relaxed (WINDOWS): on a
loaded 2-core machine three windows within the default 10 % may never come. A fixed count
(`--request-count`) is not used: perf_analyzer 2.50 sometimes waits forever after the server
has answered every request it sent (seen here with two runs at once).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import grpc
import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.inference import InferenceClient
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from tests.support.servers import start_app

REPO = Path(__file__).resolve().parents[2]
PERF_ANALYZER = REPO / ".tools" / "perf_analyzer" / "perf_analyzer"
TOKEN = "pa"
MODEL = "classifier"
STABLE, CANDIDATE = "2", "1"
#: A whole perf_analyzer run: seconds normally, tens of seconds on a very busy machine.
RUN_TIMEOUT = 90
#: Three windows of 0.5 s, "stable" when within 1000 % of each other: so, the first three.
WINDOWS = ("--measurement-interval", "500", "--stability-percentage", "1000")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; under CI a missing perf_analyzer is a failure, not a skip."""
    if _in_ci():
        pytest.fail(f"{reason}; CI must have it (.ci/run runs .ci/install-perf-analyzer.sh)")
    pytest.skip(f"{reason} (run .ci/install-perf-analyzer.sh)")


@pytest.fixture(scope="module")
def perf_analyzer() -> Path:
    if not os.access(PERF_ANALYZER, os.X_OK):
        _unavailable(f"{PERF_ANALYZER.relative_to(REPO)} is not installed")
    proc = subprocess.run(
        [str(PERF_ANALYZER), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        _unavailable(f"{PERF_ANALYZER.relative_to(REPO)} does not run: {proc.stderr.strip()}")
    return PERF_ANALYZER


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(tmp_path_factory.mktemp("perf-analyzer"), admin_tokens={"ops": TOKEN})
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def target(server: App) -> str:
    return f"127.0.0.1:{server.port}"


class Report:
    """One perf_analyzer run: its exit code, output, and the figures of its report."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.returncode = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.client: dict[str, float] = {}
        self.server: dict[str, float] = {}
        section = self.client
        for line in proc.stdout.splitlines():
            label, _, value = line.strip().partition(":")
            if label == "Server":
                section = self.server
            number = re.match(r"\s*([0-9.]+)", value)
            if number and label not in section:
                section[label] = float(number.group(1))

    def check(self) -> Report:
        assert self.returncode == 0, self.output
        assert "error" not in self.output.lower(), self.output
        return self


def launch(binary: Path, target: str, *args: str) -> subprocess.Popen[str]:
    command = [str(binary), "-i", "grpc", "-u", target, "-m", MODEL, *WINDOWS, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> Report:
    """The run's report; a run still going after RUN_TIMEOUT is killed and fails the test with
    what it printed so far."""
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"perf_analyzer ran over {RUN_TIMEOUT} s: {proc.args!r}\n{out}{err}")
    return Report(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))


def run(binary: Path, target: str, *args: str) -> Report:
    return finish(launch(binary, target, *args))


def stats(target: str, version: str) -> pb.ModelStatistics:
    with InferenceClient(target) as c:
        [s] = c.statistics(MODEL, version)
    return s


def test_runs_without_shape_and_its_server_figures_are_canaryserves(
    perf_analyzer: Path, target: str
) -> None:
    """No --shape: ModelConfig's max_batch_size and dims tell perf_analyzer the input shape;
    the server section it prints is canaryserve's ModelStatistics, and agrees with them."""
    with InferenceClient(target) as c:
        config = c.config(MODEL)
    assert config.max_batch_size > 0 and list(config.input[0].dims) == [4]
    before = stats(target, STABLE)
    report = run(perf_analyzer, target, "--concurrency-range", "4")
    report.check()
    sent = report.client["Request count"]
    assert sent > 0 and report.client["Throughput"] > 0
    assert report.client["p99 latency"] >= report.client["p50 latency"] > 0
    # Its server section is the statistics' change over the same windows: the same requests
    # but for those in flight at a window's edges.
    served = report.server["Successful request count"]
    assert 0.8 * sent <= served <= 1.25 * sent, (sent, served)
    assert report.server["Inference count"] == served  # batch 1: one inference a request
    assert 0 < report.server["Execution count"] <= served  # batching merged some, or none
    assert report.server["Avg request latency"] > 0
    # canaryserve's own statistics, read afterwards: all of it (windows and the time between
    # them) on stable, and no failure.
    after = stats(target, STABLE)
    total = after.inference_stats.success.count - before.inference_stats.success.count
    assert total >= max(sent, served)
    assert after.inference_count - before.inference_count == total
    assert after.inference_stats.fail.count == before.inference_stats.fail.count


def test_batch_4_counts_four_inferences_a_request(perf_analyzer: Path, target: str) -> None:
    """-b 4 sends [4, 4] tensors; Triton's statistics count 4 inferences and a batch of 4 per
    request when no two requests are merged (concurrency 1)."""
    before = stats(target, CANDIDATE)
    report = run(perf_analyzer, target, "-x", CANDIDATE, "-b", "4", "--concurrency-range", "1")
    report.check()
    assert report.client["Request count"] > 0 and report.client["Throughput"] > 0
    requests = report.server["Successful request count"]
    assert requests > 0
    assert report.server["Inference count"] == 4 * requests
    assert report.server["Execution count"] == requests  # one at a time: nothing to merge
    after = stats(target, CANDIDATE)
    total = after.inference_stats.success.count - before.inference_stats.success.count
    assert total >= requests
    assert after.inference_count - before.inference_count == 4 * total
    sizes = {b.batch_size: b.compute_infer.count for b in after.batch_stats}
    old = {b.batch_size: b.compute_infer.count for b in before.batch_stats}
    assert sizes.get(4, 0) - old.get(4, 0) == total
    assert {size for size, runs in sizes.items() if runs != old.get(size, 0)} == {4}


def _key_for(admin: AdminClient, version: str) -> str:
    for i in range(1000):
        if admin.route(MODEL, f"user-{i}").version == version:
            return f"user-{i}"
    raise AssertionError(f"no key of 1000 routes to version {version}")


def test_a_canary_serves_both_versions_under_perf_analyzer(
    perf_analyzer: Path, target: str
) -> None:
    """Two perf_analyzers at once during a 50 % canary, each with a routing key as a request
    parameter (one key in the canary, one out): both finish without an error, and each
    version served the requests of its key."""
    with AdminClient(open_channel(target), TOKEN) as admin:
        admin.start(MODEL, CANDIDATE, canary_ppm=500_000, reason="perf_analyzer interop")
        try:
            keys = {version: _key_for(admin, version) for version in (STABLE, CANDIDATE)}
            before = {version: stats(target, version) for version in keys}
            load = ("--concurrency-range", "2")
            runs = [
                launch(
                    perf_analyzer, target, "--request-parameter", f"routing_key:{key}:string", *load
                )
                for key in keys.values()
            ]
            try:
                reports = dict(zip(keys, [finish(proc) for proc in runs], strict=True))
            finally:
                for proc in runs:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            assert admin.get(MODEL).candidate_version == CANDIDATE  # still a canary throughout
        finally:
            admin.transition("rollback", MODEL, reason="perf_analyzer interop done")
    for version, report in reports.items():
        report.check()
        sent = report.client["Request count"]
        assert sent > 0, version
        after = stats(target, version)
        served = after.inference_stats.success.count - before[version].inference_stats.success.count
        assert served >= sent, (version, sent, served)
        assert after.inference_stats.fail.count == before[version].inference_stats.fail.count


def test_shared_memory_is_not_supported(perf_analyzer: Path, target: str) -> None:
    """--shared-memory system needs the system shared memory extension: canaryserve does not
    advertise it and answers its RPCs UNIMPLEMENTED, so perf_analyzer stops at once, saying
    so; the server goes on serving."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        extensions = stub.ServerMetadata(pb.ServerMetadataRequest()).extensions
        assert "system_shared_memory" not in extensions
        assert "cuda_shared_memory" not in extensions
        status = channel.unary_unary(
            "/inference.GRPCInferenceService/SystemSharedMemoryStatus",
            request_serializer=lambda _: b"",
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.RpcError) as caught:
            status(None, timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    report = run(perf_analyzer, target, "--shared-memory", "system")
    assert report.returncode != 0
    assert "Method not found" in report.output, report.output
    with InferenceClient(target) as c:
        result = c.infer(MODEL, {"input": np.zeros((1, 4), np.float32)})
    assert result.version == STABLE
