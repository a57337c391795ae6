"""Immutable, identified versions: each version is its file's sha256; a changed file under the
same number is refused on reload unless forced, and a forced change is audited."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from client.cli import main
from client.errors import ClientError
from client.inference import InferenceClient
from models.build import build_classifier_perturbed
from server.serving.registry import LoadState
from tests.support.release import OPERATOR, admin, serve


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_changed_version_is_refused_until_forced_and_then_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = serve(tmp_path)
    target = f"127.0.0.1:{app.port}"
    repo = app.config.models_dir / "classifier"
    try:
        shutil.copytree(repo / "1", repo / "3")
        x = {"input": np.array([[0.1, -2.0, 0.3, 1.7]], dtype=np.float32)}
        with InferenceClient(target, metadata=OPERATOR) as c:
            c.load("classifier")
            original = sha(repo / "3" / "model.onnx")
            assert c.config("classifier", "3").parameters["sha256"].string_value == original
            before = c.infer("classifier", x, version="3").outputs
            with admin(app) as ops:
                started = ops.start("classifier", "3", canary_ppm=10_000).rollout
                assert started.candidate_sha256 == original
                assert started.stable_sha256 == sha(repo / "1" / "model.onnx")
                start = ops.audit("classifier")[-1]
                assert json.loads(start.extra_json)["candidate_sha256"] == original
                ops.transition("rollback", "classifier")

            build_classifier_perturbed(repo / "3" / "model.onnx")  # other bytes, same number
            changed = sha(repo / "3" / "model.onnx")
            with pytest.raises(ClientError) as refused:
                c.load("classifier")
            assert refused.value.code == "FAILED_PRECONDITION"
            assert "version 3 changed on disk" in refused.value.details
            assert "give it a new version number" in refused.value.details
            # Version 3 still serves what it loaded; nothing about it changed.
            mv = app.registry.versions("classifier")["3"]
            assert mv.state is LoadState.READY and mv.sha256 == original
            after = c.infer("classifier", x, version="3").outputs
            assert all(np.array_equal(before[k], after[k]) for k in before)

            c.load("classifier", force=True)
            assert c.config("classifier", "3").parameters["sha256"].string_value == changed
        with admin(app) as ops:
            # The forced replacement, then the operator's load that forced it.
            replaced, load = ops.audit("classifier")[-2:]
        assert (replaced.operation, replaced.actor) == ("version_replaced", "repository")
        assert (load.operation, load.actor) == ("load", "ops")
        assert json.loads(replaced.extra_json) == {
            "version": "3",
            "old_sha256": original,
            "new_sha256": changed,
        }

        assert main(["--target", target, "models", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        (row,) = [r for r in rows if (r["model"], r["version"]) == ("classifier", "3")]
        assert row["sha256"] == changed
    finally:
        app.stop(0)


def test_touching_a_file_without_changing_it_keeps_the_session(tmp_path: Path) -> None:
    app = serve(tmp_path)
    try:
        path = app.config.models_dir / "classifier" / "1" / "model.onnx"
        runner = app.registry.versions("classifier")["1"].runner
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        app.registry.load("classifier")
        mv = app.registry.versions("classifier")["1"]
        assert mv.runner is runner and mv.sha256 == sha(path)
    finally:
        app.stop(0)


def test_an_unloaded_version_remembers_its_identity(tmp_path: Path) -> None:
    app = serve(tmp_path)
    try:
        path = app.config.models_dir / "classifier" / "1" / "model.onnx"
        app.registry.unload("classifier")
        build_classifier_perturbed(path)
        with pytest.raises(Exception, match="version 1 changed on disk"):
            app.registry.load("classifier")
    finally:
        app.stop(0)
