"""The committed generated stubs match the .proto sources."""

from __future__ import annotations

from protos import generate


def test_generated_stubs_are_fresh() -> None:
    assert generate.main(["--check"]) == 0, "run `python -m protos.generate` and commit"
