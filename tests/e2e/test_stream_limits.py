"""Streams cannot take the unary path down: at most `max_streams` are open at once (the rest
are refused at once), idle ones are ended after `stream_idle_timeout_seconds`, and calls
beyond `max_concurrent_calls` are refused at once instead of queueing for a thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.config import ConfigError, load_config
from server.serving.dtypes import by_oip
from server.serving.signature import Signature, TensorSpec
from tests.conftest import start_app
from tests.support.waiting import wait_for

#: How long a test waits for something that must happen (never a timing assertion).
PATIENCE_S = 30.0

X = np.zeros((1, 4), dtype=np.float32)


def classify(rows: int = 1) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="classifier")
    request.inputs.add(name="input", datatype="FP32", shape=[rows, 4])
    request.raw_input_contents.append(np.zeros((rows, 4), dtype=np.float32).tobytes())
    return request


class Held:
    """A request stream the test controls: it sends what is put in, ends on `close`."""

    def __init__(self) -> None:
        self._queue: queue.Queue[pb.ModelInferRequest | None] = queue.Queue()

    def __iter__(self) -> Iterator[pb.ModelInferRequest]:
        while (item := self._queue.get()) is not None:
            yield item

    def send(self, request: pb.ModelInferRequest) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)


class Streams:
    """Open ModelStreamInfer calls and what became of each: a `done` event per call."""

    def __init__(self, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
        self._stub = stub
        self.calls: list[tuple[Held, grpc.Future, threading.Event]] = []
        self._all_done = threading.Condition()

    def open(self) -> tuple[Held, grpc.Future, threading.Event]:
        held = Held()
        call = self._stub.ModelStreamInfer(iter(held))
        done = threading.Event()
        call.add_done_callback(lambda _call: self._mark(done))
        entry = (held, call, done)
        self.calls.append(entry)
        return entry

    def _mark(self, done: threading.Event) -> None:
        with self._all_done:
            done.set()
            self._all_done.notify_all()

    def wait_ended(self, count: int) -> list[grpc.Future]:
        """Wait until `count` calls have ended; return them."""
        with self._all_done:
            ok = self._all_done.wait_for(
                lambda: sum(d.is_set() for _, _, d in self.calls) >= count, timeout=PATIENCE_S
            )
        assert ok, f"fewer than {count} streams ended within {PATIENCE_S} s"
        return [call for _, call, done in self.calls if done.is_set()]

    def close(self) -> None:
        for held, call, _ in self.calls:
            held.close()
            call.cancel()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    app = start_app(tmp_path, workers=8)  # max_streams: its default, a quarter of workers
    yield app
    app.stop(0)


def test_idle_streams_cannot_starve_unary_calls(server: App) -> None:
    workers, limit = server.config.workers, server.config.stream_limit
    assert limit == 2  # the default for 8 workers
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        streams = Streams(stub)
        try:
            for _ in range(workers + 2):
                streams.open()  # each sends nothing
            refused = streams.wait_ended(workers + 2 - limit)
            # Unary calls still find a thread, and answer (the deadline only bounds a failure).
            ready = stub.ServerReady.future(pb.ServerReadyRequest(), timeout=PATIENCE_S)
            infer = stub.ModelInfer.future(classify(), timeout=PATIENCE_S)
            assert ready.result().ready
            assert infer.result().model_name == "classifier"
            for call in refused:
                assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert f"{limit} are open" in call.details()
                assert "max_streams" in call.details()
            still_open = [call for _, call, done in streams.calls if not done.is_set()]
            assert len(still_open) == limit
            # An admitted stream serves as usual.
            held, call, _ = next(e for e in streams.calls if not e[2].is_set())
            held.send(classify())
            answer = next(call)
            assert not answer.error_message and answer.infer_response.model_name == "classifier"
        finally:
            streams.close()


def test_an_idle_stream_is_ended_and_frees_its_place(tmp_path: Path) -> None:
    app = start_app(tmp_path, workers=4, max_streams=1, stream_idle_timeout_seconds=0.5)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            streams = Streams(stub)
            try:
                # A stream that keeps sending is not idle, however long it lives.
                busy = list(stub.ModelStreamInfer(iter([classify()] * 50)))
                assert len(busy) == 50 and not any(r.error_message for r in busy)
                held, call, _ = streams.open()
                held.send(classify())
                assert not next(call).error_message  # admitted and answered, then silent
                (ended,) = streams.wait_ended(1)
                assert ended.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "stream_idle_timeout_seconds" in ended.details()
                # Its place is free again.
                again = list(stub.ModelStreamInfer(iter([classify()]), timeout=PATIENCE_S))
                assert len(again) == 1 and not again[0].error_message
            finally:
                streams.close()
    finally:
        app.stop(0)


def test_a_stream_that_reads_nothing_is_ended_too(tmp_path: Path) -> None:
    app = start_app(tmp_path, workers=4, max_streams=1, stream_idle_timeout_seconds=0.5)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            streams = Streams(stub)
            try:
                held, call, _ = streams.open()
                held.send(classify())
                assert not next(call).error_message  # admitted
                big = classify(rows=100_000)  # 1.2 MB answers: flow control stops the server
                sent = 40
                for _ in range(sent):
                    held.send(big)
                # The client reads nothing, so it learns the status only when it reads; the
                # server has ended the call once it gave back the stream's place.
                wait_for(lambda: app.streams.open_streams == 0, PATIENCE_S)
                read = 0
                with pytest.raises(grpc.RpcError) as info:
                    for _answer in call:
                        read += 1
                assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert read < sent  # ended while blocked sending, not after answering all
            finally:
                streams.close()
    finally:
        app.stop(0)


FP32 = by_oip("FP32")
assert FP32 is not None


class GatedRunner:
    """Echoes `x`; each run waits on `gate`, and `running` counts the runs under way."""

    signature = Signature(
        inputs=(TensorSpec("x", FP32, (None,)),), outputs=(TensorSpec("y", FP32, (None,)),)
    )

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.running = threading.Semaphore(0)
        self.warm = False

    def run(
        self, outputs: Sequence[str], feeds: dict[str, npt.NDArray[np.generic]]
    ) -> list[npt.NDArray[np.generic]]:
        if self.warm:  # the server's own warm-up run passes straight through
            self.running.release()
            self.gate.wait(PATIENCE_S)
        self.warm = True
        return [feeds["x"]]


def test_calls_beyond_the_admission_limit_are_refused_at_once(tmp_path: Path) -> None:
    model_file = tmp_path / "models" / "echo" / "1" / "model.onnx"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(b"not read: the runner factory ignores it")
    runner = GatedRunner()
    config = load_config(
        None,
        {
            "models_dir": tmp_path / "models",
            "state_dir": tmp_path / "state",
            "port": 0,
            "metrics_port": -1,
            "workers": 4,
            "max_streams": 1,
            "max_concurrent_calls": 2,
            "instances": 2,  # both admitted calls run at once, not one after the other
        },
    )
    app = App(config, runner_factory=lambda _path: runner)
    app.start()
    try:
        request = pb.ModelInferRequest(model_name="echo")
        request.inputs.add(name="x", datatype="FP32", shape=[1])
        request.raw_input_contents.append(np.ones(1, dtype=np.float32).tobytes())
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            held = [stub.ModelInfer.future(request, timeout=PATIENCE_S) for _ in range(2)]
            for _ in held:
                assert runner.running.acquire(timeout=PATIENCE_S)  # both admitted, running
            with pytest.raises(grpc.RpcError) as info:
                stub.ServerReady(pb.ServerReadyRequest(), timeout=PATIENCE_S)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            runner.gate.set()
            assert all(f.result().model_name == "echo" for f in held)
            assert stub.ServerReady(pb.ServerReadyRequest(), timeout=PATIENCE_S).ready
    finally:
        app.stop(0)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"workers": 4, "max_streams": 4}, "'max_streams' must be 0..3"),
        ({"workers": 4, "max_streams": -1}, "'max_streams' must be 0..3"),
        ({"workers": 8, "max_streams": 3, "max_concurrent_calls": 3}, "'max_concurrent_calls'"),
        ({"stream_idle_timeout_seconds": 0}, "'stream_idle_timeout_seconds' must be > 0"),
    ],
)
def test_limits_are_validated(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(None, settings)


def test_default_limits_follow_workers() -> None:
    for workers, streams in ((1, 0), (2, 1), (4, 1), (8, 2), (16, 4)):
        config = load_config(None, {"workers": workers})
        assert (config.stream_limit, config.call_limit) == (streams, 4 * workers)
