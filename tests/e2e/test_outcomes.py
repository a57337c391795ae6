"""Business outcomes against a real server: reported over gRPC by request id and by routing
key, joined to the version that served each request, refused with actionable statuses, and
shown per version by `canaryserve ab`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from client.admin import AdminClient
from client.channel import open_channel
from client.errors import ClientError
from client.inference import InferenceClient
from client.outcomes import Outcome, OutcomesClient
from protos.canaryserve.outcomes.v1 import outcomes_pb2 as pb
from protos.canaryserve.outcomes.v1 import outcomes_pb2_grpc as pb_grpc
from server.app import App
from tests.support.servers import start_app

ADMIN = "adm"
OUTCOME_TOKEN = "out-tok"
X = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
USERS = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(
        tmp_path_factory.mktemp("outcomes"),
        admin_tokens={"ops": ADMIN},
        outcome_tokens={"shop": OUTCOME_TOKEN},
    )
    target = f"127.0.0.1:{app.port}"
    with AdminClient(open_channel(target), ADMIN) as admin:
        admin.start("classifier", "1", canary_ppm=500_000, reason="a/b test of v1")
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def target(server: App) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def served(target: str) -> dict[str, tuple[str, str]]:
    """request id -> (routing key, version that answered), for USERS keyed requests."""
    out = {}
    with InferenceClient(target) as c:  # inference needs no token: only outcomes do
        for i in range(USERS):
            r = c.infer("classifier", {"input": X}, routing_key=f"user-{i}", request_id=f"req-{i}")
            assert r.id == f"req-{i}"
            out[r.id] = (f"user-{i}", r.version)
    assert {v for _, v in out.values()} == {"1", "2"}  # a 50 % split
    return out


@pytest.fixture
def outcomes(target: str) -> Iterator[OutcomesClient]:
    with OutcomesClient(target, token=OUTCOME_TOKEN) as client:
        yield client


def test_outcomes_by_request_id_count_for_the_version_that_served_them(
    outcomes: OutcomesClient, served: dict[str, tuple[str, str]]
) -> None:
    for request_id, (_, version) in served.items():
        a = outcomes.report("classifier", "clicked", True, request_id=request_id)
        assert (a.version, a.joined_by, a.gates) == (version, "request_id", True)
        assert a.stage == ("stable" if version == "2" else "canary")
        assert a.route_reason == "hash"


def test_outcomes_by_routing_key_count_for_the_version_the_key_routes_to(
    outcomes: OutcomesClient, served: dict[str, tuple[str, str]]
) -> None:
    for key, version in served.values():
        a = outcomes.report("classifier", "revenue", 2.5, routing_key=key)
        assert (a.version, a.joined_by, a.gates) == (version, "routing_key", True)


def test_metrics_count_each_versions_reports_and_their_values(
    server: App, outcomes: OutcomesClient, served: dict[str, tuple[str, str]]
) -> None:
    expected: dict[str, list[float]] = {}
    for i, (request_id, (_, version)) in enumerate(served.items()):
        outcomes.report("classifier", "converted", i % 3 == 0, request_id=request_id)
        expected.setdefault(version, []).append(float(i % 3 == 0))
    samples = {
        (s.name, s.labels["version"]): s.value
        for family in text_string_to_metric_families(server.metrics())
        for s in family.samples
        if s.labels.get("outcome") == "converted"
    }
    for version, values in expected.items():
        assert samples["canaryserve_outcome_value_count", version] == len(values)
        assert samples["canaryserve_outcome_value_sum", version] == sum(values)


def test_a_batch_counts_what_it_can_and_says_why_not_for_the_rest(
    outcomes: OutcomesClient, served: dict[str, tuple[str, str]]
) -> None:
    ids = list(served)[:5]
    batch = [
        Outcome("classifier", "converted", i % 2 == 0, request_id=r) for i, r in enumerate(ids)
    ]
    batch.insert(2, Outcome("classifier", "converted", True, request_id="never-served"))
    batch.append(Outcome("classifier", "converted", 0.5, routing_key="user-1"))  # real: mismatch
    answer = outcomes.report_many(batch)
    assert answer.accepted == 5
    assert [(r.index, r.code) for r in answer.rejected] == [
        (2, "NOT_FOUND"),
        (6, "FAILED_PRECONDITION"),
    ]
    assert "report by routing_key" in answer.rejected[0].message


def test_bad_reports_get_actionable_statuses_and_the_server_keeps_serving(
    target: str, outcomes: OutcomesClient, served: dict[str, tuple[str, str]]
) -> None:
    with pytest.raises(ClientError) as unknown:
        outcomes.report("classifier", "clicked", True, request_id="no-such-request")
    assert unknown.value.code == "NOT_FOUND"
    assert "outcome_join_ttl_seconds" in unknown.value.details

    stub = pb_grpc.OutcomesServiceStub(open_channel(target))  # type: ignore[no-untyped-call]
    auth = (("authorization", f"Bearer {OUTCOME_TOKEN}"),)
    cases = [
        (pb.Outcome(model="classifier", name="clicked", binary=True), "exactly one of"),
        (pb.Outcome(model="classifier", name="clicked", request_id="req-1"), "no value"),
        (pb.Outcome(model="classifier", name="", binary=True, request_id="req-1"), "name"),
        (pb.Outcome(model="../x", name="c", binary=True, request_id="req-1"), "model name"),
        (pb.Outcome(model="classifier", name="r", real=float("nan"), routing_key="u"), "finite"),
    ]
    for outcome, message in cases:
        with pytest.raises(grpc.RpcError) as exc:
            stub.ReportOutcome(pb.ReportOutcomeRequest(outcome=outcome), metadata=auth, timeout=10)
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT, outcome
        assert message in (exc.value.details() or "")
    with pytest.raises(grpc.RpcError) as missing:
        stub.ReportOutcome(
            pb.ReportOutcomeRequest(
                outcome=pb.Outcome(model="nope", name="c", binary=True, routing_key="u")
            ),
            metadata=auth,
            timeout=10,
        )
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    with InferenceClient(target) as c:
        assert c.infer("classifier", {"input": X}, routing_key="user-1").version


def test_the_outcome_service_needs_its_token_when_one_is_configured(target: str) -> None:
    for token in (None, ADMIN, "wrong"):
        with OutcomesClient(target, token=token) as client, pytest.raises(ClientError) as exc:
            client.report("classifier", "clicked", True, routing_key="user-1")
        assert exc.value.code == "UNAUTHENTICATED"


def test_with_an_inference_token_and_no_outcome_tokens_reports_need_the_inference_token(
    tmp_path: Path,
) -> None:
    """Outcome reports steer outcome gates: a server that guards inference guards them too."""
    app = start_app(tmp_path, admin_tokens={"ops": ADMIN}, inference_token="inf-tok")
    try:
        target = f"127.0.0.1:{app.port}"
        for token in (None, ADMIN, "wrong"):
            with OutcomesClient(target, token=token) as client, pytest.raises(ClientError) as exc:
                client.report("classifier", "clicked", True, routing_key="user-1")
            assert exc.value.code == "UNAUTHENTICATED"
        with OutcomesClient(target, token="inf-tok") as client:
            assert client.report("classifier", "clicked", True, routing_key="user-1").version
    finally:
        app.stop(0)


def test_the_service_is_healthy_and_reflected(target: str) -> None:
    stub = health_pb2_grpc.HealthStub(open_channel(target))
    answer = stub.Check(
        health_pb2.HealthCheckRequest(service="canaryserve.outcomes.v1.OutcomesService"), timeout=10
    )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_pinned_request_is_counted_but_does_not_gate(
    target: str, outcomes: OutcomesClient
) -> None:
    with InferenceClient(target) as c:
        c.infer("classifier", {"input": X}, version="1", routing_key="u", request_id="pinned-1")
    a = outcomes.report("classifier", "clicked", False, request_id="pinned-1")
    assert (a.version, a.route_reason, a.gates) == ("1", "pinned", False)


def cli(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    env["CANARYSERVE_OUTCOME_TOKEN"] = OUTCOME_TOKEN
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "--target", target, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_the_cli_reports_outcomes_and_shows_the_ab_view(
    target: str, served: dict[str, tuple[str, str]], outcomes: OutcomesClient
) -> None:
    request_id, (key, version) = next(iter(served.items()))
    done = cli(
        target, "outcome", "report", "classifier", "signup", "true", "--request-id", request_id
    )
    assert done.returncode == 0, done.stderr
    assert f"counted for version {version}" in done.stdout and "joined by request_id" in done.stdout
    done = cli(target, "outcome", "report", "classifier", "signup", "false", "--key", key)
    assert done.returncode == 0, done.stderr
    for rid, (_, _) in list(served.items())[1:]:  # enough signups for intervals on both sides
        outcomes.report("classifier", "signup", int(rid.split("-")[1]) % 3 == 0, request_id=rid)
        outcomes.report("classifier", "revenue", 1.0 + len(rid) % 4, request_id=rid)

    ab = cli(target, "ab", "classifier")
    assert ab.returncode == 0, ab.stderr
    text = ab.stdout
    assert "classifier: stable 2, candidate 1 (95% intervals" in text
    assert "signup (binary)" in text and "revenue (real)" in text
    assert "candidate - stable:" in text and "lift" in text
    rows = [
        line.split()
        for line in text.splitlines()
        if line.startswith("  1 ") or line.startswith("  2 ")
    ]
    assert {r[1] for r in rows} >= {"canary", "stable"}

    data = json.loads(cli(target, "ab", "classifier", "--json").stdout)
    signup = next(o for o in data["outcomes"] if o["name"] == "signup")
    counts = {v["version"]: v["count"] for v in signup["versions"]}
    assert sum(counts.values()) == USERS + 1  # every request once, and the key report once
    expected = {v: sum(1 for _, sv in served.values() if sv == v) for v in ("1", "2")}
    expected[version] += 1
    assert counts == expected
    diff = signup["difference"]
    assert diff["lower"] <= diff["estimate"] <= diff["upper"]

    bad = cli(target, "outcome", "report", "classifier", "signup", "maybe", "--key", key)
    assert bad.returncode == 1 and "use true or false" in bad.stderr
    gone = cli(target, "outcome", "report", "classifier", "signup", "true", "--request-id", "gone")
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr


def test_the_cli_reports_a_batch_from_json_lines(
    target: str, served: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    path = tmp_path / "outcomes.jsonl"
    lines = [
        {"model": "classifier", "name": "retained", "value": True, "request_id": rid}
        for rid in list(served)[:3]
    ]
    lines.append({"model": "classifier", "name": "retained", "value": True, "request_id": "x"})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    done = cli(target, "outcome", "report", "--batch", str(path))
    assert done.returncode == 1  # one was rejected
    assert "3 accepted, 1 rejected" in done.stdout and "#3: NOT_FOUND" in done.stdout
