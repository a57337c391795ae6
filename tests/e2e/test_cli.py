"""The `canaryserve` command line as an operator runs it, against a real in-process server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.admin import AdminClient
from client.channel import open_channel
from protos.canaryserve.admin.v1 import admin_pb2 as pb
from server.app import App
from tests.conftest import start_app

TOKEN = "t0k"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(tmp_path_factory.mktemp("cli"), admin_tokens={"ops": TOKEN})
    yield app
    app.stop(0)


@pytest.fixture(scope="module")
def target(server: App) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
def idle_classifier(target: str) -> Iterator[None]:
    """Leaves classifier without a rollout for the next test, whatever this one did."""
    yield
    with AdminClient(open_channel(target), TOKEN) as admin:
        if admin.get("classifier").candidate_version:
            admin.transition("rollback", "classifier", reason="test cleanup")


def cli(
    target: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "--target", target, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
        cwd=cwd,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_models_json_lists_every_version(target: str) -> None:
    rows = json.loads(ok(cli(target, "models", "--json")))
    listed = {(r["model"], r["version"]) for r in rows if r["state"] == "READY"}
    assert {("classifier", "1"), ("classifier", "2"), ("counter", "1"), ("shouter", "1")} <= listed


def test_models_table_has_a_header_and_a_row_per_version(target: str) -> None:
    lines = ok(cli(target, "models")).splitlines()
    assert lines[0].split() == ["MODEL", "VERSION", "STATE", "SHA256", "REASON"]
    assert any(line.split()[:3] == ["classifier", "2", "READY"] for line in lines[1:])


def test_infer_classifier_json_returns_scores_of_shape_1_by_3(target: str) -> None:
    data = json.loads(
        ok(cli(target, "infer", "classifier", "--input", "input=[[1,2,3,4]]", "--json"))
    )
    assert data["model"] == "classifier" and data["version"] == "2"
    scores = data["outputs"]["scores"]
    assert scores["shape"] == [1, 3]
    assert scores["dtype"] == "float32"
    assert abs(sum(scores["data"][0]) - 1.0) < 1e-5  # a softmax
    assert data["parameters"] == {"stage": "stable", "route_reason": "no_rollout"}


def test_infer_pinned_version_and_routing_key(target: str) -> None:
    args = ("infer", "classifier", "--input", "input=[[0,0,0,0]]", "--json")
    data = json.loads(ok(cli(target, *args, "--version", "1", "--key", "alice")))
    assert data["version"] == "1"
    assert data["parameters"]["route_reason"] == "pinned"


def test_infer_shouter_upper_cases_text(target: str) -> None:
    out = ok(cli(target, "infer", "shouter", "--input", 'text=["hi"]'))
    assert "shouter version 1" in out
    assert "HI" in out


def test_infer_with_an_unknown_input_name_exits_1_listing_the_inputs(target: str) -> None:
    done = cli(target, "infer", "classifier", "--input", "pixels=[[1,2,3,4]]")
    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr and "input" in done.stderr


@pytest.mark.usefixtures("idle_classifier")
def test_rollout_start_status_route_and_audit(target: str) -> None:
    start = cli(
        target,
        "rollout", "start", "classifier", "1", "--weight", "10",
        "--reason", "cli test", "--token", TOKEN, "--json",
    )  # fmt: skip
    started = json.loads(ok(start))
    assert started["candidate_version"] == "1"
    assert started["canary_weight_ppm"] == 100_000
    assert started["phase"] == "PHASE_CANARY"

    status = json.loads(ok(cli(target, "status", "classifier", "--token", TOKEN, "--json")))
    assert len(status) == 1
    assert status[0]["canary_weight_ppm"] == 100_000
    assert status[0]["stable_version"] == "2"

    text = ok(cli(target, "status", "--token", TOKEN))
    assert "candidate 1 canary 10%" in text

    route = json.loads(ok(cli(target, "route", "classifier", "alice", "--token", TOKEN, "--json")))
    with AdminClient(open_channel(target), TOKEN) as admin:
        expected = admin.route("classifier", "alice")
    assert route["version"] == expected.version
    assert route["reason"] == "hash"

    audit = ok(cli(target, "audit", "--token", TOKEN))
    last = audit.splitlines()[-1].split()
    assert last[3:7] == ["ops", "classifier", "start", "cli"]


@pytest.mark.usefixtures("idle_classifier")
def test_rollout_weight_then_rollback_through_the_cli(target: str) -> None:
    ok(cli(target, "rollout", "start", "classifier", "1", "--token", TOKEN))
    out = ok(cli(target, "rollout", "weight", "classifier", "25", "--token", TOKEN))
    assert "canary 25%" in out
    dry = ok(cli(target, "rollout", "promote", "classifier", "--dry-run", "--token", TOKEN))
    assert dry.startswith("(dry run)")
    out = ok(cli(target, "rollout", "rollback", "classifier", "--token", TOKEN))
    assert "rolled_back" in out


def test_token_from_the_environment_variable_the_server_also_reads(
    target: str, tmp_path: Path
) -> None:
    done = cli(target, "status", "--json", env={"CANARYSERVE_ADMIN_TOKEN": TOKEN}, cwd=tmp_path)
    models = [r["model"] for r in json.loads(ok(done))]
    assert models == ["classifier", "counter", "shouter"]


def test_the_environment_token_wins_over_the_token_file(target: str, tmp_path: Path) -> None:
    (tmp_path / ".canaryserve").mkdir()
    (tmp_path / ".canaryserve" / "admin.token").write_text("stale\n")
    done = cli(target, "status", env={"CANARYSERVE_ADMIN_TOKEN": TOKEN}, cwd=tmp_path)
    assert "classifier" in ok(done)
    done = cli(target, "status", cwd=tmp_path)
    assert done.returncode == 1 and "UNAUTHENTICATED" in done.stderr


def test_missing_token_exits_1_explaining_where_tokens_come_from(
    target: str, tmp_path: Path
) -> None:
    done = cli(target, "status", cwd=tmp_path)
    assert done.returncode == 1
    assert "UNAUTHENTICATED" in done.stderr and "CANARYSERVE_ADMIN_TOKEN" in done.stderr
    assert "admin.token" in done.stderr


def test_the_former_token_variable_is_not_read_and_the_error_says_so(
    target: str, tmp_path: Path
) -> None:
    done = cli(target, "status", env={"CANARYSERVE_TOKEN": TOKEN}, cwd=tmp_path)
    assert done.returncode == 1
    assert "CANARYSERVE_TOKEN is no longer read: set CANARYSERVE_ADMIN_TOKEN" in done.stderr


def test_bad_token_exits_1_with_unauthenticated_on_stderr(target: str) -> None:
    done = cli(target, "status", "--token", "wrong")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "UNAUTHENTICATED" in done.stderr


def test_weight_above_100_percent_exits_1_with_a_clear_message(target: str) -> None:
    done = cli(target, "rollout", "weight", "classifier", "150", "--token", TOKEN)
    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr
    assert "within 0..100, got 150" in done.stderr
    assert "Traceback" not in done.stderr


def test_server_side_refusal_exits_1_with_the_reason(target: str) -> None:
    done = cli(target, "rollout", "promote", "classifier", "--token", TOKEN)
    assert done.returncode == 1
    assert "FAILED_PRECONDITION" in done.stderr and "no candidate" in done.stderr


@pytest.mark.usefixtures("idle_classifier")
def test_route_meta_keys_match_cohort_rules_like_real_requests_do(target: str) -> None:
    # gRPC lower-cases header names, and `rollout start --cohort` lower-cases the rule's key,
    # so `--meta X-Region=eu` must predict what a request with header X-Region: eu gets.
    eu = pb.CohortRule(metadata_key="x-region", value="eu", target=pb.COHORT_TARGET_CANDIDATE)
    with AdminClient(open_channel(target), TOKEN) as admin:
        admin.start("classifier", "1", cohort_rules=[eu])
    for meta in ("x-region=eu", "X-Region=eu"):
        args = ("route", "classifier", "alice", "--meta", meta, "--token", TOKEN, "--json")
        answer = json.loads(ok(cli(target, *args)))
        assert (answer["version"], answer["reason"]) == ("1", "cohort"), meta


def test_route_meta_without_equals_exits_1_with_a_usage_message(target: str) -> None:
    done = cli(target, "route", "classifier", "alice", "--meta", "x-region", "--token", TOKEN)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "KEY=VALUE" in done.stderr


def test_serve_help_is_the_servers_and_lists_the_documented_flags(tmp_path: Path) -> None:
    # `serve` hands its flags to the server's own entry point (python -m server).
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    out = ok(done)
    assert out.startswith("usage: canaryserve serve")
    for flag in ("--models", "--host", "--port", "--state-dir", "--config"):
        assert flag in out


def test_serve_with_an_unknown_flag_exits_2_naming_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "serve", "--no-such-flag"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in done.stderr


def test_other_commands_still_reject_unknown_flags(target: str) -> None:
    done = cli(target, "models", "--port", "1")
    assert done.returncode == 2
    assert "unrecognized arguments: --port 1" in done.stderr
