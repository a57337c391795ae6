"""Interop: the real tritonclient.grpc library against a running canaryserve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protos.wire import ADMIN_TOKEN_FILE as TOKEN_FILE
from server.app import App

CHECKS = Path(__file__).parent / "tritonclient_checks.py"
NAMES = [
    "server_live_and_ready",
    "model_ready",
    "model_metadata",
    "model_config",
    "repository_index",
    "infer_without_version",
    "infer_with_version",
    "infer_int64_and_bytes",
    "errors_are_clear",
    "unload_and_load",
    "statistics",
]


@pytest.fixture(scope="module")
def triton_results(app: App) -> dict[str, str]:
    token = (app.config.state_dir / TOKEN_FILE).read_text().strip()
    proc = subprocess.run(
        [sys.executable, str(CHECKS), f"127.0.0.1:{app.port}", str(app.config.models_dir), token],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results: dict[str, str] = json.loads(proc.stdout)
    return results


def test_every_check_ran(triton_results: dict[str, str]) -> None:
    """The subprocess ran every tritonclient check, no more and no fewer."""
    assert sorted(triton_results) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_tritonclient(triton_results: dict[str, str], name: str) -> None:
    """Each tritonclient check passes against canaryserve, as it would against Triton."""
    assert triton_results[name] == "ok", triton_results[name]
