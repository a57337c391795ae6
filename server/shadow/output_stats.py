"""The running statistics of one output tensor across a candidate's shadow comparisons."""

from __future__ import annotations

from server.shadow.comparison import OutputComparison
from server.shadow.report import OutputReport, json_float

__all__ = ["OutputStats"]

#: OutputComparison fields summed per output: how many outputs disagreed or were missing,
#: had a mismatched shape or dtype, and how many NaN/Inf elements each side produced.
_SUMMED = (
    "disagree", "missing", "shape_mismatch", "dtype_mismatch",
    "nan_primary", "nan_shadow", "inf_primary", "inf_shadow",
)  # fmt: skip


class OutputStats:
    """Running statistics of one output (guarded by the owning ShadowStats' lock)."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(("count", *_SUMMED), 0)
        self.max_abs = self.max_rel = self.mean_abs_sum = 0.0
        self.compared = self.class_rows = 0
        self.agree_rows = self.topk_sum = 0.0

    def add(self, o: OutputComparison) -> None:
        self.sums["count"] += 1
        for name in _SUMMED:
            self.sums[name] += getattr(o, name)
        if o.max_abs_err is not None and o.mean_abs_err is not None and o.max_rel_err is not None:
            self.max_abs = max(self.max_abs, o.max_abs_err)
            self.max_rel = max(self.max_rel, o.max_rel_err)
            self.mean_abs_sum += o.mean_abs_err
            self.compared += 1
        if o.argmax_agree_rate is not None and o.topk_overlap is not None:
            # Row-weighted, so a batch of 64 rows weighs 64 times a batch of one.
            self.class_rows += o.rows
            self.agree_rows += o.argmax_agree_rate * o.rows
            self.topk_sum += o.topk_overlap * o.rows

    def report(self) -> OutputReport:
        rows, n = self.class_rows, self.compared
        return OutputReport(
            **self.sums,
            max_abs_err=json_float(self.max_abs) if n else None,
            mean_abs_err=json_float(self.mean_abs_sum / n) if n else None,
            max_rel_err=json_float(self.max_rel) if n else None,
            argmax_agree_rate=self.agree_rows / rows if rows else None,
            topk_overlap=self.topk_sum / rows if rows else None,
            class_rows=rows,
        )
