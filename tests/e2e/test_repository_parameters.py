"""RepositoryModelLoad/Unload parameters: what is not supported is refused, never ignored.

Triton's load takes a `config` override and `file:<path>` contents; canaryserve loads each
version from its repository directory and has no per-request configuration, so it says so
instead of answering OK and loading something other than what the caller described.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from tests.conftest import start_app

TOKEN = "parameters-token"
ADMIN = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(tmp_path_factory.mktemp("parameters"), admin_tokens={"ops": TOKEN})
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def stub(server: App) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def load(**parameters: pb.ModelRepositoryParameter) -> pb.RepositoryModelLoadRequest:
    request = pb.RepositoryModelLoadRequest(model_name="counter")
    for key, value in parameters.items():
        request.parameters[key].CopyFrom(value)
    return request


CONFIG = pb.ModelRepositoryParameter(string_param='{"max_batch_size": 8}')
FILE = pb.ModelRepositoryParameter(bytes_param=b"\x08\x07")


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("config", CONFIG, "no model configuration"),
        ("file:1/model.onnx", FILE, "files cannot be sent"),
        ("priority", pb.ModelRepositoryParameter(int64_param=1), "takes force"),
    ],
)
def test_load_refuses_parameters_it_does_not_support(
    server: App, stub: pb_grpc.GRPCInferenceServiceStub, key: str, value: object, says: str
) -> None:
    before = server.registry.get("counter", "1")
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelLoad(load(**{key: value}), metadata=ADMIN)  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert f"parameter '{key}' is not supported" in details and says in details, details
    assert server.registry.get("counter", "1") is before  # nothing was (re)loaded


def test_unload_takes_tritonclients_unload_dependents_and_nothing_else(
    server: App, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    request = pb.RepositoryModelUnloadRequest(model_name="counter")
    request.parameters["force"].bool_param = True
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelUnload(request, metadata=ADMIN)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parameter 'force' is not supported" in (info.value.details() or "")
    assert server.registry.ready_versions("counter") == {"1"}

    request = pb.RepositoryModelUnloadRequest(model_name="counter")
    request.parameters["unload_dependents"].bool_param = False  # what tritonclient sends
    stub.RepositoryModelUnload(request, metadata=ADMIN)
    assert server.registry.ready_versions("counter") == frozenset()
    stub.RepositoryModelLoad(load(), metadata=ADMIN)
    assert server.registry.ready_versions("counter") == {"1"}
