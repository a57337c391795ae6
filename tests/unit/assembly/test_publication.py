"""Which version is stable: the routed one, else the configured one, else the highest on disk."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from server.assembly.publication import stable_of
from server.config import Config, ModelConfig
from server.rollout.router import ModelRouting, RoutingTable


def repository(root: Path, versions: list[str]) -> Path:
    for version in versions:
        (root / "m" / version).mkdir(parents=True)
        (root / "m" / version / "model.onnx").write_bytes(b"")
    return root


def test_before_routing_the_highest_numbered_version_on_disk_will_be_stable(
    tmp_path: Path,
) -> None:
    config = Config(models_dir=repository(tmp_path, ["2", "10", "9", "draft"]))
    assert stable_of(config, RoutingTable(), "m") == "10"  # by number, not by name
    assert stable_of(config, RoutingTable(), "absent") is None


def test_a_configured_stable_wins_over_the_disk_and_the_routed_one_over_both(
    tmp_path: Path,
) -> None:
    config = Config(
        models_dir=repository(tmp_path, ["1", "2"]),
        models=MappingProxyType({"m": ModelConfig(stable="1")}),
    )
    assert stable_of(config, RoutingTable(), "m") == "1"
    routed = RoutingTable(MappingProxyType({"m": ModelRouting(stable="2")}))
    assert stable_of(config, routed, "m") == "2"
