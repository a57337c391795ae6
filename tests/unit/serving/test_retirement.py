"""Retirement: a version that stops serving (unloaded, replaced by a forced load) has its runner
closed and its scheduler forgotten; versions that serve on keep theirs; a late call on a closed
runner fails UNAVAILABLE and leaves no scheduler behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.build import build_classifier_perturbed
from server.errors import VersionNotReady, status_name
from server.rollout.router import Stage
from server.serving.limits import Policy
from server.serving.registry import Registry
from server.serving.retirement import Retirement
from server.serving.runner import OnnxRunner
from server.serving.schedulers import Schedulers
from tests.support.servers import make_repository

X = {"input": np.ones((1, 4), np.float32)}


def _serving(tmp_path: Path) -> tuple[Registry, Schedulers]:
    registry = Registry(make_repository(tmp_path), OnnxRunner)
    schedulers = Schedulers(lambda model: Policy())
    registry.on_change(Retirement(registry, schedulers).follow)
    registry.load_all()
    for version in ("1", "2"):
        runner = registry.get("classifier", version).runner
        assert runner is not None
        schedulers.get("classifier", version, runner, Stage.STABLE).run(["scores"], X)
    return registry, schedulers


def test_an_unloaded_version_closes_its_runner_and_leaves_the_schedulers(tmp_path: Path) -> None:
    registry, schedulers = _serving(tmp_path)
    one, two = (registry.get("classifier", v).runner for v in ("1", "2"))
    assert isinstance(one, OnnxRunner) and isinstance(two, OnnxRunner)
    registry.unload("classifier", "2")
    assert two.closed and not one.closed
    assert schedulers.find("classifier", "2") is None
    assert schedulers.find("classifier", "1") is not None
    # A call that looked the version up before the unload: a clear UNAVAILABLE, no new series.
    with pytest.raises(VersionNotReady, match="unloaded while this call waited") as late:
        schedulers.get("classifier", "2", two, Stage.CANARY).run(["scores"], X)
    assert status_name(late.value) == "UNAVAILABLE"
    assert schedulers.find("classifier", "2") is None
    registry.load("classifier", "2")  # loaded again: a new session
    again = registry.get("classifier", "2").runner
    assert again is not two and isinstance(again, OnnxRunner) and not again.closed


def test_a_forced_load_closes_the_runner_it_replaced(tmp_path: Path) -> None:
    registry, schedulers = _serving(tmp_path)
    old = registry.get("classifier", "1").runner
    assert isinstance(old, OnnxRunner)
    build_classifier_perturbed(registry.root / "classifier" / "1" / "model.onnx", base=2)
    registry.load("classifier", force=True)
    assert old.closed
    assert schedulers.find("classifier", "1") is None
    assert registry.get("classifier", "1").runner is not old
    assert not registry.get("classifier", "2").runner.closed  # type: ignore[union-attr]
