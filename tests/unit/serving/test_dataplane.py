"""The data plane without a transport: it routes, runs the version's runner, and raises the
server's own errors (which the gRPC edge maps to status codes) — FakeRunners or the bundled
ONNX models in a real Registry, routing tables from a RolloutController on a MemoryStore."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from protos.inference import grpc_service_pb2 as pb
from server.api.status import code_for
from server.errors import (
    CanaryServeError,
    FailedPrecondition,
    InvalidInput,
    InvalidTensor,
    ModelFailed,
    ModelNotFound,
    ModelVersionNotFound,
    VersionNotReady,
    status_name,
)
from server.rollout.controller import RolloutController
from server.rollout.router import RoutingTable, Stage
from server.rollout.state import StartRollout
from server.serving.dataplane import (
    PARAM_REASON,
    PARAM_STAGE,
    ROUTING_KEY_HEADER,
    DataPlane,
    Draw,
    routing_key,
)
from server.serving.dtypes import by_oip, decode_bytes, encode_bytes
from server.serving.limits import Policy as SchedulingPolicy
from server.serving.registry import LoadState, Registry
from server.serving.runner import OnnxRunner
from server.serving.schedulers import Schedulers
from server.serving.signature import Signature, TensorSpec
from server.shadow.executor import ShadowExecutor
from server.telemetry.tracing import Telemetry, key_hash
from server.testing import FakeClock, FakeRunner, MemoryStore
from tests.support.servers import make_repository
from tests.support.waiting import WAIT

FP32 = by_oip("FP32")
assert FP32 is not None
SIGNATURE = Signature(
    inputs=(TensorSpec("x", FP32, (None,)),), outputs=(TensorSpec("y", FP32, (None,)),)
)


class Plane:
    """Model "m": versions 1 and 2 on FakeRunners, version 3 a file that fails to load."""

    def __init__(
        self,
        root: Path,
        *,
        shadow: ShadowExecutor | None = None,
        draw: Draw | None = None,
        allow_pinning: bool = True,
        telemetry: Telemetry | None = None,
    ) -> None:
        for version in "123":
            (root / "m" / version).mkdir(parents=True)
            (root / "m" / version / "model.onnx").write_bytes(b"")
        self.telemetry = telemetry
        self.runners = {v: FakeRunner(signature=SIGNATURE) for v in "12"}
        self.registry = Registry(root, self._runner)
        self.registry.load_all()
        self.plane = DataPlane(
            self.registry,
            RoutingTable(),
            shadow,
            **({"draw": draw} if draw else {}),
            telemetry=telemetry,
        )
        self.rollouts = RolloutController(
            MemoryStore(),
            ready_versions=self.registry.ready_versions,
            publish=self._publish,
            clock=FakeClock(now=1_000.0),
            allow_pinning=allow_pinning,
        )
        self.rollouts.adopt({"m": "1"})
        self.plane.starting = False  # as App.start does once every model is loaded and routed

    def _runner(self, path: Path) -> FakeRunner:
        runner = self.runners.get(path.parent.name)
        if runner is None:
            raise RuntimeError("not an ONNX file")
        return runner

    def _publish(self, table: RoutingTable) -> None:
        self.plane.table = table

    def start(self, **weights: int) -> None:
        self.rollouts.execute("m", StartRollout("2", **weights), actor="t", reason="test")

    def infer(self, request: pb.ModelInferRequest, key: str | None = None) -> pb.ModelInferResponse:
        return self.plane.infer(request, {} if key is None else {ROUTING_KEY_HEADER: key})


def request(
    x: list[float] | None = None, *, model: str = "m", **fields: str
) -> pb.ModelInferRequest:
    """A request of `model` with input x sent raw (FP32), and any other request fields."""
    r = pb.ModelInferRequest(model_name=model, **fields)
    array = np.asarray([1.5, -2.0] if x is None else x, np.float32)
    r.inputs.add(name="x", datatype="FP32", shape=list(array.shape))
    r.raw_input_contents.append(array.tobytes())
    return r


def output(response: pb.ModelInferResponse, name: str = "y") -> npt.NDArray[np.float32]:
    (index,) = [i for i, o in enumerate(response.outputs) if o.name == name]
    return np.frombuffer(response.raw_output_contents[index], np.float32)


def routed(response: pb.ModelInferResponse) -> tuple[str, str, str]:
    """(version, stage, reason) as the response tells the caller."""
    params = response.parameters
    return (
        response.model_version,
        params[PARAM_STAGE].string_param,
        params[PARAM_REASON].string_param,
    )


@pytest.fixture
def m(tmp_path: Path) -> Plane:
    return Plane(tmp_path / "models")


@pytest.fixture
def shadow() -> Iterator[ShadowExecutor]:
    executor = ShadowExecutor(queue_size=256)
    yield executor
    assert executor.shutdown(WAIT)


# --------------------------------------------------------------------------- routing


def test_a_call_without_a_rollout_is_served_by_stable_and_says_so(m: Plane) -> None:
    response = m.infer(request([1.5, -2.0], id="req-7"))
    assert (response.model_name, response.id) == ("m", "req-7")
    assert routed(response) == ("1", "stable", "no_rollout")
    assert output(response).tolist() == [1.5, -2.0]  # the FakeRunner echoes x
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("y", "FP32", [2])]
    assert m.runners["1"].calls == 2 and m.runners["2"].calls == 1  # one warm-up run each


def test_keyed_calls_follow_the_canary_weight_and_keyless_ones_stay_stable(m: Plane) -> None:
    m.start(canary_ppm=1_000_000)
    assert routed(m.infer(request(), key="user-1")) == ("2", "canary", "hash")
    assert routed(m.infer(request())) == ("1", "stable", "no_key")


def test_the_routing_key_comes_from_metadata_before_the_request_parameter() -> None:
    r = request()
    r.parameters["routing_key"].string_param = "from-param"
    assert routing_key(r, {}) == "from-param"
    assert routing_key(r, {ROUTING_KEY_HEADER: "from-header"}) == "from-header"
    assert routing_key(request(), {ROUTING_KEY_HEADER: ""}) is None  # empty: no key
    assert routing_key(request(), {}) is None


def test_a_pinned_version_is_served_with_reason_pinned(m: Plane) -> None:
    assert routed(m.infer(request(model_version="2"), key="k")) == ("2", "loaded", "pinned")
    m.start(canary_ppm=10)
    assert routed(m.infer(request(model_version="2"))) == ("2", "canary", "pinned")


def test_a_request_id_is_echoed_and_never_left_in_the_next_response(m: Plane) -> None:
    """Responses are copied from a cached template: one call's id must not reach the next."""
    assert m.infer(request(id="first")).id == "first"
    second = m.infer(request())
    assert second.id == "" and routed(second) == ("1", "stable", "no_rollout")


