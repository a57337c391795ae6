"""OnnxRunner: the session's own C++ run, with the public run as the fallback."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from server.config import bundled_models_dir
from server.serving.runner import OnnxRunner


@pytest.mark.parametrize("model", ["classifier", "counter", "shouter"])
def test_runner_answers_like_the_public_session_run(model: str) -> None:
    """OnnxRunner answers exactly what a plain onnxruntime session answers, for every dtype."""
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
