"""The bundled Node.js and Go clients (client/node, client/go) against a real canaryserve.

Each client runs as a subprocess against a server started here with a 50 % canary of
classifier v1 over stable v2, and its JSON is held against what the Python client and the
admin service's Route say for the same routing keys: the served version, stage, route reason
and output scores. Both routing reimplementations are checked against
protos/routing_vectors.json.

Without `node`, client/node/node_modules, `go` or Debian's Go sources these tests skip locally
and fail under CI (CI set): .ci/install-clients.sh installs all of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.inference import InferenceClient
from server.app import App
from tests.support.servers import start_app

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "client" / "node"
GO_DIR = REPO / "client" / "go"
VECTORS = REPO / "protos" / "routing_vectors.json"
DEBIAN_GRPC_GO = Path("/usr/share/gocode/src/google.golang.org/grpc")

TOKEN = "t"
MODEL = "classifier"
STABLE, CANDIDATE = "2", "1"
INPUT = [0.1, 0.2, 0.3, 0.4]
#: Keys taken for each version (picked from the server's own routing answers).
KEYS_PER_VERSION = 3
CLIENT_TIMEOUT = 120
GO_BUILD_TIMEOUT = 900


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; under CI a missing client toolchain is a failure, not a skip."""
    if _in_ci():
        pytest.fail(f"{reason}; CI must have it (.ci/run runs .ci/install-clients.sh first)")
    pytest.skip(f"{reason} (run .ci/install-clients.sh)")


def _run(args: list[str], *, cwd: Path = REPO, timeout: float = CLIENT_TIMEOUT) -> Any:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


# --- toolchains -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        _unavailable("node is not installed")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            _unavailable(f"client/node/node_modules lacks {package} (npm ci in client/node)")
    return exe


@pytest.fixture(scope="session")
def go() -> str:
    exe = shutil.which("go")
    if exe is None:
        _unavailable("go is not installed")
    if not DEBIAN_GRPC_GO.is_dir():
        _unavailable(f"{DEBIAN_GRPC_GO} is missing (Debian's golang-google-grpc-dev)")
    return exe


