"""Pure comparison of a shadow run's outputs with the primary's, and what counts as disagreeing.

No threads, no clock, no grpc. `compare` never raises: anything it cannot compare (a missing
output, mismatched shapes, odd objects) is recorded as a disagreement with its reason.

An output disagrees, checked in this order, when:
  missing     it exists on one side only
  shape       the shapes differ
  dtype       the dtypes differ
  nonfinite   a NaN or ±Inf on one side is not the same value at the same position on the other
  argmax      class-score outputs only: some row's argmax differs (small score drift is not
              a disagreement for a classifier, a changed answer is)
  tolerance   other numeric outputs: some |primary - shadow| > atol + rtol * |primary|
  not_equal   non-numeric (string/object) outputs: not element-wise equal
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "ClassScores",
    "Comparison",
    "ComparisonPolicy",
    "Disagreement",
    "OutputComparison",
    "compare",
]

log = logging.getLogger(__name__)

ClassScores: TypeAlias = Literal["auto", "on", "off"]
_Array: TypeAlias = npt.NDArray[np.generic]
_NUMERIC = "biufc"  # bool, ints, floats, complex: compared by value; everything else by equality
_TINY = float(np.finfo(np.float64).tiny)


@dataclass(frozen=True)
class ComparisonPolicy:
    """One model's definition of a disagreement between the primary and the shadow outputs."""

    atol: float = 1e-5
    """Absolute tolerance of numeric outputs; also the floor of the relative error's divisor."""
    rtol: float = 1e-3
    """Relative tolerance, relative to |primary| (the primary is the reference)."""
    outputs: tuple[str, ...] = ()
    """Names of the outputs that count; empty: every output either side returned."""
    class_scores: ClassScores = "auto"
    """Judge outputs by argmax: "auto" for float rank-2 outputs with >= 2 columns, "on" for every
    real numeric output of rank >= 1 (rows = all but the last axis), "off" never."""
    top_k: int = 3
    """k of the top-k overlap reported for class-score outputs (capped at the number of classes)."""

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.class_scores not in ("auto", "on", "off"):
            raise ValueError(f"class_scores must be auto, on or off, not {self.class_scores!r}")
        if type(self.top_k) is not int or self.top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, not {self.top_k!r}")
        object.__setattr__(self, "outputs", tuple(self.outputs))


_DEFAULT = ComparisonPolicy()


class Disagreement(enum.StrEnum):
    """Why an output disagrees (the first reason that applies, in the module docstring's order)."""

    MISSING = "missing"
    SHAPE = "shape"
    DTYPE = "dtype"
    NONFINITE = "nonfinite"
    ARGMAX = "argmax"
    TOLERANCE = "tolerance"
    NOT_EQUAL = "not_equal"
    FAILED = "compare_failed"  # comparing raised: a bug here, logged, never the caller's problem


@dataclass(frozen=True)
class OutputComparison:
    """How one output of the shadow run compares with the primary's.

    NaN/Inf fields count elements. Error fields are None when the values were not compared
    numerically (missing, shape mismatch, non-numeric) and cover only the positions that are
    finite on both sides. Relative error is |p - s| / max(|p|, atol). The class-score fields
    are None unless the output is treated as class scores and has at least one row.
    """

    name: str
    disagree: bool
    reason: Disagreement | None = None
    rows: int = 0
    missing: bool = False
    shape_mismatch: bool = False
    dtype_mismatch: bool = False
    nan_primary: int = 0
    nan_shadow: int = 0
    inf_primary: int = 0
    inf_shadow: int = 0
    max_abs_err: float | None = None
    mean_abs_err: float | None = None
    max_rel_err: float | None = None
    argmax_agree_rate: float | None = None
    topk_overlap: float | None = None

    @property
    def severity(self) -> float:
        """Ranks disagreements: structural and non-finite ones first, then by max abs error."""
        if not self.disagree:
            return 0.0
        if self.reason in (Disagreement.ARGMAX, Disagreement.TOLERANCE):
            return self.max_abs_err or 0.0
        return math.inf


