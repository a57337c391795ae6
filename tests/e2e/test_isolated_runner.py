"""IsolatedRunner against real child processes: answers equal the in-process session's, big
answers grow the shared buffer, and closing ends the process and frees the buffer."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from server.errors import Contained, SharedMemoryFull, VersionNotReady, status_name
from server.serving.isolated import ChildSettings, IsolatedRunner
from server.serving.runner import OnnxRunner
from tests.support.servers import make_repository
from tests.support.waiting import wait_for


def _tiler(path: Path) -> Path:
    """y = Tile(x, [reps]): a 1-element input, an answer of `reps` floats."""
    graph = helper.make_graph(
        [helper.make_node("Tile", ["x", "reps"], ["y"])],
        "tiler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor("reps", TensorProto.INT64, [1], [3_000_000])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.parent.mkdir(parents=True)
    onnx.save(model, path)
    return path


def test_answers_equal_the_in_process_sessions(tmp_path: Path) -> None:
    path = make_repository(tmp_path) / "classifier" / "2" / "model.onnx"
    runner = IsolatedRunner(path, ChildSettings(intra_op_threads=1))
    try:
        assert runner.signature == OnnxRunner(path, 1).signature
        x = {"input": np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)}
        expected = OnnxRunner(path, 1).run(["scores"], x)[0]
        np.testing.assert_array_equal(runner.run(["scores"], x)[0], expected)
    finally:
        runner.close()


def test_an_answer_bigger_than_the_buffer_grows_it(tmp_path: Path) -> None:
    runner = IsolatedRunner(_tiler(tmp_path / "tiler" / "1" / "model.onnx"))
    try:
        y = runner.run(["y"], {"x": np.array([2.5], np.float32)})[0]
        assert y.shape == (3_000_000,) and bool((y == 2.5).all())  # 12 MB through 1 MiB
        y = runner.run(["y"], {"x": np.array([-1.0], np.float32)})[0]
        assert bool((y == -1.0).all())
    finally:
        runner.close()


def test_closing_ends_the_process_and_frees_the_buffer(tmp_path: Path) -> None:
    path = make_repository(tmp_path) / "classifier" / "1" / "model.onnx"
    runner = IsolatedRunner(path)
    pid = runner.pid
    assert pid is not None
    buffer = Path("/dev/shm") / runner._supervisor.buffer.name
    assert buffer.exists()
    runner.close()
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"))
    assert not buffer.exists()


def _children_of(path: Path) -> list[int]:
    """Live processes serving the model at `path` (an isolated runner's children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(") ")[1][0]
        except (OSError, IndexError):
            continue
        if b"server.serving.child" in cmdline and str(path).encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def test_closing_while_the_process_restarts_leaves_no_process(tmp_path: Path) -> None:
    path = make_repository(tmp_path) / "classifier" / "1" / "model.onnx"
    runner = IsolatedRunner(path)
    supervisor = runner._supervisor
    first = runner.pid
    assert first is not None and _children_of(path) == [first]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: runner.pid is None, message="the restart begins")
    runner.close()
    supervisor._thread.join(timeout=60)  # the restart loop ends, killing what it built
    assert not supervisor._thread.is_alive()
    assert _children_of(path) == []
    assert runner.pid is None
    with pytest.raises(VersionNotReady, match="unloaded"):
        runner.run(["scores"], {"input": np.ones((1, 4), np.float32)})


def test_a_buffer_dev_shm_has_no_room_for_fails_that_call_only(tmp_path: Path) -> None:
    """/dev/shm's pages are reserved when a buffer grows: past the tmpfs's size the call fails
    RESOURCE_EXHAUSTED (Contained: a candidate's falls back) instead of a SIGBUS later."""
    path = make_repository(tmp_path) / "classifier" / "1" / "model.onnx"
    runner = IsolatedRunner(path)
    try:
        supervisor = runner._supervisor
        before = supervisor.buffer.name
        fs = os.statvfs("/dev/shm")
        too_big = fs.f_blocks * fs.f_frsize + (1 << 30)
        with supervisor.lock, pytest.raises(SharedMemoryFull) as full:
            supervisor.buffer_of(too_big)
        assert isinstance(full.value, Contained) and status_name(full.value) == "RESOURCE_EXHAUSTED"
        assert "/dev/shm" in str(full.value)
        assert supervisor.buffer.name == before  # the old buffer serves on
        x = {"input": np.ones((2, 4), np.float32)}
        np.testing.assert_array_equal(
            runner.run(["scores"], x)[0], OnnxRunner(path, 1).run(["scores"], x)[0]
        )
    finally:
        runner.close()
