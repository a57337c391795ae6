"""Poll mode: new version directories are loaded once, by themselves; what the registry
already knows (unloaded, failed) is left alone."""

from __future__ import annotations

import shutil
from pathlib import Path

from server.serving.poller import VersionPoller
from server.serving.registry import LoadState, Registry
from server.serving.runner import OnnxRunner
from tests.support.servers import make_repository


def test_new_version_directories_are_loaded_once_and_unloaded_ones_stay_unloaded(
    tmp_path: Path,
) -> None:
    root = make_repository(tmp_path)
    registry = Registry(root, OnnxRunner)
    registry.load_all()
    poller = VersionPoller(registry, interval_s=60)
    assert poller.poll_once() == []  # nothing new
    shutil.copytree(root / "classifier" / "1", root / "classifier" / "7")
    (root / "classifier" / "8").mkdir()  # a version directory without a model file
    (root / "classifier" / "notes").mkdir()  # not a version
    loaded = poller.poll_once()
    assert [(mv.version, mv.state) for mv in loaded] == [
        ("7", LoadState.READY),
        ("8", LoadState.UNAVAILABLE),
    ]
    assert poller.poll_once() == []  # the failed one is not retried every poll
    registry.unload("classifier", "7")
    assert poller.poll_once() == []  # an operator's unload stands
    assert "7" not in registry.ready_versions("classifier")


def test_a_new_model_directory_is_loaded_too(tmp_path: Path) -> None:
    root = make_repository(tmp_path)
    registry = Registry(root, OnnxRunner)
    registry.load_all()
    shutil.copytree(root / "classifier", root / "fresh")
    poller = VersionPoller(registry, interval_s=60)
    loaded = poller.poll_once()
    assert {mv.model for mv in loaded} == {"fresh"}
    assert registry.ready_versions("fresh") == registry.ready_versions("classifier")