@dataclass(frozen=True)
class Comparison:
    """All compared outputs of one request; `disagree` when any of them disagrees."""

    outputs: tuple[OutputComparison, ...]
    disagree: bool

    def output(self, name: str) -> OutputComparison | None:
        return next((o for o in self.outputs if o.name == name), None)

    def worst(self) -> OutputComparison | None:
        """The most severe disagreeing output, or None when everything agrees."""
        disagreeing = [o for o in self.outputs if o.disagree]
        return max(disagreeing, key=lambda o: o.severity) if disagreeing else None


def compare(
    primary: Mapping[str, object],
    shadow: Mapping[str, object],
    policy: ComparisonPolicy | None = None,
) -> Comparison:
    """Compare the shadow's outputs with the primary's under `policy` (default policy if None)."""
    policy = policy or _DEFAULT
    names = policy.outputs or tuple(dict.fromkeys([*primary, *shadow]))
    results: list[OutputComparison] = []
    for name in names:
        p, s = primary.get(name), shadow.get(name)
        if p is None and s is None:
            continue  # a filtered output that this request did not ask for
        if p is None or s is None:
            results.append(OutputComparison(name, True, Disagreement.MISSING, missing=True))
            continue
        try:
            results.append(_compare_arrays(name, np.asarray(p), np.asarray(s), policy))
        except Exception:
            log.warning("comparing output %s failed", name, exc_info=True)
            results.append(OutputComparison(name, True, Disagreement.FAILED))
    return Comparison(tuple(results), any(r.disagree for r in results))


def _compare_arrays(name: str, p: _Array, s: _Array, policy: ComparisonPolicy) -> OutputComparison:
    if (
        p.shape == s.shape
        and p.dtype == s.dtype
        and p.dtype.kind in "biuf"
        and np.array_equal(p, s)
        and (p.dtype.kind != "f" or bool(np.isfinite(p).all()))
    ):
        return _identical(name, p, policy)
    return _compare_values(name, p, s, policy)


def _identical(name: str, p: _Array, policy: ComparisonPolicy) -> OutputComparison:
    """What `_compare_values` finds for equal, finite, real outputs, without computing it.

    The common case of a shadow whose answers equal the primary's: no difference arrays, no
    sorting for top-k. Tests check that both paths agree.
    """
    rows = int(p.shape[0]) if p.ndim else 1
    agree: float | None = None
    if _is_class_scores(p, policy):
        rows = p.size // p.shape[-1]
        agree = 1.0 if rows else None
    return OutputComparison(
        name,
        disagree=False,
        rows=rows,
        max_abs_err=0.0,
        mean_abs_err=0.0,
        max_rel_err=0.0,
        argmax_agree_rate=agree,
        topk_overlap=agree,
    )


