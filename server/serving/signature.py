"""What a model version takes and returns: tensor specs, the signature, shape checks.

A Signature also holds what the request path derives from it once: the output names and the
declared dtype of each output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from server.serving.dtypes import DType

__all__ = ["Signature", "TensorSpec", "shape_matches"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a model input or output; None in a shape: any size."""

    name: str
    dtype: DType
    shape: tuple[int | None, ...]

    @property
    def wire_shape(self) -> list[int]:
        """The shape as the protocol writes it: -1 for any size."""
        return [-1 if d is None else d for d in self.shape]


def shape_matches(spec: TensorSpec, shape: Sequence[int]) -> str | None:
    """None when `shape` fits the spec, else what is wrong, phrased for the caller."""
    if len(shape) != len(spec.shape):
        return f"expected rank {len(spec.shape)} shape {spec.wire_shape}, got shape {list(shape)}"
    for axis, (want, got) in enumerate(zip(spec.shape, shape, strict=True)):
        if got < 0:
            return f"dimension {axis} is {got}; dimensions must be non-negative"
        if want is not None and want != got:
            return (
                f"dimension {axis} must be {want} (model shape {spec.wire_shape}), "
                f"got shape {list(shape)}"
            )
    return None


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of one model version, with what the request path derives from
    them once: output names and the declared dtype of each fixed-size output."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    output_types: dict[str, DType] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.inputs})
        object.__setattr__(self, "output_names", tuple(s.name for s in self.outputs))
        declared = {s.name: s.dtype for s in self.outputs if s.dtype.oip != "BYTES"}
        object.__setattr__(self, "output_types", declared)

    def input(self, name: str) -> TensorSpec | None:
        return self._by_name.get(name)
