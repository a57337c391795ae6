"""Fuzz the data plane: any ModelInferRequest a client can send gets a status it can act on.

Hypothesis builds requests from the whole space a caller controls — model names and versions,
input names, datatypes (bogus ones too), shapes with zero, huge and negative dimensions, raw and
typed contents that match or do not, requested outputs, parameters — and sends each to a real
server, unary and on one long-lived stream. Every answer must be OK, INVALID_ARGUMENT,
NOT_FOUND, UNAVAILABLE or RESOURCE_EXHAUSTED (never INTERNAL or UNKNOWN), the server's peak RSS
must stay bounded, and a valid call must be answered afterwards.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.serving.dtypes import DTYPES
from tests.conftest import make_repository

#: A small message limit keeps what any accepted request may allocate small too.
LIMIT = 1 << 20
#: What the fuzzed server's peak RSS may grow by over the whole run, in MiB (about 10 measured).
RSS_BOUND_MIB = 64
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,  # a well-formed model or version the server does not have
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
#: Every message of a stream answer that is not an inference: never an unexpected error.
UNEXPECTED = "internal server error"

#: The bundled models' inputs: (name, datatype, shape with None for a free dimension).
SIGNATURES = {
    "classifier": [("input", "FP32", (None, 4))],
    "counter": [("ids", "INT64", (None, None))],
    "shouter": [("text", "BYTES", (None,))],
}
OUTPUTS = ["scores", "total", "maximum", "upper"]
DATATYPES = [d.oip for d in DTYPES]
CONTENT_FIELDS = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=8),
}
#: Dimensions: mostly small (zero included), sometimes huge or negative, sometimes anything.
DIMS = st.one_of(
    *[st.integers(0, 4)] * 6,
    st.sampled_from([0, 2**16, 2**20, 2**31, 2**32, 2**62, 2**63 - 1]),
    st.sampled_from([-1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)
TEXT = st.text(max_size=12)
#: True five times in six (Hypothesis favours the first of a sampled list while it shrinks).
MOSTLY = st.sampled_from([True, True, True, True, True, False])


def _maybe(
    draw: st.DrawFn, good: st.SearchStrategy[object], bad: st.SearchStrategy[object]
) -> object:
    """Mostly `good`, sometimes `bad`: requests must get past one check to reach the next."""
    return draw(good) if draw(MOSTLY) else draw(bad)


@st.composite
def tensors(
    draw: st.DrawFn, model: str, raw: bool
) -> tuple[pb.ModelInferRequest.InferInputTensor, bytes]:
    name, datatype, shape = draw(st.sampled_from(SIGNATURES.get(model) or SIGNATURES["counter"]))
    dims = [draw(DIMS) if d is None else d for d in shape]
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=_maybe(draw, st.just(name), st.one_of(TEXT, st.sampled_from(["input", "ids"]))),
        datatype=_maybe(draw, st.just(datatype), st.one_of(st.sampled_from(DATATYPES), TEXT)),
        shape=_maybe(draw, st.just(dims), st.lists(DIMS, max_size=4)),
    )
    # Contents that fit the declared shape and datatype, or some that do not.
    count = int(np.prod([max(d, 0) for d in tensor.shape], dtype=object))
    row = next((d for d in DTYPES if d.oip == tensor.datatype), None)
    fits = row is not None and count <= 64 and draw(MOSTLY)
    data = b""
    if raw:
        if fits and row is not None and row.oip != "BYTES":
            data = np.zeros(count, dtype=row.numpy).tobytes()
        elif fits:
            data = b"".join(len(s).to_bytes(4, "little") + s for s in [b"ab"] * count)
        else:
            data = draw(st.binary(max_size=64))
    else:
        field = row.contents if fits and row is not None else None
        field = field or draw(st.sampled_from([*CONTENT_FIELDS, ""]))
        if field:
            size = count if fits else draw(st.integers(0, 8))
            values = draw(st.lists(CONTENT_FIELDS[field], min_size=size, max_size=size))
            getattr(tensor.contents, field).extend(values)
    return tensor, data


def _parameter(draw: st.DrawFn) -> pb.InferParameter:
    kind = draw(st.sampled_from(["bool_param", "int64_param", "string_param"]))
    value = {
        "bool_param": st.booleans(),
        "int64_param": st.integers(-(2**63), 2**63 - 1),
        "string_param": TEXT,
    }[kind]
    return pb.InferParameter(**{kind: draw(value)})


@st.composite
def requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    model = str(_maybe(draw, st.sampled_from(list(SIGNATURES)), TEXT))
    versions = st.sampled_from(["", "", "1"])
    request = pb.ModelInferRequest(
        model_name=model,
        model_version=_maybe(draw, versions, st.one_of(st.sampled_from(["0", "-1", "01"]), TEXT)),
        id=draw(TEXT),
    )
    keys = st.lists(st.one_of(st.just("routing_key"), TEXT), max_size=2)
    for key in _maybe(draw, st.just([]), keys):
        request.parameters[key].CopyFrom(_parameter(draw))
    raw = draw(st.booleans())
    count = _maybe(draw, st.just(1), st.integers(0, 3))
    for tensor, data in draw(st.lists(tensors(model, raw), min_size=count, max_size=count)):
        request.inputs.append(tensor)
        if raw:
            request.raw_input_contents.append(data)
    if raw and not draw(MOSTLY):  # one entry too many or too few
        if request.raw_input_contents:
            del request.raw_input_contents[-1]
        else:
            request.raw_input_contents.append(b"\0")
    outputs = st.lists(st.one_of(st.sampled_from(OUTPUTS), TEXT), max_size=2)
    for name in _maybe(draw, st.just([]), outputs):
        request.outputs.add(name=name)
    return request


def _request(model: str, name: str, datatype: str, shape: list[int]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    count = int(np.prod(shape, dtype=object))
    row = next(d for d in DTYPES if d.oip == datatype)
    if datatype == "BYTES":
        request.raw_input_contents.append(b"\2\0\0\0ab" * count)
    else:
        request.raw_input_contents.append(np.zeros(count, dtype=row.numpy).tobytes())
    return request


def _status_mib(pid: int, key: str) -> int:
    """A line of /proc/PID/status (VmRSS: resident now, VmHWM: the peak), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    pytest.skip("needs /proc/PID/status (Linux) to read the RSS")


