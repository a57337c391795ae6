"""Warm-up: a synthesized sample a good model refuses never makes it unavailable; a configured
sample (Triton's model_warmup: zeros, random or a file; batch size; count) that fails does."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper

from client.errors import ClientError
from client.inference import InferenceClient
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.config import WARMUP_INPUTS, ConfigError, WarmupConfig, load_config
from server.errors import InvalidTensor
from server.serving import warmup
from server.serving.runner import Arrays, OnnxRunner, Runner
from server.serving.signature import Signature
from tests.conftest import make_repository, start_app


def _parser(path: Path) -> None:
    """number = Cast(text: STRING [n] -> INT32): serves "42" as 42, cannot parse ""."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["text"], ["number"], to=TensorProto.INT32)],
        "parser",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("number", TensorProto.INT32, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def _repository(tmp: Path, model_toml: str | None = None) -> Path:
    repository = make_repository(tmp / "repo")
    _parser(repository / "parser" / "1" / "model.onnx")
    if model_toml is not None:
        (repository / "parser" / "config.toml").write_text(model_toml)
    return repository


def _parse(target: str, texts: list[bytes]) -> pb.ModelInferResponse:
    request = pb.ModelInferRequest(model_name="parser")
    request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    request.inputs[0].contents.bytes_contents.extend(texts)
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)


class Recording:
    """A runner that records what it was asked to run (warm-up included), then runs it."""

    runs: list[Arrays]
    lock = threading.Lock()

    def __init__(self, inner: Runner) -> None:
        self._inner = inner
        self.runs = []

    @property
    def signature(self) -> Signature:
        return self._inner.signature

    def run(self, outputs: Sequence[str], feeds: Arrays) -> list[npt.NDArray[np.generic]]:
        with self.lock:
            self.runs.append(feeds)
        return self._inner.run(outputs, feeds)


def _recording_app(
    tmp: Path, repository: Path, models: dict[str, object]
) -> tuple[App, dict[str, Recording]]:
    runners: dict[str, Recording] = {}

    def factory(path: Path) -> Runner:
        runner = Recording(OnnxRunner(path, intra_op_threads=1))
        runners[f"{path.parent.parent.name}/{path.parent.name}"] = runner
        return runner

    config = load_config(
        None,
        {
            "models_dir": repository,
            "state_dir": tmp / "state",
            "port": 0,
            "metrics_port": 0,
            "models": models,
        },
    )
    app = App(config, runner_factory=factory)
    app.start()
    return app, runners


