"""Warming a model version before it serves: one sample, run `count` times (Triton's model_warmup).

Without settings the sample is synthesized — zeros, empty strings for BYTES — and a failure
only costs the warm-up: a model may refuse zeros and still serve real input correctly (a Cast
from STRING to INT32 cannot parse ""). The registry logs that and marks the version ready.
Configured settings (`[models.<name>.warmup]`, docs/config.md) name the sample — zeros,
random values or a file of real inputs — and a configured sample that fails makes the version
UNAVAILABLE with the reason, as in Triton.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from server.errors import InvalidTensor
from server.serving.dtypes import bytes_to_text
from server.serving.runner import Arrays, Runner
from server.serving.signature import Signature, TensorSpec, shape_matches

__all__ = ["INPUTS", "WarmupSettings", "sample", "warm_up"]

#: What a warm-up sample is made of.
INPUTS = ("zeros", "random", "file")
#: Random samples are reproducible: a version that fails to warm fails the same way each time.
_SEED = 0


class WarmupSettings(Protocol):
    """A model's warm-up settings (server.config.WarmupConfig, validated there)."""

    @property
    def inputs(self) -> str: ...  # one of INPUTS

    @property
    def file(self) -> str | None: ...  # for "file": an .npz relative to the model directory

    @property
    def batch_size(self) -> int: ...

    @property
    def count(self) -> int: ...


def warm_up(runner: Runner, model_dir: Path, settings: WarmupSettings | None) -> None:
    """Run the sample through `runner` (`settings.count` times; once without settings)."""
    feeds = sample(runner.signature, model_dir, settings)
    for _ in range(settings.count if settings is not None else 1):
        runner.run(runner.signature.output_names, feeds)


def sample(signature: Signature, model_dir: Path, settings: WarmupSettings | None) -> Arrays:
    """The warm-up inputs of one version; raises what is wrong with them, naming the input."""
    inputs = settings.inputs if settings is not None else "zeros"
    batch = settings.batch_size if settings is not None else 1
    if inputs == "file":
        assert settings is not None and settings.file is not None, "validated by the config"
        return _from_file(signature, model_dir / settings.file, batch)
    if inputs not in INPUTS:
        raise ValueError(f"warm-up inputs must be one of {', '.join(INPUTS)}, not {inputs!r}")
    rng = np.random.default_rng(_SEED)
    return {
        spec.name: _synthesized(spec, _shape(spec, batch), inputs == "random", rng)
        for spec in signature.inputs
    }


def _shape(spec: TensorSpec, batch: int) -> list[int]:
    """Any-size dimensions are 1, except a variable first dimension, which is the batch size."""
    dims = [1 if d is None else d for d in spec.shape]
    if batch != 1:
        _check_batchable(spec, batch)
        dims[0] = batch
    return dims


def _check_batchable(spec: TensorSpec, batch: int) -> None:
    if not spec.shape or spec.shape[0] is not None:
        raise InvalidTensor(
            spec.name,
            f"warm-up batch_size {batch} needs a variable first dimension, and the model's "
            f"shape is {spec.wire_shape}; use batch_size 1",
        )


def _synthesized(
    spec: TensorSpec, shape: list[int], random: bool, rng: np.random.Generator
) -> npt.NDArray[np.generic]:
    dtype = spec.dtype.numpy
    if spec.dtype.oip == "BYTES":
        return np.full(shape, "", dtype=object)  # random strings fall back to zeros, as in Triton
    if not random:
        return np.zeros(shape, dtype=dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    return rng.integers(0, 10, shape).astype(dtype)  # small and non-negative: index-like inputs


def _from_file(signature: Signature, path: Path, batch: int) -> Arrays:
    if not path.is_file():
        raise ValueError(f"warm-up file {path.name} is not in the model directory {path.parent}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (AttributeError, OSError, ValueError) as exc:  # .npy, not an archive, pickled data
        raise ValueError(f"warm-up file {path.name} is not a readable .npz archive: {exc}") from exc
    names = [spec.name for spec in signature.inputs]
    missing = [name for name in names if name not in arrays]
    unknown = sorted(set(arrays) - set(names))
    if missing or unknown:
        raise ValueError(
            f"warm-up file {path.name} must hold one array per model input ({', '.join(names)}); "
            f"missing: {', '.join(missing) or 'none'}; not inputs: {', '.join(unknown) or 'none'}"
        )
    feeds: Arrays = {}
    for spec in signature.inputs:
        array = _typed(spec, arrays[spec.name])
        if batch != 1:
            _check_batchable(spec, batch)
            array = np.concatenate([array] * batch, axis=0)
        problem = shape_matches(spec, array.shape)
        if problem:
            raise InvalidTensor(spec.name, f"in warm-up file {path.name}: {problem}")
        feeds[spec.name] = array
    return feeds


def _typed(spec: TensorSpec, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """The file's array as the runner takes it: BYTES from bytes or str arrays; others as is."""
    if spec.dtype.oip == "BYTES":
        if array.dtype.kind == "S":
            texts = [bytes_to_text(v) for v in array.ravel().tolist()]
        elif array.dtype.kind == "U":
            texts = array.ravel().tolist()
        else:
            raise InvalidTensor(spec.name, f"is BYTES; the warm-up file holds {array.dtype}")
        out = np.empty(len(texts), dtype=object)
        out[:] = texts
        return out.reshape(array.shape)
    if array.dtype != spec.dtype.numpy:
        raise InvalidTensor(
            spec.name,
            f"is {spec.dtype.oip} ({spec.dtype.numpy}); the warm-up file holds {array.dtype}",
        )
    return array
