"""Model names and version strings, checked once where each request enters, by one rule.

A malformed name or version is INVALID_ARGUMENT naming the rule, on every RPC that takes one;
a well-formed one the server does not have is NOT_FOUND (and ModelReady answers ready=false,
as Triton does).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import grpc
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc
from server.app import App
from server.serving.names import is_model_name, is_version
from tests.conftest import make_repository, start_app

TOKEN = "names-token"
ADMIN = (("authorization", f"Bearer {TOKEN}"),)

BAD_NAMES = [
    "",
    ".",
    "..",
    "../models",
    "a/b",
    "a\\b",
    ".hidden",
    "_x",
    "-x",
    "a b",
    "é",
    "a" * 129,
]
BAD_VERSIONS = ["wrong_specification", "-1", "0", "01", " 1", "1 ", "1.0", "+1", "\u0661", "1" * 19]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("names")
    repo = make_repository(tmp / "repo")
    # Directories that break the rules are never loaded: not as models, not as versions.
    shutil.copytree(repo / "counter", repo / "bad name")
    shutil.copytree(repo / "counter" / "1", repo / "counter" / "01")
    app = start_app(tmp, models_dir=repo, admin_tokens={"ops": TOKEN})
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def stub(server: App) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def admin(server: App) -> Iterator[AdminClient]:
    with AdminClient(open_channel(f"127.0.0.1:{server.port}"), TOKEN) as client:
        yield client


def status_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def by_name(stub: pb_grpc.GRPCInferenceServiceStub, name: str) -> dict[str, Callable[[], object]]:
    """Every inference RPC that takes a model name, called with `name`."""
    return {
        "ModelInfer": lambda: stub.ModelInfer(pb.ModelInferRequest(model_name=name)),
        "ModelMetadata": lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name=name)),
        "ModelConfig": lambda: stub.ModelConfig(pb.ModelConfigRequest(name=name)),
        "ModelReady": lambda: stub.ModelReady(pb.ModelReadyRequest(name=name)),
        "ModelStatistics": lambda: stub.ModelStatistics(
            pb.ModelStatisticsRequest(name=name, version="1")
        ),
        "RepositoryModelLoad": lambda: stub.RepositoryModelLoad(
            pb.RepositoryModelLoadRequest(model_name=name), metadata=ADMIN
        ),
        "RepositoryModelUnload": lambda: stub.RepositoryModelUnload(
            pb.RepositoryModelUnloadRequest(model_name=name), metadata=ADMIN
        ),
    }


def by_version(
    stub: pb_grpc.GRPCInferenceServiceStub, version: str
) -> dict[str, Callable[[], object]]:
    """Every inference RPC that takes a version string, called with `version`."""
    name = "classifier"
    return {
        "ModelInfer": lambda: stub.ModelInfer(
            pb.ModelInferRequest(model_name=name, model_version=version)
        ),
        "ModelMetadata": lambda: stub.ModelMetadata(
            pb.ModelMetadataRequest(name=name, version=version)
        ),
        "ModelConfig": lambda: stub.ModelConfig(pb.ModelConfigRequest(name=name, version=version)),
        "ModelReady": lambda: stub.ModelReady(pb.ModelReadyRequest(name=name, version=version)),
        "ModelStatistics": lambda: stub.ModelStatistics(
            pb.ModelStatisticsRequest(name=name, version=version)
        ),
    }


def test_the_rules() -> None:
    for good in ["classifier", "a", "A.b-c_d", "0model", "a" * 128, "v1.2"]:
        assert is_model_name(good), good
    for bad in BAD_NAMES:
        assert not is_model_name(bad), bad
    for good in ["1", "12", "100", "9" * 18]:
        assert is_version(good), good
    for bad in ["", *BAD_VERSIONS]:
        assert not is_version(bad), bad


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_a_malformed_model_name_is_invalid_argument_everywhere(
    stub: pb_grpc.GRPCInferenceServiceStub, name: str
) -> None:
    for rpc, call in by_name(stub, name).items():
        if rpc == "ModelStatistics" and not name:
            continue  # the protocol's "every model"
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (rpc, code, details)
        assert "A-Z, a-z, 0-9" in details, (rpc, details)


def test_the_repository_root_and_huge_names_are_not_models(
    server: App, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    """RepositoryModelLoad("") loaded the repository root as a model named ""; a very long
    name failed INTERNAL (the file name was too long for the filesystem)."""
    for name in ["", "a" * 5000]:
        code, details = status_of(by_name(stub, name)["RepositoryModelLoad"])
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert server.registry.models() == ["classifier", "counter", "shouter"]


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
def test_a_malformed_version_is_invalid_argument_everywhere(
    stub: pb_grpc.GRPCInferenceServiceStub, version: str
) -> None:
    for rpc, call in by_version(stub, version).items():
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (rpc, code, details)
        assert "positive integer without leading zeros" in details, (rpc, details)


def test_well_formed_but_unknown_is_not_found_and_model_ready_says_false(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    unknown = "a" * 128
    for rpc, call in by_name(stub, unknown).items():
        if rpc != "ModelReady":
            assert status_of(call)[0] == grpc.StatusCode.NOT_FOUND, rpc
    for rpc, call in by_version(stub, "42").items():
        if rpc != "ModelReady":
            assert status_of(call)[0] == grpc.StatusCode.NOT_FOUND, rpc
    # Triton's ModelIsReady answers ready=false with an OK status for a model or version it
    # does not have, so tritonclient's is_model_ready returns False instead of raising.
    assert not stub.ModelReady(pb.ModelReadyRequest(name=unknown)).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name=unknown, version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="classifier", version="42")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="classifier", version="1")).ready


def test_directories_that_break_the_rules_are_not_loaded(server: App) -> None:
    assert "bad name" not in server.registry.models()
    assert sorted(server.registry.versions("counter")) == ["1"]


def test_admin_calls_check_the_same_rules(admin: AdminClient) -> None:
    calls: dict[str, Callable[[], object]] = {
        "GetRollout": lambda: admin.get("../x"),
        "Route": lambda: admin.route("a/b", "user-1"),
        "ListAudit": lambda: admin.audit(".hidden"),
        "StartRollout": lambda: admin.start("classifier", "01"),
        "ExplainRollout": lambda: admin.explain("a" * 129),
    }
    for rpc, call in calls.items():
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.code == "INVALID_ARGUMENT", (rpc, info.value)
