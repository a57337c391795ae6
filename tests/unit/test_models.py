"""The bundled models and the model builders, run in real onnxruntime sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from models.build import (
    CLASSIFIER_B,
    CLASSIFIER_W,
    FAULTY_THRESHOLD,
    MODELS_DIR,
    build_classifier_faulty,
    build_classifier_perturbed,
    build_classifier_slow,
    build_mlp,
    build_repository,
    stale_files,
)

V1 = MODELS_DIR / "classifier" / "1" / "model.onnx"
V2 = MODELS_DIR / "classifier" / "2" / "model.onnx"


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4  # the faulty model's expected failures are not news
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def scores(sess: ort.InferenceSession, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = sess.run(["scores"], {"input": x})[0]
    return out


def normal(rows: int, seed: int) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)


def test_committed_models_are_up_to_date() -> None:
    assert stale_files() == [], "run `python -m models.build`"


def test_builds_are_byte_identical_and_loadable(tmp_path: Path) -> None:
    first = build_repository(tmp_path / "a")
    second = build_repository(tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second
    ]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
        model = onnx.load(str(a))
        assert (model.ir_version, model.producer_name) == (8, "canaryserve-models")
        assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
        assert model.doc_string
        session(a)


def test_classifier_v1_is_softmax_of_affine() -> None:
    x = normal(32, seed=1)
    logits = x @ CLASSIFIER_W + CLASSIFIER_B
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = scores(session(V1), x)
    assert got.shape == (32, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_classifier_v2_scores_class_2_strictly_higher_than_v1() -> None:
    x = normal(256, seed=2)
    v1, v2 = scores(session(V1), x), scores(session(V2), x)
    assert (v2[:, 2] > v1[:, 2]).all()
    assert (v2[:, :2] < v1[:, :2]).all()


def test_counter_reduces_each_row() -> None:
    ids = np.array([[1, 5, 2], [7, -3, 0]], dtype=np.int64)
    total, maximum = session(MODELS_DIR / "counter" / "1" / "model.onnx").run(None, {"ids": ids})
    assert total.dtype == maximum.dtype == np.int64
    assert total.tolist() == [8, 4]
    assert maximum.tolist() == [5, 7]


@pytest.mark.parametrize(
    ("text", "upper"),
    [(["hello", "Canary 2!", ""], ["HELLO", "CANARY 2!", ""]), (["x"], ["X"])],
)
def test_shouter_upper_cases_a_1d_batch(text: list[str], upper: list[str]) -> None:
    sess = session(MODELS_DIR / "shouter" / "1" / "model.onnx")
    (out,) = sess.run(None, {"text": np.array(text, dtype=object)})
    assert out.shape == (len(text),)
    assert out.tolist() == upper


def test_perturbed_disagrees_with_v1_on_about_one_percent(tmp_path: Path) -> None:
    x = normal(20_000, seed=3)
    perturbed = session(build_classifier_perturbed(tmp_path / "model.onnx"))
    rate = float((scores(perturbed, x).argmax(1) != scores(session(V1), x).argmax(1)).mean())
    assert 0.005 <= rate <= 0.02, rate


def test_slow_matches_v1(tmp_path: Path) -> None:
    slow = session(build_classifier_slow(tmp_path / "model.onnx"))
    v1 = session(V1)
    for x in (normal(1, seed=4), normal(64, seed=5)):
        np.testing.assert_allclose(scores(slow, x), scores(v1, x), rtol=0, atol=1e-6)


def test_faulty_matches_v1_below_threshold_and_raises_above(tmp_path: Path) -> None:
    faulty = session(build_classifier_faulty(tmp_path / "model.onnx"))
    v1 = session(V1)
    x = normal(512, seed=6)
    above = x[:, 0] > np.float32(FAULTY_THRESHOLD)
    assert 0 < above.sum() < 64
    good = x[~above]
    np.testing.assert_allclose(scores(faulty, good), scores(v1, good), rtol=0, atol=1e-6)
    with pytest.raises(InvalidArgument, match="out of data bounds"):
        scores(faulty, x)
    with pytest.raises(InvalidArgument):
        scores(faulty, x[above][:1])
    edge = np.array([[FAULTY_THRESHOLD, 0.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(scores(faulty, edge), scores(v1, edge), rtol=0, atol=1e-6)


def test_mlp_shape_and_seed(tmp_path: Path) -> None:
    """The benchmark MLP is deterministic per seed and maps 256 inputs to 10 logits."""
    path = build_mlp(tmp_path / "a.onnx", seed=7)
    assert path.read_bytes() == build_mlp(tmp_path / "b.onnx", seed=7).read_bytes()
    assert path.read_bytes() != build_mlp(tmp_path / "c.onnx", seed=8).read_bytes()
    x = np.random.default_rng(9).standard_normal((5, 256)).astype(np.float32)
    (logits,) = session(path).run(None, {"input": x})
    assert logits.shape == (5, 10)
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()