@pytest.fixture(scope="session")
def go_client(go: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """client/go built once per session, offline, into a temporary directory."""
    out = tmp_path_factory.mktemp("go-client")
    proc = _run(["bash", str(GO_DIR / "build.sh"), str(out)], timeout=GO_BUILD_TIMEOUT)
    assert proc.returncode == 0, f"client/go/build.sh failed:\n{proc.stdout}\n{proc.stderr}"
    binary = out / "canary-client"
    assert binary.is_file()
    return binary


# --- the server and what the Python side says -----------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(tmp_path_factory.mktemp("clients"), admin_tokens={"ops": TOKEN})
    try:
        with AdminClient(open_channel(f"127.0.0.1:{app.port}"), TOKEN) as admin:
            admin.start(MODEL, CANDIDATE, canary_ppm=500_000, reason="node/go client tests")
        yield app
    finally:
        app.stop(0)


@pytest.fixture(scope="module")
def target(server: App) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def routes(target: str) -> dict[str, Any]:
    """KEYS_PER_VERSION keys routed to each version, with the admin service's answer for each."""
    chosen: dict[str, Any] = {}
    counts = {STABLE: 0, CANDIDATE: 0}
    with AdminClient(open_channel(target), TOKEN) as admin:
        for i in range(1, 200):
            key = f"user-{i}"
            route = admin.route(MODEL, key)
            if counts[route.version] < KEYS_PER_VERSION:
                counts[route.version] += 1
                chosen[key] = route
            if min(counts.values()) == KEYS_PER_VERSION:
                break
    assert min(counts.values()) == KEYS_PER_VERSION, counts
    return chosen


@pytest.fixture(scope="module")
def python_results(target: str, routes: dict[str, Any]) -> dict[str, Any]:
    """The Python client's answers for the same keys and input."""
    with InferenceClient(target) as c:
        return {
            key: c.infer(MODEL, {"input": np.array([INPUT], np.float32)}, routing_key=key)
            for key in routes
        }


@pytest.fixture(scope="module")
def python_metadata(target: str) -> Any:
    with InferenceClient(target) as c:
        return c.metadata(MODEL)


def _client_command(name: str, request: pytest.FixtureRequest, target: str) -> list[str]:
    if name == "node":
        node: str = request.getfixturevalue("node")
        return [node, str(NODE_DIR / "canary_client.js"), "--target", target]
    go_client: Path = request.getfixturevalue("go_client")
    return [str(go_client), "-target", target]


@pytest.fixture(scope="module", params=["node", "go"])
def client_result(
    request: pytest.FixtureRequest, target: str, routes: dict[str, Any]
) -> dict[str, Any]:
    """One client's JSON for the chosen keys."""
    args = _client_command(request.param, request, target)
    flag = "--" if request.param == "node" else "-"
    args += [f"{flag}token", TOKEN, f"{flag}input", ",".join(map(str, INPUT))]
    for key in routes:
        args += [f"{flag}key", key]
    proc = _run(args)
    assert proc.returncode == 0, f"{request.param} client failed:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["client"] == request.param
    return result


# --- the clients ----------------------------------------------------------------------------


def test_health_and_metadata(client_result: dict[str, Any], python_metadata: Any) -> None:
    """Each client reads liveness, readiness and the model metadata as Python does."""
    assert client_result["live"] is True
    assert client_result["ready"] is True
    meta = client_result["metadata"]
    assert meta["name"] == MODEL
    assert meta["versions"] == list(python_metadata.versions)
    assert meta["platform"] == python_metadata.platform
    for got, want in zip(meta["inputs"], python_metadata.inputs, strict=True):
        assert (got["name"], got["datatype"], got["shape"]) == (
            want.name,
            want.datatype,
            list(want.shape),
        )
    assert [o["name"] for o in meta["outputs"]] == [o.name for o in python_metadata.outputs]


def test_served_versions_follow_the_servers_routing(
    client_result: dict[str, Any], routes: dict[str, Any], python_results: dict[str, Any]
) -> None:
    infer = client_result["infer"]
    assert [r["key"] for r in infer] == list(routes)
    for r in infer:
        route, py = routes[r["key"]], python_results[r["key"]]
        assert r["model_name"] == MODEL
        assert r["model_version"] == route.version == py.version, r["key"]
        assert r["stage"] == route.stage == py.stage, r["key"]
        assert r["route_reason"] == route.reason == py.reason == "hash", r["key"]
        assert r["stage"] == ("canary" if r["model_version"] == CANDIDATE else "stable")
    assert {r["model_version"] for r in infer} == {STABLE, CANDIDATE}


def test_scores_equal_the_python_clients(
    client_result: dict[str, Any], python_results: dict[str, Any]
) -> None:
    for r in client_result["infer"]:
        want = python_results[r["key"]].outputs["scores"]
        scores = r["outputs"]["scores"]
        assert scores["datatype"] == "FP32"
        assert scores["shape"] == list(want.shape)
        got = np.array(scores["data"], np.float32).reshape(scores["shape"])
        assert np.allclose(got, want, rtol=1e-6, atol=0), r["key"]
    # The two versions answer differently, so a mixed-up decode or version would show.
    by_version = {
        r["model_version"]: r["outputs"]["scores"]["data"] for r in client_result["infer"]
    }
    assert not np.allclose(by_version[STABLE], by_version[CANDIDATE])


def test_admin_list_rollouts(client_result: dict[str, Any]) -> None:
    """Each client lists the rollouts, the 50 % canary of classifier among them."""
    rollouts = {r["model"]: r for r in client_result["rollouts"]}
    assert {"classifier", "counter", "shouter"} <= set(rollouts)
    classifier = rollouts[MODEL]
    assert classifier["stable_version"] == STABLE
    assert classifier["candidate_version"] == CANDIDATE
    assert classifier["phase"] == "PHASE_CANARY"
    assert classifier["canary_weight_ppm"] == 500_000
    assert classifier["rollout_id"] >= 1
    assert classifier["updated_at"]  # the google.protobuf.Timestamp decoded


def test_admin_route(client_result: dict[str, Any], routes: dict[str, Any]) -> None:
    """Each client's Route answers equal the admin service's for the same keys."""
    assert [r["key"] for r in client_result["route"]] == list(routes)
    for r in client_result["route"]:
        want = routes[r["key"]]
        assert (r["version"], r["stage"], r["reason"], r["shadow_version"]) == (
            want.version,
            want.stage,
            want.reason,
            want.shadow_version,
        )
        assert r["position"] == want.position  # the same double, through JSON


@pytest.mark.parametrize("name", ["node", "go"])
def test_bad_token_fails(name: str, request: pytest.FixtureRequest, target: str) -> None:
    """A wrong admin token makes each client exit non-zero saying unauthenticated."""
    flag = "--" if name == "node" else "-"
    proc = _run([*_client_command(name, request, target), f"{flag}token", "wrong"])
    assert proc.returncode != 0
    assert "unauthenticated" in proc.stderr.lower(), proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("name", ["node", "go"])
def test_unreachable_server_fails(name: str, request: pytest.FixtureRequest) -> None:
    """A server that is not there makes each client exit non-zero, naming the call."""
    flag = "--" if name == "node" else "-"
    args = [*_client_command(name, request, "127.0.0.1:1"), f"{flag}token", TOKEN]
    proc = _run([*args, f"{flag}timeout", "2" if name == "node" else "2s"])
    assert proc.returncode != 0
    assert "ServerLive" in proc.stderr, proc.stderr


# --- routing conformance --------------------------------------------------------------------


def _vector_count() -> int:
    return len(json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"])


def _conformance_command(name: str, request: pytest.FixtureRequest, vectors: Path) -> list[str]:
    if name == "node":
        node: str = request.getfixturevalue("node")
        return [node, str(NODE_DIR / "conformance.js"), str(vectors)]
    go_client: Path = request.getfixturevalue("go_client")
    return [str(go_client), "conformance", "-vectors", str(vectors)]


@pytest.mark.parametrize("name", ["node", "go"])
def test_routing_conformance(name: str, request: pytest.FixtureRequest) -> None:
    """Each client's routing hash agrees with every vector of the spec."""
    proc = _run(_conformance_command(name, request, VECTORS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{_vector_count()} vectors checked, 0 mismatches" in proc.stdout


@pytest.mark.parametrize("name", ["node", "go"])
def test_routing_conformance_catches_a_wrong_vector(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    data["vectors"][0]["bucket"] += 1
    data["vectors"][1]["position"] = 0.5
    bad = tmp_path / "vectors.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    proc = _run(_conformance_command(name, request, bad))
    assert proc.returncode == 1
    assert "2 mismatches" in proc.stdout
    assert "vector 0" in proc.stderr and "vector 1" in proc.stderr


def test_go_routing_unit_tests(go_client: Path) -> None:
    """`go test` of client/go/routing (the vectors plus edge cases), offline."""
    proc = _run(["bash", str(GO_DIR / "build.sh"), "--test", str(go_client.parent)], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--- PASS: TestVectors" in proc.stdout


def test_go_stubs_are_fresh(go: str) -> None:
    """client/go/gen matches what generate.sh makes from protos/ now."""
    for tool in ("protoc", "protoc-gen-go", "protoc-gen-go-grpc"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed")
    proc = _run(["bash", str(GO_DIR / "generate.sh"), "--check"])
    assert proc.returncode == 0, "run client/go/generate.sh and commit:\n" + proc.stderr