def _compare_values(name: str, p: _Array, s: _Array, policy: ComparisonPolicy) -> OutputComparison:
    p_nan, p_inf = _nonfinite(p)
    s_nan, s_inf = _nonfinite(s)
    shape_mismatch, dtype_mismatch = p.shape != s.shape, p.dtype != s.dtype
    fields: dict[str, Any] = {
        "rows": int(p.shape[0]) if p.ndim else 1,
        "shape_mismatch": shape_mismatch,
        "dtype_mismatch": dtype_mismatch,
        "nan_primary": int(np.count_nonzero(p_nan)),
        "nan_shadow": int(np.count_nonzero(s_nan)),
        "inf_primary": int(np.count_nonzero(p_inf)),
        "inf_shadow": int(np.count_nonzero(s_inf)),
    }
    reason: Disagreement | None
    if shape_mismatch:
        return OutputComparison(name, True, Disagreement.SHAPE, **fields)
    if p.dtype.kind not in _NUMERIC or s.dtype.kind not in _NUMERIC:
        if dtype_mismatch:
            return OutputComparison(name, True, Disagreement.DTYPE, **fields)
        equal = _equal(p, s)
        return OutputComparison(
            name, not equal, None if equal else Disagreement.NOT_EQUAL, **fields
        )

    wide = np.complex128 if "c" in (p.dtype.kind, s.dtype.kind) else np.float64
    # inf - inf and overflowing differences are expected here; their warnings are not news.
    with np.errstate(all="ignore"):
        pf, sf = p.astype(wide, copy=False), s.astype(wide, copy=False)
        nonfinite = bool(np.any((p_nan != s_nan) | (p_inf != s_inf) | (p_inf & s_inf & (pf != sf))))
        finite = ~(p_nan | p_inf | s_nan | s_inf)
        ref = np.abs(pf[finite])
        diff = np.abs(pf[finite] - sf[finite])
        over_tolerance = bool(np.any(diff > policy.atol + policy.rtol * ref))
        rel = diff / np.maximum(ref, max(policy.atol, _TINY))
        fields["max_abs_err"] = float(diff.max()) if diff.size else 0.0
        fields["mean_abs_err"] = float(diff.mean()) if diff.size else 0.0
        fields["max_rel_err"] = float(rel.max()) if rel.size else 0.0
        flipped = (
            _class_scores(fields, pf, sf, policy.top_k) if _is_class_scores(p, policy) else None
        )
    if dtype_mismatch:
        reason = Disagreement.DTYPE
    elif nonfinite:
        reason = Disagreement.NONFINITE
    elif flipped is not None:
        reason = Disagreement.ARGMAX if flipped else None
    else:
        reason = Disagreement.TOLERANCE if over_tolerance else None
    return OutputComparison(name, reason is not None, reason, **fields)


def _nonfinite(a: _Array) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(NaN mask, Inf mask); all False for types that cannot hold either."""
    if a.dtype.kind in "fc":
        return np.isnan(a), np.isinf(a)
    none = np.zeros(a.shape, dtype=bool)
    return none, none


def _equal(p: _Array, s: _Array) -> bool:
    try:
        return bool(np.array_equal(p, s))
    except Exception:  # element == element may itself be ambiguous or raise for odd objects
        return False


def _is_class_scores(p: _Array, policy: ComparisonPolicy) -> bool:
    if policy.class_scores == "off" or p.dtype.kind not in "biuf":
        return False
    if policy.class_scores == "on":
        return p.ndim >= 1 and p.shape[-1] >= 1
    return p.dtype.kind == "f" and p.ndim == 2 and p.shape[-1] >= 2


def _class_scores(fields: dict[str, Any], pf: _Array, sf: _Array, top_k: int) -> bool:
    """Fill `fields` with rows, argmax agreement and top-k overlap; True if any argmax flipped."""
    classes = pf.shape[-1]
    p2, s2 = pf.reshape(-1, classes), sf.reshape(-1, classes)
    rows = p2.shape[0]
    fields["rows"] = rows
    if rows == 0:
        return False
    agree = p2.argmax(axis=1) == s2.argmax(axis=1)
    k = min(top_k, classes)
    overlap = (_top_k_mask(p2, k) & _top_k_mask(s2, k)).sum(axis=1) / k
    fields["argmax_agree_rate"] = float(agree.mean())
    fields["topk_overlap"] = float(overlap.mean())
    return not bool(agree.all())


def _top_k_mask(scores: _Array, k: int) -> npt.NDArray[np.bool_]:
    """Boolean (rows, classes) mask of each row's k highest scores (ties: lower index first)."""
    top = np.argsort(np.negative(scores), axis=1, kind="stable")[:, :k]
    mask = np.zeros(scores.shape, dtype=bool)
    mask[np.arange(scores.shape[0])[:, None], top] = True
    return mask
