"""Output comparison (server.shadow.comparison): hand-computed cases of agreeing and disagreeing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.shadow import comparison
from server.shadow.comparison import (
    Comparison,
    ComparisonPolicy,
    Disagreement,
    OutputComparison,
    _compare_arrays,
    _compare_values,
    _identical,
    compare,
)


def one(c: Comparison, name: str = "y") -> OutputComparison:
    out = c.output(name)
    assert out is not None
    return out


def test_identical_outputs_agree() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], dtype=np.float32)
    reg = np.array([1.0, 2.0, 3.0])
    c = compare({"y": scores, "r": reg}, {"y": scores.copy(), "r": reg.copy()})
    assert not c.disagree
    assert c.worst() is None
    y = one(c)
    assert (y.disagree, y.reason, y.rows) == (False, None, 2)
    assert (y.max_abs_err, y.mean_abs_err, y.max_rel_err) == (0.0, 0.0, 0.0)
    assert (y.argmax_agree_rate, y.topk_overlap) == (1.0, 1.0)
    r = one(c, "r")
    assert r.argmax_agree_rate is None and r.topk_overlap is None  # 1-D: not class scores


def test_nan_on_one_side_is_counted_and_disagrees() -> None:
    p = np.array([1.0, np.nan, 3.0, np.inf])
    s = np.array([1.0, 2.0, 3.0, np.inf])
    y = one(compare({"y": p}, {"y": s}))
    assert y.disagree and y.reason is Disagreement.NONFINITE
    assert (y.nan_primary, y.nan_shadow, y.inf_primary, y.inf_shadow) == (1, 0, 1, 1)
    assert y.max_abs_err == 0.0  # over positions finite on both sides only


def test_nan_and_inf_at_the_same_positions_agree() -> None:
    p = np.array([np.nan, -np.inf, 1.0])
    assert not compare({"y": p}, {"y": p.copy()}).disagree
    flipped_sign = np.array([np.nan, np.inf, 1.0])
    assert one(compare({"y": p}, {"y": flipped_sign})).reason is Disagreement.NONFINITE


def test_shape_mismatch_is_recorded_not_raised() -> None:
    y = one(compare({"y": np.zeros((2, 3))}, {"y": np.zeros((3, 2))}))
    assert y.disagree and y.shape_mismatch and y.reason is Disagreement.SHAPE
    assert y.max_abs_err is None and y.rows == 2


def test_dtype_mismatch_disagrees_but_still_measures_error() -> None:
    p = np.array([1.0, 2.0], dtype=np.float32)
    s = np.array([1.0, 2.5], dtype=np.float64)
    y = one(compare({"y": p}, {"y": s}))
    assert y.disagree and y.dtype_mismatch and y.reason is Disagreement.DTYPE
    assert y.max_abs_err == 0.5


def test_argmax_flips_on_a_crafted_batch() -> None:
    p = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    s = np.array([[0.8, 0.2, 0.0], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])  # row 1 flips 1 -> 0
    y = one(compare({"y": p}, {"y": s}))
    assert y.disagree and y.reason is Disagreement.ARGMAX
    assert y.argmax_agree_rate == pytest.approx(2 / 3)
    assert y.rows == 3
    assert y.max_abs_err == pytest.approx(0.4)


def test_score_drift_without_a_flip_is_not_a_disagreement_for_class_scores() -> None:
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    s = np.array([[0.7, 0.3], [0.4, 0.6]])
    assert not compare({"y": p}, {"y": s}).disagree
    off = ComparisonPolicy(class_scores="off")
    assert one(compare({"y": p}, {"y": s}, off)).reason is Disagreement.TOLERANCE


def test_top_k_overlap_by_hand() -> None:
    p = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    # row 0: top-2 {0, 1} vs {0, 3} -> 1/2; row 1: top-2 {3, 2} vs {3, 2} -> 2/2
    s = np.array([[4.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]])
    y = one(compare({"y": p}, {"y": s}, ComparisonPolicy(top_k=2)))
    assert y.topk_overlap == pytest.approx(0.75)
    assert y.argmax_agree_rate == 1.0 and not y.disagree
    k_above_classes = one(compare({"y": p}, {"y": s}, ComparisonPolicy(top_k=10)))
    assert k_above_classes.topk_overlap == 1.0  # k is capped at 4 classes: all of them


def test_relative_and_absolute_error() -> None:
    """Errors are measured absolutely and relative to the primary."""
    p = np.array([1.0, 2.0, 4.0, 0.0])
    s = np.array([1.1, 2.0, 3.0, 0.0])
    y = one(compare({"y": p}, {"y": s}))
    assert y.max_abs_err == pytest.approx(1.0)
    assert y.mean_abs_err == pytest.approx(1.1 / 4)
    assert y.max_rel_err == pytest.approx(0.25)  # |4 - 3| / 4
    assert y.disagree and y.reason is Disagreement.TOLERANCE


def test_tolerance_is_atol_plus_rtol_times_primary() -> None:
    policy = ComparisonPolicy(atol=0.01, rtol=0.1)
    p = np.array([10.0, 0.0])
    assert not compare({"y": p}, {"y": np.array([11.0, 0.005])}, policy).disagree  # 1 <= 1.01
    assert compare({"y": p}, {"y": np.array([11.1, 0.0])}, policy).disagree
    y = one(compare({"y": p}, {"y": np.array([10.0, 0.02])}, policy))
    assert y.max_rel_err == pytest.approx(2.0)  # divisor floored at atol where primary is 0


def test_string_outputs_compare_by_equality() -> None:
    p = np.array([b"cat", b"dog"], dtype=object)
    same = one(compare({"y": p}, {"y": np.array([b"cat", b"dog"], dtype=object)}))
    assert not same.disagree and same.max_abs_err is None
    other = one(compare({"y": p}, {"y": np.array([b"cat", b"cow"], dtype=object)}))
    assert other.disagree and other.reason is Disagreement.NOT_EQUAL
    numbers = one(compare({"y": p}, {"y": np.array([1.0, 2.0])}))
    assert numbers.reason is Disagreement.DTYPE


def test_outputs_filter_in_the_policy() -> None:
    primary = {"y": np.array([1.0]), "debug": np.array([1.0])}
    shadow = {"y": np.array([1.0]), "debug": np.array([9.0])}
    assert compare(primary, shadow).disagree
    c = compare(primary, shadow, ComparisonPolicy(outputs=("y", "not_requested")))
    assert not c.disagree and [o.name for o in c.outputs] == ["y"]


def test_missing_output_and_odd_objects_never_raise() -> None:
    c = compare({"y": np.array([1.0]), "z": np.array([1.0])}, {"y": [[1.0], [2.0]]})
    assert one(c).reason is Disagreement.SHAPE
    assert one(c, "z").missing and one(c, "z").reason is Disagreement.MISSING
    worst = c.worst()
    assert c.disagree and worst is not None and math.isinf(worst.severity)
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros(2), np.zeros(3)]
    # Element equality that is itself ambiguous (arrays inside) counts as not equal.
    assert one(compare({"y": ragged}, {"y": ragged.copy()})).reason is Disagreement.NOT_EQUAL


def test_empty_batch_of_class_scores() -> None:
    y = one(compare({"y": np.zeros((0, 3))}, {"y": np.zeros((0, 3))}))
    assert not y.disagree and y.rows == 0 and y.argmax_agree_rate is None


def test_policy_is_validated() -> None:
    """A comparison policy refuses impossible settings."""
    with pytest.raises(ValueError, match="top_k"):
        ComparisonPolicy(top_k=0)
    with pytest.raises(ValueError, match="atol"):
        ComparisonPolicy(atol=-1.0)
    with pytest.raises(ValueError, match="class_scores"):
        ComparisonPolicy(class_scores="maybe")  # type: ignore[arg-type]


_SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
_KINDS = st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_])
_MODES = st.sampled_from(["auto", "on", "off"])


@given(shape=_SHAPES, dtype=_KINDS, mode=_MODES, seed=st.integers(0, 2**32 - 1))
def test_the_fast_path_for_equal_outputs_matches_the_full_comparison(
    shape: tuple[int, ...], dtype: type, mode: str, seed: int
) -> None:
    """Equal finite outputs skip the arithmetic; the result must be the same record."""
    values = np.random.default_rng(seed).normal(size=shape) * 10
    p = values.astype(dtype)
    policy = ComparisonPolicy(class_scores=mode)  # type: ignore[arg-type]
    fast = _compare_arrays("y", p, p.copy(), policy)
    full = _compare_values("y", p, p.copy(), policy)
    assert fast == full
    assert not fast.disagree


def test_equal_finite_outputs_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[str] = []

    def spy(name: str, p: np.ndarray, policy: ComparisonPolicy) -> OutputComparison:
        taken.append(name)
        return _identical(name, p, policy)

    monkeypatch.setattr(comparison, "_identical", spy)
    scores = np.array([[0.2, 0.5, 0.3]], np.float32)
    compare({"y": scores}, {"y": scores.copy()})  # equal: fast
    compare({"y": scores}, {"y": scores + np.float32(1e-3)})  # different: full
    compare({"y": np.array([np.nan])}, {"y": np.array([np.nan])})  # NaN: full
    assert taken == ["y"]
