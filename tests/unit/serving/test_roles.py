"""Session settings by role: what a version is built with, and what a role change rebuilds."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from server.serving.roles import Placement, RoleRunner, RunnerBuilder, follow_roles
from server.serving.runner import OnnxRunner
from server.serving.signature import Signature
from server.testing import FakeRunner
from tests.support.servers import make_repository
from tests.support.waiting import wait_for

X = {"input": np.ones((2, 4), np.float32)}


@pytest.fixture
def classifier(tmp_path: Path) -> Path:
    return make_repository(tmp_path) / "classifier" / "2" / "model.onnx"


@pytest.mark.parametrize(
    ("placement", "stable", "candidate"),
    [
        (Placement(), (False, 1), (False, 1)),  # the defaults: a promotion rebuilds nothing
        (Placement(candidate_intra_op_threads=2), (False, 1), (False, 2)),
        (Placement(candidate_isolation="process"), (False, 1), (True, 1)),
        (Placement(isolation="process"), (True, 1), (True, 1)),
        (Placement(isolation="process", candidate_isolation="none"), (True, 1), (True, 1)),
    ],
)
def test_what_a_session_is_built_with_by_role(
    placement: Placement, stable: tuple[bool, int], candidate: tuple[bool, int]
) -> None:
    assert placement.build_key(True) == stable
    assert placement.build_key(False) == candidate


def test_with_the_defaults_a_role_change_only_flips_arena_shrinkage(classifier: Path) -> None:
    runner = RoleRunner(classifier, Placement(), stable=False)
    inner = runner.inner
    assert isinstance(inner, OnnxRunner) and inner.shrink_arena  # a candidate shrinks
    runner.set_role(True)
    assert runner.inner is inner and not inner.shrink_arena
    runner.set_role(False)
    assert runner.inner is inner and inner.shrink_arena


def test_different_thread_counts_rebuild_the_session_in_the_background(
    classifier: Path,
) -> None:
    runner = RoleRunner(classifier, Placement(candidate_intra_op_threads=2), stable=False)
    before = runner.inner
    expected = runner.run(["scores"], X)[0]
    runner.set_role(True)
    after = wait_for(lambda: runner.inner is not before and runner.inner)
    assert isinstance(after, OnnxRunner) and not after.shrink_arena
    assert getattr(runner.run, "__self__", None) is after  # runs go to the new session
    np.testing.assert_array_equal(runner.run(["scores"], X)[0], expected)


def test_the_builder_gives_each_version_the_role_it_has_at_load(tmp_path: Path) -> None:
    root = make_repository(tmp_path)
    builder = RunnerBuilder(lambda model: Placement(), lambda model: "2")
    assert builder(root / "classifier" / "2" / "model.onnx").stable
    assert not builder(root / "classifier" / "1" / "model.onnx").stable


def test_follow_roles_tells_each_runner_whether_it_is_stable(classifier: Path) -> None:
    one, two = (RoleRunner(classifier, Placement(), stable=s) for s in (True, False))
    follow_roles(
        [("m", "1", one), ("m", "2", two), ("m", "3", FakeRunner()), ("gone", "1", one)],
        lambda model: "2" if model == "m" else None,
    )
    assert not one.stable and two.stable  # and a model with no stable changes nothing


class _Built:
    """A runner the test builds: it remembers whether it was closed."""

    def __init__(self) -> None:
        self.signature = Signature(inputs=(), outputs=())
        self.first_dims: tuple[object, ...] = ()
        self.shrink_arena = False
        self.closed = False

    def run(self, outputs: object, feeds: object) -> list[np.ndarray]:  # type: ignore[type-arg]
        return []

    def close(self) -> None:
        self.closed = True


def test_closing_during_a_rebuild_closes_what_the_rebuild_built() -> None:
    built: list[_Built] = []
    building, release = threading.Event(), threading.Event()

    def build(path: Path, placement: Placement, stable: bool) -> _Built:
        if built:  # the rebuild for the new role: held until the runner is closed
            building.set()
            release.wait(10)
        built.append(_Built())
        return built[-1]

    runner = RoleRunner(
        Path("m/1/model.onnx"), Placement(candidate_intra_op_threads=2), False, build
    )
    runner.set_role(True)
    assert building.wait(10)
    runner.close()
    assert built[0].closed
    release.set()
    wait_for(lambda: len(built) == 2 and built[1].closed, message="the rebuilt runner closes")
    assert runner.inner is built[0]  # never swapped in


def test_a_role_that_changes_back_during_a_rebuild_is_followed() -> None:
    """Promoted, then rolled back while the stable build was under way: the runner ends up
    built for the role it has now, not for the one the finished build was for."""
    built: list[tuple[bool, _Built]] = []
    building, release = threading.Event(), threading.Event()

    def build(path: Path, placement: Placement, stable: bool) -> _Built:
        if stable:  # the build for the promotion: held until the role has changed back
            building.set()
            release.wait(10)
        built.append((stable, _Built()))
        return built[-1][1]

    runner = RoleRunner(
        Path("m/1/model.onnx"), Placement(candidate_intra_op_threads=2), False, build
    )
    runner.set_role(True)
    assert building.wait(10)
    runner.set_role(False)  # rolled back before the stable build is done
    release.set()
    wait_for(lambda: [s for s, _ in built] == [False, True, False], message="built back")
    wait_for(lambda: runner.inner is built[2][1], message="the candidate build serves")
    assert not runner.stable
