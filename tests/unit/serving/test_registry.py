"""The registry: versions side by side, broken versions isolated, unchanged sessions kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server.errors import ModelNotFound, ModelVersionNotFound, VersionNotReady
from server.serving.registry import LoadState, Registry
from server.serving.runner import OnnxRunner
from tests.support.servers import make_repository

X = np.zeros((1, 4), dtype=np.float32)


def test_loads_every_version_side_by_side(tmp_path: Path) -> None:
    registry = Registry(make_repository(tmp_path), OnnxRunner)
    registry.load_all()
    assert registry.models() == ["classifier", "counter", "shouter"]
    assert registry.ready_versions("classifier") == {"1", "2"}
    assert registry.highest_ready("classifier") == "2"
    with pytest.raises(ModelNotFound, match="known models"):
        registry.get("nope", "1")
    with pytest.raises(ModelVersionNotFound, match="versions: 1, 2"):
        registry.get("classifier", "3")


def test_unloaded_model_is_unavailable(tmp_path: Path) -> None:
    registry = Registry(make_repository(tmp_path), OnnxRunner)
    registry.load_all()
    registry.unload("counter")
    with pytest.raises(VersionNotReady, match="UNAVAILABLE: unloaded"):
        registry.get("counter", "1")
    registry.load("counter")
    assert registry.get("counter", "1").state is LoadState.READY


def test_reload_keeps_unchanged_sessions(tmp_path: Path) -> None:
    registry = Registry(make_repository(tmp_path), OnnxRunner)
    registry.load_all()
    before = registry.get("classifier", "1")
    registry.load("classifier")
    assert registry.get("classifier", "1") is before
