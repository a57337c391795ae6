"""Compatible candidates: a rollout of a version whose signature breaks callers is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.errors import ClientError
from models.build import build_mlp
from server.serving.dtypes import by_oip
from server.serving.signature import Signature, TensorSpec, incompatibilities
from tests.support.release import admin, reload, serve


def spec(name: str, shape: tuple[int | None, ...], dtype: str = "FP32") -> TensorSpec:
    found = by_oip(dtype)
    assert found is not None
    return TensorSpec(name, found, shape)


STABLE = Signature(
    inputs=(spec("input", (None, 4)),), outputs=(spec("probs", (None, 3)), spec("label", (None,)))
)


def sig(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...] = STABLE.outputs
) -> Signature:
    return Signature(inputs=inputs, outputs=outputs)


def test_identical_and_wider_signatures_are_compatible() -> None:
    assert incompatibilities(STABLE, STABLE) == []
    # An input that takes any size where stable took a fixed one, an extra output, a fixed
    # output size where stable's was any size: nothing a caller of stable notices.
    wider = sig(
        (spec("input", (None, None)),),
        (spec("probs", (None, 3)), spec("label", (7,)), spec("extra", (1,))),
    )
    assert incompatibilities(STABLE, wider) == []


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (
            sig((spec("input", (None, 5)),)),
            "input 'input': shape [-1, 4] → [-1, 5] (dimension 1: 4 → 5)",
        ),
        (
            sig((spec("input", (1, 4)),)),
            "input 'input': shape [-1, 4] → [1, 4] (dimension 0: -1 → 1)",
        ),
        (sig((spec("input", (None, 4), "FP64"),)), "input 'input': dtype FP32 → FP64"),
        (sig((spec("input", (None, 4, 1)),)), "(rank 2 → 3)"),
        (sig((spec("x", (None, 4)),)), "input 'input' (FP32 [-1, 4]) is missing"),
        (
            sig(
                (*STABLE.inputs, spec("mask", (None,))),
            ),
            "input 'mask' (FP32 [-1]) is new",
        ),
        (sig(STABLE.inputs, (spec("probs", (None, 3)),)), "output 'label' (FP32 [-1]) is missing"),
        (
            sig(STABLE.inputs, (spec("probs", (None, None)), spec("label", (None,)))),
            "output 'probs': shape [-1, 3] → [-1, -1] (dimension 1: 3 → -1)",
        ),
    ],
)
def test_breaking_changes_are_listed(candidate: Signature, expected: str) -> None:
    found = incompatibilities(STABLE, candidate)
    assert any(expected in line for line in found), found


def test_an_incompatible_candidate_is_refused_then_allowed(tmp_path: Path) -> None:
    app = serve(tmp_path)
    try:
        build_mlp(app.config.models_dir / "classifier" / "3" / "model.onnx")
        reload(app)
        with admin(app) as ops:
            with pytest.raises(ClientError) as refused:
                ops.start("classifier", "3", canary_ppm=50_000)
            assert refused.value.code == "FAILED_PRECONDITION"
            assert "input 'input': shape [-1, 4] → [-1, 256]" in refused.value.details
            assert "allow-signature-change" in refused.value.details
            assert not ops.get("classifier").candidate_version
            ops.start("classifier", "2", canary_ppm=50_000)  # compatible: accepted
            ops.transition("rollback", "classifier")
            allowed = ops.start(
                "classifier",
                "3",
                canary_ppm=50_000,
                allow_signature_change=True,
                reason="new input",
            )
            assert allowed.rollout.candidate_version == "3"
            start = ops.audit("classifier")[-1]
        assert start.operation == "start"
        changes = json.loads(start.extra_json)["signature_change"]
        assert any("dimension 1: 4 → 256" in c for c in changes)
    finally:
        app.stop(0)
