"""OnnxRunner: the session's own C++ run, with the public run as the fallback."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from server.config import bundled_models_dir
from server.serving.runner import OnnxRunner, _direct_run


@pytest.mark.parametrize("model", ["classifier", "counter", "shouter"])
def test_runner_answers_like_the_public_session_run(model: str) -> None:
    """OnnxRunner calls the session's C++ binding; its answers are the public run's, exactly."""
    path = bundled_models_dir() / model / "1" / "model.onnx"
    runner = OnnxRunner(path, intra_op_threads=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    feeds: dict[str, np.ndarray] = {}
    for spec in runner.signature.inputs:
        shape = tuple(3 if d is None else d for d in spec.shape)
        if spec.dtype.oip == "BYTES":
            feeds[spec.name] = np.array(["ab", "", "ünï"][: shape[0]], dtype=object).reshape(shape)
        elif spec.dtype.numpy.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype.numpy)
        else:
            feeds[spec.name] = rng.integers(-50, 50, shape).astype(spec.dtype.numpy)
    names = runner.signature.output_names
    ours = runner.run(names, feeds)
    theirs = session.run(list(names), feeds)
    assert len(ours) == len(theirs) == len(names)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)
    assert "_direct_run" in runner.run.__qualname__  # the binding, not the wrapper


def test_runner_falls_back_to_the_public_run_without_the_binding() -> None:
    """An onnxruntime without the private `_sess` binding gets the checked public `run`."""

    class Session:
        def run(self, outputs: object, feeds: object) -> list[np.ndarray]:
            return [np.zeros(1)]

    session = Session()
    assert _direct_run(session, object) == session.run
