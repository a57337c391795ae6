"""Repository control on the inference port is the operator's: admin token, audit row, and no
unload that would take away what routing uses.

RepositoryModelLoad/Unload were answered for any caller (with an inference token set, that
token sufficed), were not audited, and unloading a model during its rollout answered OK,
after which every call failed UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from tests.conftest import start_app

TOKENS = {"alice": "tok-alice"}
INFERENCE_TOKEN = "tok-inference"
X = np.zeros((1, 4), dtype=np.float32)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    app = start_app(tmp_path, admin_tokens=TOKENS)
    yield app
    app.stop(0)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[App]:
    """A server whose inference calls need their own token too."""
    app = start_app(tmp_path, admin_tokens=TOKENS, inference_token=INFERENCE_TOKEN)
    yield app
    app.stop(0)


def stub_of(app: App) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.port}"))


def code_of(call: object, request: object, metadata: object = ()) -> grpc.StatusCode:
    try:
        call(request, metadata=metadata)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


LOAD = pb.RepositoryModelLoadRequest(model_name="counter")
UNLOAD = pb.RepositoryModelUnloadRequest(model_name="counter")


def test_repository_control_needs_the_admin_token(server: App) -> None:
    stub = stub_of(server)
    for metadata in [(), bearer("not-a-token"), bearer(INFERENCE_TOKEN)]:
        assert code_of(stub.RepositoryModelUnload, UNLOAD, metadata) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        assert code_of(stub.RepositoryModelLoad, LOAD, metadata) == grpc.StatusCode.UNAUTHENTICATED
    assert server.registry.ready_versions("counter") == {"1"}
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelUnload(UNLOAD)
    assert "RepositoryModelUnload" in (info.value.details() or "")
    assert "admin token" in (info.value.details() or "")
    assert code_of(stub.RepositoryModelUnload, UNLOAD, bearer("tok-alice")) == grpc.StatusCode.OK
    assert server.registry.ready_versions("counter") == frozenset()
    assert code_of(stub.RepositoryModelLoad, LOAD, bearer("tok-alice")) == grpc.StatusCode.OK
    assert server.registry.ready_versions("counter") == {"1"}


def test_with_an_inference_token_that_token_is_not_enough(guarded: App) -> None:
    stub = stub_of(guarded)
    assert code_of(stub.RepositoryModelUnload, UNLOAD, bearer(INFERENCE_TOKEN)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert guarded.registry.ready_versions("counter") == {"1"}
    # The admin token passes the inference interceptor for repository control only.
    assert code_of(stub.RepositoryModelUnload, UNLOAD, bearer("tok-alice")) == grpc.StatusCode.OK
    assert code_of(stub.RepositoryModelLoad, LOAD, bearer("tok-alice")) == grpc.StatusCode.OK
    ready = pb.ModelReadyRequest(name="counter")
    assert code_of(stub.ModelReady, ready, bearer("tok-alice")) == grpc.StatusCode.UNAUTHENTICATED
    assert stub.ModelReady(ready, metadata=bearer(INFERENCE_TOKEN)).ready


def test_every_load_and_unload_is_an_audit_row_naming_the_operator(server: App) -> None:
    stub = stub_of(server)
    stub.RepositoryModelUnload(UNLOAD, metadata=bearer("tok-alice"))
    stub.RepositoryModelLoad(LOAD, metadata=bearer("tok-alice"))
    with AdminClient(open_channel(f"127.0.0.1:{server.port}"), "tok-alice") as admin:
        rows = [e for e in admin.audit("counter") if e.operation in ("load", "unload")]
    assert [(e.operation, e.actor) for e in rows] == [("unload", "alice"), ("load", "alice")]
    assert '"rpc": "RepositoryModelUnload"' in rows[0].extra_json
    assert '"1": "READY"' in rows[1].extra_json


def test_a_model_in_a_rollout_cannot_be_unloaded(server: App) -> None:
    target = f"127.0.0.1:{server.port}"
    stub = stub_of(server)
    with (
        AdminClient(open_channel(target), "tok-alice") as admin,
        InferenceClient(target) as client,
    ):
        admin.start("classifier", "1", canary_ppm=500_000)
        with pytest.raises(grpc.RpcError) as info:
            stub.RepositoryModelUnload(
                pb.RepositoryModelUnloadRequest(model_name="classifier"),
                metadata=bearer("tok-alice"),
            )
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = info.value.details() or ""
        assert "rollout of version '1' is active" in details, details
        assert "roll it back or promote it first" in details, details
        # Nothing was unloaded: keyed and keyless calls are served as before.
        assert {
            client.infer("classifier", {"input": X}, routing_key=f"u{i}").version for i in range(40)
        } == {"1", "2"}
        assert [e.operation for e in admin.audit("classifier")][-1] == "start"
        # Once the rollout is over, taking the whole model out of service is the operator's call.
        admin.transition("rollback", "classifier")
        stub.RepositoryModelUnload(
            pb.RepositoryModelUnloadRequest(model_name="classifier"), metadata=bearer("tok-alice")
        )
        with pytest.raises(ClientError) as err:
            client.infer("classifier", {"input": X})
        assert err.value.code == "UNAVAILABLE"
