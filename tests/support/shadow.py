"""Shadow results recorded by hand into a candidate's ShadowStats, without running anything."""

from __future__ import annotations

import numpy as np

from server.shadow.comparison import compare
from server.shadow.job import ShadowJob, ShadowOutcome, ShadowResult
from server.shadow.stats import ShadowStats
from server.testing import FakeRunner

__all__ = ["record_results"]


def record_results(
    stats: ShadowStats, *, agree: int = 0, disagree: int = 0, errors: int = 0
) -> None:
    """Count `agree` + `disagree` compared runs and `errors` raising runs, each submitted."""
    runner = FakeRunner()
    primary = {"y": np.zeros(1)}
    kinds = ["agree"] * agree + ["disagree"] * disagree + ["error"] * errors
    for i, kind in enumerate(kinds):
        job = ShadowJob(
            stats.model, stats.candidate, runner, {"x": np.zeros(1)}, ("y",), primary, f"r{i}"
        )
        stats.record_submitted()
        if kind == "error":
            stats.record(ShadowResult(job, ShadowOutcome.ERROR, 0.0, 0.001, None, "boom"))
            continue
        shadow = {"y": np.zeros(1) if kind == "agree" else np.ones(1)}
        comparison = compare(primary, shadow)
        assert comparison.disagree is (kind == "disagree")
        stats.record(ShadowResult(job, ShadowOutcome.OK, 0.0, 0.001, comparison))
