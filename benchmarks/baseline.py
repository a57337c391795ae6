"""The baseline: the least a gRPC Open Inference Protocol server can do for one ModelInfer.

Same generated stubs, same grpc sync server, same thread-pool size and message limits and the
same onnxruntime session options as canaryserve; per request it only decodes the raw input
contents, calls `session.run` and encodes the outputs raw. No routing, no validation beyond
what numpy does, no statistics, no error translation: the floor canaryserve is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

__all__ = ["BaselineServer", "BaselineServicer", "make_session"]

# onnxruntime type string -> (numpy dtype, Open Inference Protocol datatype), fixed-size only.
_TYPES: dict[str, tuple[np.dtype[Any], str]] = {
    "tensor(float)": (np.dtype(np.float32), "FP32"),
    "tensor(double)": (np.dtype(np.float64), "FP64"),
    "tensor(int32)": (np.dtype(np.int32), "INT32"),
    "tensor(int64)": (np.dtype(np.int64), "INT64"),
}
_BY_NUMPY = {dtype: oip for dtype, oip in _TYPES.values()}


def make_session(path: Path, intra_op_threads: int) -> Any:
    """An onnxruntime session with exactly the options canaryserve's OnnxRunner uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class _Model:
    """One loaded model: its session, input dtypes by name, and output names."""

    def __init__(self, path: Path, intra_op_threads: int) -> None:
        self.session = make_session(path, intra_op_threads)
        self.inputs = {a.name: _TYPES[a.type][0] for a in self.session.get_inputs()}
        self.outputs = [a.name for a in self.session.get_outputs()]


class BaselineServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Implements ModelInfer only: decode raw -> session.run -> encode raw."""

    def __init__(self, models: Mapping[str, Path], intra_op_threads: int) -> None:
        self._models = {name: _Model(path, intra_op_threads) for name, path in models.items()}

    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        model = self._models[request.model_name]
        feeds = {
            tensor.name: np.frombuffer(raw, dtype=model.inputs[tensor.name]).reshape(tensor.shape)
            for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        }
        arrays = model.session.run(model.outputs, feeds)
        response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        for name, array in zip(model.outputs, arrays, strict=True):
            out = response.outputs.add()
            out.name = name
            out.datatype = _BY_NUMPY[array.dtype]
            out.shape.extend(array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


class BaselineServer:
    """A grpc sync server hosting BaselineServicer, configured like canaryserve's App."""

    def __init__(
        self,
        models: Mapping[str, Path],
        *,
        workers: int,
        max_message_bytes: int,
        intra_op_threads: int,
        host: str = "127.0.0.1",
    ) -> None:
        self._servicer = BaselineServicer(models, intra_op_threads)
        self._workers = workers
        self._limit = max_message_bytes
        self._host = host
        self._server: grpc.Server | None = None
        self.port = 0

    def start(self) -> int:
        """Listen on a free port and serve; returns the port."""
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="baseline"),
            options=[
                ("grpc.max_receive_message_length", self._limit),
                ("grpc.max_send_message_length", self._limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self._servicer, server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"{self._host}:0")
        if self.port == 0:
            raise OSError(f"cannot listen on {self._host}")
        server.start()
        self._server = server
        return self.port

    def stop(self, grace: float | None = 0) -> None:
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
