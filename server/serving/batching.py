"""Dynamic batching helpers: which models can batch, and merging / splitting their tensors.

A model can batch when the first dimension of every input and every output is dynamic
(ONNX `None` / a symbolic name; when the runtime names them, one shared name). Requests of
one version merge when they ask for the same outputs and agree on every input's dtype and
non-batch dimensions; their inputs are concatenated on axis 0, run once, and each output is
sliced back by the requests' row counts.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

from server.serving.queued import Queued
from server.serving.runner import Arrays, Runner
from server.serving.signature import Signature

__all__ = ["batch_key", "batchable", "merge", "rows_of", "run_batch", "split"]

_Array = npt.NDArray[np.generic]


def batchable(signature: Signature, first_dims: Sequence[object] | None = None) -> bool:
    """Whether every input and output has a dynamic first (batch) dimension.

    `first_dims` are the runtime's own first dimensions (ints, symbolic names or None), when
    it reports them: symbolic names must then all be the same name, so a model whose outputs
    are sized by some other symbol (say, a sequence length) never batches.
    """
    specs = (*signature.inputs, *signature.outputs)
    if not signature.inputs or not signature.outputs:
        return False
    if any(not spec.shape or spec.shape[0] is not None for spec in specs):
        return False
    if first_dims is not None:
        names = {d for d in first_dims if isinstance(d, str)}
        if len(names) > 1:
            return False
    return True


def rows_of(feeds: Arrays) -> int | None:
    """The batch rows a request carries: the first dimension every input agrees on."""
    rows: int | None = None
    for array in feeds.values():
        if array.ndim == 0:
            return None
        n = int(array.shape[0])
        if rows is None:
            rows = n
        elif rows != n:
            return None
    return rows


def batch_key(outputs: Sequence[str], feeds: Arrays) -> Hashable:
    """Requests with equal keys can run as one batch."""
    return (
        tuple(outputs),
        tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in feeds.items())),
    )


def merge(feeds: Sequence[Arrays]) -> Arrays:
    """The inputs of several requests (equal batch keys), concatenated on the batch axis."""
    first = feeds[0]
    return {name: np.concatenate([f[name] for f in feeds], axis=0) for name in first}


def split(arrays: Sequence[_Array], rows: Sequence[int]) -> list[list[_Array]] | None:
    """Each request's slice of every output; None when an output's first dimension does not
    match the total rows (the model does not batch the way its signature says)."""
    total = sum(rows)
    if any(a.ndim == 0 or a.shape[0] != total for a in arrays):
        return None
    out: list[list[_Array]] = []
    start = 0
    for n in rows:
        out.append([a[start : start + n] for a in arrays])
        start += n
    return out


def run_batch(runner: Runner, batch: Sequence[Queued]) -> bool:
    """Run the batch's requests (equal batch keys) as one and give each its slice of the
    outputs. If the merged run raises, each runs alone, so one bad request fails alone (with
    its own error). False when the outputs do not follow the batch dimension (each request then
    ran alone, too): the model does not batch the way its signature says."""
    parts: list[list[_Array]] | None
    follows = True
    try:
        merged = runner.run(batch[0].outputs, merge([r.feeds for r in batch]))
        parts = split(merged, [r.rows for r in batch])
        follows = parts is not None
    except Exception:
        parts = None
    if parts is None:
        for request in batch:
            try:
                request.result = runner.run(request.outputs, request.feeds)
            except Exception as exc:
                request.error = exc
    else:
        for request, part in zip(batch, parts, strict=True):
            request.result = part
    return follows