def _reset_peak(pid: int) -> None:
    """Start VmHWM again from the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS here")


@dataclass(frozen=True)
class Served:
    """The fuzzed server: a process of its own, so its RSS is its own, not the test run's."""

    pid: int
    port: int


class Stream:
    """One ModelStreamInfer call the fuzz loop sends to and reads from, message by message."""

    def __init__(self, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
        self._queue: queue.Queue[pb.ModelInferRequest | None] = queue.Queue()
        self._answers = stub.ModelStreamInfer(iter(self._queue.get, None), timeout=300)

    def ask(self, request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
        self._queue.put(request)
        return next(self._answers)

    def close(self) -> None:
        self._queue.put(None)
        self._answers.cancel()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("fuzz")
    config = home / "fuzz.toml"
    config.write_text(f"max_message_bytes = {LIMIT}\n")
    argv = [sys.executable, "-m", "server", "--port", "0", "--metrics-port", "-1"]
    argv += ["--models", str(make_repository(home)), "--state-dir", str(home / "state")]
    with subprocess.Popen(
        [*argv, "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as server:
        guard = threading.Timer(120, server.kill)  # a server that never starts fails, not hangs
        guard.daemon = True
        guard.start()
        assert server.stderr is not None
        port = None
        for line in server.stderr:
            found = re.search(r"listening on \S+:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        guard.cancel()
        assert port is not None, "the fuzzed server exited before it listened"
        threading.Thread(target=server.stderr.read, daemon=True).start()
        try:
            yield Served(server.pid, port)
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_every_request_gets_an_actionable_status(fuzzed: Served) -> None:
    seen: dict[str, int] = {}
    with grpc.insecure_channel(f"127.0.0.1:{fuzzed.port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stream = Stream(stub)
        try:
            _reset_peak(fuzzed.pid)
            before = _status_mib(fuzzed.pid, "VmHWM")

            @settings(
                max_examples=300,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            )
            @given(requests())
            # Answered: one per model. Once INTERNAL, UNKNOWN or gigabytes: zero dims beside
            # huge ones, and an empty batch the shouter refuses.
            @example(_request("classifier", "input", "FP32", [2, 4]))
            @example(_request("counter", "ids", "INT64", [2, 3]))
            @example(_request("shouter", "text", "BYTES", [2]))
            @example(_request("counter", "ids", "INT64", [0, 2**62]))
            @example(_request("counter", "ids", "INT64", [20_000_000, 0]))
            @example(_request("shouter", "text", "BYTES", [0]))
            def check(request: pb.ModelInferRequest) -> None:
                try:
                    stub.ModelInfer(request, timeout=60)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                    assert code in ALLOWED, f"{code}: {exc.details()}\n{request}"
                seen[code.name] = seen.get(code.name, 0) + 1
                answer = stream.ask(request)
                assert UNEXPECTED not in answer.error_message, f"{answer.error_message}\n{request}"
                assert bool(answer.error_message) == (code != grpc.StatusCode.OK), request

            check()
            grown = _status_mib(fuzzed.pid, "VmHWM") - before
        finally:
            stream.close()
        good = pb.ModelInferRequest(model_name="classifier")
        good.inputs.add(name="input", datatype="FP32", shape=[1, 4])
        good.raw_input_contents.append(np.zeros((1, 4), dtype=np.float32).tobytes())
        assert stub.ModelInfer(good, timeout=60).model_name == "classifier"
    print(f"fuzz: answers {seen}; the server's peak RSS grew by {grown} MiB")
    assert seen.get("OK", 0) > 0, seen  # the fuzz reaches the models, not only the checks
    assert grown < RSS_BOUND_MIB, f"the server's peak RSS grew by {grown} MiB"
