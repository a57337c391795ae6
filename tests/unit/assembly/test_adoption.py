"""Every model with ready versions gets a rollout state; a configured stable must be ready."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from server.assembly.adoption import adopt, check_configured_stable
from server.config import Config, ConfigError, ModelConfig
from server.rollout.controller import RolloutController
from server.rollout.router import RoutingTable
from server.serving.registry import Registry
from server.testing import FakeClock, FakeRunner, MemoryStore


def runner(path: Path) -> FakeRunner:
    if path.parent.name == "3":
        raise RuntimeError("not an ONNX file")
    return FakeRunner()


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """Model "m": versions 1 and 2 ready, version 3 a file that fails to load."""
    for version in "123":
        (tmp_path / "m" / version).mkdir(parents=True)
        (tmp_path / "m" / version / "model.onnx").write_bytes(b"")
    registry = Registry(tmp_path, runner)
    registry.load_all()
    return registry


def controller(registry: Registry, store: MemoryStore | None = None) -> RolloutController:
    tables: list[RoutingTable] = []
    return RolloutController(
        store or MemoryStore(),
        ready_versions=registry.ready_versions,
        publish=tables.append,
        clock=FakeClock(now=1_000.0),
    )


def config(tmp_path: Path, stable: str | None = None) -> Config:
    models = {"m": ModelConfig(stable=stable)} if stable else {}
    return Config(models_dir=tmp_path, models=MappingProxyType(models))


def test_a_new_model_gets_its_highest_ready_version_as_stable(
    tmp_path: Path, registry: Registry
) -> None:
    rollouts = controller(registry)
    check_configured_stable(config(tmp_path), registry, rollouts)
    adopt(config(tmp_path), registry, rollouts)
    assert rollouts.get("m").stable == "2"


def test_a_configured_stable_is_adopted_when_it_is_ready(
    tmp_path: Path, registry: Registry
) -> None:
    rollouts = controller(registry)
    check_configured_stable(config(tmp_path, "1"), registry, rollouts)
    adopt(config(tmp_path, "1"), registry, rollouts)
    assert rollouts.get("m").stable == "1"


def test_a_configured_stable_that_is_not_ready_stops_the_start_naming_the_ready_ones(
    tmp_path: Path, registry: Registry
) -> None:
    with pytest.raises(ConfigError, match=r'stable = "3" is not a ready version \(ready: 1, 2\)'):
        check_configured_stable(config(tmp_path, "3"), registry, controller(registry))


def test_saved_state_wins_over_the_configured_stable(tmp_path: Path, registry: Registry) -> None:
    store = MemoryStore()
    adopt(config(tmp_path, "1"), registry, controller(registry, store))
    restarted = controller(registry, store)
    check_configured_stable(config(tmp_path, "3"), registry, restarted)  # no error: saved
    adopt(config(tmp_path, "2"), registry, restarted)
    assert restarted.get("m").stable == "1"
