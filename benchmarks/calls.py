"""What one load-generator thread sends per call: a gRPC ModelInfer, or a raw `session.run`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from benchmarks.baseline import make_session
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from benchmarks.load import Spec

__all__ = ["USERS", "Call", "Make", "make_calls"]

USERS = 1_000_000  # keys "random": user-<seed>-<0..USERS-1>
Call = Callable[[int], str]  # call number -> the version that answered ("" when not tallied)
Make = Callable[[int], Call]  # thread index -> that thread's call (run in that thread)


def make_calls(spec: Spec, channels: list[grpc.Channel]) -> Make:
    """The spec's call factory; gRPC channels it opens are appended to `channels`."""
    if spec.kind == "grpc":
        return _grpc(spec, channels)
    if spec.kind == "raw":
        return _raw(spec)
    raise ValueError(f"unknown kind {spec.kind!r}")


def _inputs(spec: Spec) -> list[np.ndarray[Any, np.dtype[np.float32]]]:
    rng = np.random.default_rng(spec.seed)
    return [rng.standard_normal(spec.shape, dtype=np.float32) for _ in range(max(spec.inputs, 1))]


def _grpc(spec: Spec, channels: list[grpc.Channel]) -> Make:
    raws = [x.tobytes() for x in _inputs(spec)]
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=spec.input_name, datatype="FP32", shape=spec.shape
    )
    limit = spec.max_message_bytes
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
               ("grpc.use_local_subchannel_pool", 1)]  # fmt: skip  # own connection per channel
    extra = tuple((k, v) for k, v in spec.metadata)
    plain = not (
        spec.keys or extra or spec.pin_share or spec.request_ids or spec.by_version or spec.by_route
    )

    def make(thread: int) -> Call:
        channel = grpc.insecure_channel(spec.target, options=options)
        channels.append(channel)  # list.append is atomic under the GIL
        grpc.channel_ready_future(channel).result(timeout=10)
        infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer  # type: ignore[no-untyped-call]
        requests = [pb.ModelInferRequest(model_name=spec.model, inputs=[tensor],
                                         raw_input_contents=[raw]) for raw in raws]  # fmt: skip
        count, first, seed = len(requests), requests[0], spec.seed
        rng = np.random.default_rng([seed, thread])
        if plain and count == 1:

            def call_plain(i: int) -> str:
                infer(first, timeout=30.0)
                return ""

            return call_plain

        def call(i: int) -> str:
            request, metadata = requests[i % count], extra
            if spec.keys:
                n = i if spec.keys == "sequential" else f"{seed}-{rng.integers(USERS)}"
                metadata = (("x-routing-key", f"user-{n}"), *extra)
            if spec.pin_share:
                request.model_version = spec.pin_version if rng.random() < spec.pin_share else ""
            if spec.request_ids:
                request.id = f"{seed}-{thread}-{i}"
            answer = infer(request, timeout=30.0, metadata=metadata or None)
            if spec.by_route:  # "version/route_reason", e.g. "2/candidate_overloaded"
                reason = answer.parameters["route_reason"].string_param
                return f"{answer.model_version}/{reason}"
            return str(answer.model_version) if spec.by_version else ""

        return call

    return make


_SESSIONS: dict[tuple[str, int], Any] = {}


def _raw(spec: Spec) -> Make:
    key = (spec.path, spec.intra_op_threads)
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = make_session(Path(spec.path), spec.intra_op_threads)
    feed = {spec.input_name: _inputs(spec)[0]}  # raw runs take the first input
    outputs = [a.name for a in session.get_outputs()]
    run_ = session.run

    def make(thread: int) -> Call:
        def call(i: int) -> str:
            run_(outputs, feed)
            return ""

        return call

    return make