def test_a_model_that_refuses_synthesized_zeros_is_ready_and_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="server.serving.loader"):
        app = start_app(tmp_path, models_dir=_repository(tmp_path))
    try:
        target = f"127.0.0.1:{app.port}"
        with InferenceClient(target) as client:
            (entry,) = [m for m in client.index() if m.name == "parser"]
            assert (entry.state, entry.reason) == ("READY", "")
        response = _parse(target, [b"42", b"-7"])
        assert np.frombuffer(response.raw_output_contents[0], np.int32).tolist() == [42, -7]
    finally:
        app.stop(0)
    (warning,) = [r for r in caplog.records if "parser" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "warm-up with synthesized zeros failed" in warning.getMessage()
    assert "[models.parser.warmup]" in warning.getMessage()


def test_a_configured_sample_that_fails_makes_the_version_unavailable_with_the_reason(
    tmp_path: Path,
) -> None:
    app = start_app(
        tmp_path, models_dir=_repository(tmp_path), models={"parser": {"warmup": {"count": 2}}}
    )
    try:
        target = f"127.0.0.1:{app.port}"
        with InferenceClient(target) as client:
            (entry,) = [m for m in client.index() if m.name == "parser"]
            assert entry.state == "UNAVAILABLE"
            assert entry.reason.startswith("warm-up failed:")
            with pytest.raises(ClientError) as info:
                client.infer("parser", {"text": np.array(["1"], dtype=object)})
            assert info.value.code == "UNAVAILABLE" and "warm-up failed" in info.value.details
    finally:
        app.stop(0)


def test_a_file_sample_from_the_model_directory_runs_count_times_at_batch_size(
    tmp_path: Path,
) -> None:
    """The per-model config.toml in the model directory names the sample; bytes arrays feed
    BYTES inputs; batch_size repeats the file's rows; count repeats the run."""
    repository = _repository(
        tmp_path,
        '[warmup]\ninputs = "file"\nfile = "warmup/sample.npz"\nbatch_size = 3\ncount = 2\n',
    )
    (repository / "parser" / "warmup").mkdir()
    np.savez(repository / "parser" / "warmup" / "sample.npz", text=np.array([b"7", b"8"]))
    app, runners = _recording_app(tmp_path, repository, {})
    try:
        runs = runners["parser/1"].runs
        assert len(runs) == 2
        assert runs[0]["text"].tolist() == ["7", "8"] * 3
        assert np.frombuffer(
            _parse(f"127.0.0.1:{app.port}", [b"5"]).raw_output_contents[0], np.int32
        ).tolist() == [5]
    finally:
        app.stop(0)


def test_random_samples_fill_the_batch_and_a_missing_file_is_the_reason(tmp_path: Path) -> None:
    repository = _repository(tmp_path)
    app, runners = _recording_app(
        tmp_path,
        repository,
        {
            "classifier": {"warmup": {"inputs": "random", "batch_size": 4}},
            "counter": {"warmup": {"inputs": "file", "file": "absent.npz"}},
        },
    )
    try:
        (run,) = runners["classifier/1"].runs
        assert run["input"].shape == (4, 4) and run["input"].dtype == np.float32
        assert np.unique(run["input"]).size == 16  # random, not zeros
        index = {(m.model, m.version): m for m in app.registry.index()}
        counter = index[("counter", "1")]
        assert counter.state.value == "UNAVAILABLE"
        assert "warm-up failed" in counter.reason and "absent.npz" in counter.reason
    finally:
        app.stop(0)


def test_a_file_that_does_not_fit_the_model_names_the_input(tmp_path: Path) -> None:
    sig = OnnxRunner(make_repository(tmp_path) / "classifier" / "1" / "model.onnx").signature
    settings = WarmupConfig(inputs="file", file="s.npz")
    np.savez(tmp_path / "s.npz", input=np.zeros((1, 4), np.float64))
    with pytest.raises(InvalidTensor, match=r"'input'.*FP32.*float64"):
        warmup.sample(sig, tmp_path, settings)
    np.savez(tmp_path / "s.npz", input=np.zeros((1, 5), np.float32))
    with pytest.raises(InvalidTensor, match=r"'input'.*dimension 1 must be 4"):
        warmup.sample(sig, tmp_path, settings)
    np.savez(tmp_path / "s.npz", other=np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="missing: input; not inputs: other"):
        warmup.sample(sig, tmp_path, settings)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"inputs": "ones"}, 'inputs must be one of "zeros", "random", "file"'),
        ({"inputs": "file"}, 'needs file = "<name>.npz"'),
        ({"file": "w.npz"}, 'file is read only with inputs = "file"'),
        ({"inputs": "file", "file": "../elsewhere.npz"}, "inside the model directory"),
        ({"inputs": "file", "file": "/abs/w.npz"}, "inside the model directory"),
        ({"inputs": "file", "file": "w.npy"}, "must be an .npz path"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"count": 0}, "count must be at least 1"),
        ({"count": "2"}, "count' must be an integer"),
        ({"runs": 2}, "unknown key(s) ['runs']"),
    ],
)
def test_warmup_tables_are_validated_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="warmup") as info:
        load_config(None, {"models": {"m": {"warmup": table}}})
    assert message in str(info.value)
    assert "[models.m.warmup]" in str(info.value)


def test_the_config_and_the_warmup_module_agree_on_the_sample_kinds() -> None:
    assert WARMUP_INPUTS == warmup.INPUTS
    assert load_config(None, {"models": {"m": {"warmup": {}}}}).models["m"].warmup == WarmupConfig()
