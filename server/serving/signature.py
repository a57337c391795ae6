"""What a model version takes and returns: tensor specs, the signature, shape checks.

A Signature also holds what the request path derives from it once: the output names and the
declared dtype of each output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from server.serving.dtypes import DType

__all__ = ["Signature", "TensorSpec", "incompatibilities", "shape_matches"]


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
    dims = spec.shape
    if len(shape) != len(dims):
        return f"expected rank {len(dims)} shape {spec.wire_shape}, got shape {list(shape)}"
    for axis, want in enumerate(dims):
        got = shape[axis]
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


def _dims(spec: TensorSpec) -> str:
    return str(spec.wire_shape)


def _dim_problem(kind: str, stable: TensorSpec, candidate: TensorSpec) -> str | None:
    """Why `candidate`'s shape breaks callers of `stable`'s, or None.

    An input of the candidate must take every shape stable's takes: a dimension is compatible
    when both are the same size or the candidate's is any-size (-1). An output of the candidate
    must fit what callers of stable's expect: both the same size, or stable's is any-size.
    """
    if len(stable.shape) != len(candidate.shape):
        return f"rank {len(stable.shape)} → {len(candidate.shape)}"
    for axis, (s, c) in enumerate(zip(stable.shape, candidate.shape, strict=True)):
        if s == c:
            continue
        if kind == "input" and c is None:
            continue  # the candidate takes any size here, so whatever stable took
        if kind == "output" and s is None:
            continue  # callers of stable already take any size here
        return f"dimension {axis}: {-1 if s is None else s} → {-1 if c is None else c}"
    return None


def incompatibilities(stable: Signature, candidate: Signature) -> list[str]:
    """How `candidate` would break callers of `stable`: empty when it is a drop-in.

    Inputs: every stable input must be there with the same dtype and rank, and the candidate
    must take every shape stable takes; an input only the candidate has is a break (callers
    do not send it). Outputs: every stable output must be there with the same dtype and rank,
    returning shapes callers of stable accept; an extra candidate output is compatible.
    """
    out: list[str] = []
    for kind, old, new in (
        ("input", stable.inputs, candidate.inputs),
        ("output", stable.outputs, candidate.outputs),
    ):
        by_name = {s.name: s for s in new}
        for spec in old:
            got = by_name.get(spec.name)
            if got is None:
                out.append(f"{kind} '{spec.name}' ({spec.dtype.oip} {_dims(spec)}) is missing")
                continue
            if got.dtype != spec.dtype:
                out.append(f"{kind} '{spec.name}': dtype {spec.dtype.oip} → {got.dtype.oip}")
            problem = _dim_problem(kind, spec, got)
            if problem is not None:
                out.append(f"{kind} '{spec.name}': shape {_dims(spec)} → {_dims(got)} ({problem})")
        if kind == "input":
            known = {s.name for s in old}
            out += [
                f"input '{s.name}' ({s.dtype.oip} {_dims(s)}) is new: callers do not send it"
                for s in new
                if s.name not in known
            ]
    return out