# --------------------------------------------------------------------------- errors


def _typed_wrong() -> pb.ModelInferRequest:
    r = pb.ModelInferRequest(model_name="m")
    r.inputs.add(name="x", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    return r


def _bad_key() -> pb.ModelInferRequest:
    r = request()
    r.parameters["routing_key"].int64_param = 7
    return r


ERRORS: list[tuple[str, Callable[[], pb.ModelInferRequest], type[CanaryServeError], str, str]] = [
    ("unknown model", lambda: request(model="nope"), ModelNotFound, "NOT_FOUND", "'nope'"),
    (
        "unknown version",
        lambda: request(model_version="9"),
        ModelVersionNotFound,
        "NOT_FOUND",
        "no version '9'; versions: 1, 2, 3",
    ),
    (
        "version that failed to load",
        lambda: request(model_version="3"),
        VersionNotReady,
        "UNAVAILABLE",
        "version '3' is UNAVAILABLE: failed to load: not an ONNX file",
    ),
    ("wrong datatype", _typed_wrong, InvalidTensor, "INVALID_ARGUMENT", "expected datatype FP32"),
    ("wrong rank", lambda: request([[1.0]]), InvalidTensor, "INVALID_ARGUMENT", "rank 1"),
    ("routing key not a string", _bad_key, InvalidInput, "INVALID_ARGUMENT", "string_param"),
]


@pytest.mark.parametrize(
    ("case", "make", "error", "status", "needle"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_a_request_that_cannot_be_served_raises_the_error_its_caller_sees(
    m: Plane,
    case: str,
    make: Callable[[], pb.ModelInferRequest],
    error: type[CanaryServeError],
    status: str,
    needle: str,
) -> None:
    with pytest.raises(error) as caught:
        m.infer(make())
    assert needle in str(caught.value)
    assert status_name(caught.value) == code_for(caught.value).name == status
    assert routed(m.infer(request())) == ("1", "stable", "no_rollout")  # and it serves on


def test_a_runner_that_raises_is_the_models_failure_not_the_servers(m: Plane) -> None:
    boom = ValueError("out of bounds")
    m.runners["1"].error = boom
    with pytest.raises(
        ModelFailed, match="model 'm' version '1' failed to run: out of bounds"
    ) as e:
        m.infer(request())
    assert e.value.__cause__ is boom and code_for(e.value).name == "INTERNAL"


def test_a_pin_where_pinning_is_off_is_a_failed_precondition(tmp_path: Path) -> None:
    m = Plane(tmp_path / "models", allow_pinning=False)
    with pytest.raises(FailedPrecondition, match="pinning versions is disabled") as caught:
        m.infer(request(model_version="1"))
    assert code_for(caught.value).name == "FAILED_PRECONDITION"


def test_statistics_count_each_call_for_the_version_that_served_it(m: Plane) -> None:
    for _ in range(3):
        m.infer(request())
    with pytest.raises(InvalidTensor):
        m.infer(request([[1.0]]))  # routed to v1, refused there: v1's failure
    with pytest.raises(ModelNotFound):
        m.infer(request(model="nope"))  # never reached a version
    m.runners["1"].error = RuntimeError("boom")
    with pytest.raises(ModelFailed):
        m.infer(request())
    stats = m.registry.get("m", "1").stats
    assert (stats.success_count, stats.fail_count) == (3, 2)
    assert stats.success_ns >= stats.input_ns + stats.infer_ns + stats.output_ns > 0
    assert stats.fail_ns > 0 and stats.last_inference_ms > 0
    untouched = m.registry.get("m", "2").stats
    assert (untouched.success_count, untouched.fail_count) == (0, 0)


# --------------------------------------------------------------------------- shadow


def test_a_route_that_names_a_shadow_version_hands_the_call_to_the_shadow(
    tmp_path: Path, shadow: ShadowExecutor
) -> None:
    m = Plane(tmp_path / "models", shadow=shadow)
    m.start(shadow_ppm=1_000_000)
    for i in range(20):
        response = m.infer(request([float(i)], id=f"r{i}"), key=f"user-{i}")
        assert routed(response) == ("1", "stable", "hash")  # the caller gets stable's answer
    assert shadow.force_flush(WAIT)
    stats = shadow.stats("m", "2")
    assert stats is not None
    assert (stats.sampled, stats.completed, stats.disagreements, stats.errors) == (20, 20, 0, 0)
    assert m.runners["2"].calls == 1 + 20  # warm-up, then each shadow run


@pytest.mark.parametrize(("draw", "shadowed"), [(0.49, True), (0.5, False)])
def test_keyless_calls_are_shadowed_by_a_draw_against_the_shadow_rate(
    tmp_path: Path, shadow: ShadowExecutor, draw: float, shadowed: bool
) -> None:
    m = Plane(tmp_path / "models", shadow=shadow, draw=lambda: draw)
    m.start(shadow_ppm=500_000)
    assert routed(m.infer(request())) == ("1", "stable", "no_key")
    assert shadow.force_flush(WAIT)
    stats = shadow.stats("m", "2")
    assert (stats.sampled if stats is not None else 0) == int(shadowed)


def test_a_model_without_a_rollout_never_draws_a_shadow(
    tmp_path: Path, shadow: ShadowExecutor
) -> None:
    draws: list[float] = []

    def draw() -> float:
        draws.append(0.0)
        return 0.0

    m = Plane(tmp_path / "models", shadow=shadow, draw=draw)
    m.infer(request())
    assert draws == [] and shadow.stats("m") is None


def test_a_shadow_candidate_that_is_not_ready_is_skipped_and_the_call_succeeds(
    tmp_path: Path, shadow: ShadowExecutor
) -> None:
    m = Plane(tmp_path / "models", shadow=shadow)
    m.start(shadow_ppm=1_000_000)
    (m.registry.root / "m" / "2" / "model.onnx").unlink()
    m.registry.load("m")  # v2 is gone; the published table still names it the candidate
    assert m.registry.versions("m")["2"].state is LoadState.UNAVAILABLE
    assert m.plane.table.models["m"].rollout is not None
    assert routed(m.infer(request(), key="user-1")) == ("1", "stable", "hash")
    assert shadow.force_flush(WAIT)
    assert shadow.stats("m", "2") is None


# --------------------------------------------------------------------------- tracing


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Plane, InMemorySpanExporter]]:
    """Every call traced (ratios 1.0), spans kept in memory."""
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(exporters=[exporter])
    yield Plane(tmp_path / "models", telemetry=telemetry), exporter
    telemetry.shutdown()


def test_each_call_gets_one_span_with_its_route_and_outcome(
    traced: tuple[Plane, InMemorySpanExporter],
) -> None:
    m, exporter = traced
    assert m.telemetry is not None
    m.start(canary_ppm=1_000_000)
    m.infer(request(id="ok-1"), key="alice")
    with pytest.raises(InvalidTensor):
        m.infer(request([[1.0]], id="bad-1"), key="alice")
    ok, bad = exporter.get_finished_spans()
    assert ok.name == bad.name == "ModelInfer"
    assert ok.attributes is not None and bad.attributes is not None
    assert {k: ok.attributes[k] for k in ok.attributes if k.startswith("canary.")} == {
        "canary.model": "m",
        "canary.version": "2",
        "canary.stage": "canary",
        "canary.route.reason": "hash",
        "canary.routing_key.hash": key_hash("alice"),
        "canary.status": "OK",
        "canary.request_id": "ok-1",
    }
    assert ok.attributes["rpc.grpc.status_code"] == 0 and ok.status.is_ok
    assert bad.attributes["canary.status"] == "INVALID_ARGUMENT"
    assert bad.attributes["rpc.grpc.status_code"] == 3 and not bad.status.is_ok
    assert "alice" not in str(dict(ok.attributes))  # the key itself is never recorded
    window = m.telemetry.windows.summary("m", "2", window_s=60)  # the promotion evidence
    assert (window.requests, window.errors) == (2, 1)


def test_a_call_that_fails_before_routing_is_traced_without_a_version(
    traced: tuple[Plane, InMemorySpanExporter],
) -> None:
    m, exporter = traced
    with pytest.raises(ModelNotFound):
        m.infer(request(model="nope", id="lost"))
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["canary.status"] == "NOT_FOUND"
    assert span.attributes["canary.request_id"] == "lost"
    assert "canary.model" not in span.attributes and "canary.version" not in span.attributes


# --------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataPlane, Path]]:
    """The bundled classifier, counter and shouter in a Registry of OnnxRunners; no rollout."""
    root = make_repository(tmp_path_factory.mktemp("bundled"))
    registry = Registry(root, lambda path: OnnxRunner(path, intra_op_threads=1))
    registry.load_all()
    plane = DataPlane(registry, RoutingTable())
    rollouts = RolloutController(
        MemoryStore(),
        ready_versions=registry.ready_versions,
        publish=lambda table: setattr(plane, "table", table),
    )
    stables = {name: registry.highest_ready(name) for name in registry.models()}
    rollouts.adopt({name: stable for name, stable in stables.items() if stable is not None})
    assert set(plane.table.models) == {"classifier", "counter", "shouter"}
    plane.starting = False
    yield plane, root


def onnxruntime_says(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)  # type: ignore[no-any-return]


def test_the_bundled_classifier_answers_like_onnxruntime(bundled: tuple[DataPlane, Path]) -> None:
    plane, root = bundled
    x = np.array([[0.5, -1.0, 2.0, 0.1], [1.5, 0.3, -0.7, 2.2]], np.float32)
    r = pb.ModelInferRequest(model_name="classifier")
    r.inputs.add(name="input", datatype="FP32", shape=[2, 4])
    r.raw_input_contents.append(x.tobytes())
    response = plane.infer(r, {})
    assert routed(response) == ("2", "stable", "no_rollout")
    (scores,) = response.outputs
    assert (scores.name, scores.datatype, list(scores.shape)) == ("scores", "FP32", [2, 3])
    got = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 3)
    want = onnxruntime_says(root / "classifier" / "2" / "model.onnx", {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_the_bundled_shouter_answers_bytes_like_onnxruntime(
    bundled: tuple[DataPlane, Path],
) -> None:
    plane, root = bundled
    text = ["hello", "wörld"]
    r = pb.ModelInferRequest(model_name="shouter")
    r.inputs.add(name="text", datatype="BYTES", shape=[2])
    r.raw_input_contents.append(encode_bytes(text))
    response = plane.infer(r, {})
    got = decode_bytes("upper", response.raw_output_contents[0], 2)
    want = onnxruntime_says(root / "shouter" / "1" / "model.onnx", {"text": np.array(text, object)})
    assert got == [w.encode() for w in want[0]]
    assert got[0] == b"HELLO"


def test_a_request_announced_to_its_scheduler_is_withdrawn_when_decoding_fails(m: Plane) -> None:
    """A leader waits for announced requests: one that fails validation must not stay owed."""
    m.plane.schedulers = Schedulers(lambda model: SchedulingPolicy())
    scheduler = m.plane.schedulers.get("m", "1", m.runners["1"], Stage.STABLE)
    scheduler.company.ran_alone(1e-3)  # a model where batching pays: its calls are announced
    with pytest.raises(InvalidTensor):
        m.infer(_typed_wrong())
    assert scheduler.coming() == 0
    assert output(m.infer(request())).tolist() == [1.5, -2.0]
    assert (scheduler.coming(), scheduler.running(), scheduler.stats.executions) == (0, 0, 1)
