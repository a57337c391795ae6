"""Builds the bundled example model repository and the test/benchmark model variants with `onnx`.

The bundled repository is `models/<name>/<version>/model.onnx` (classifier 1 and 2, counter 1,
shouter 1; see `models/README.md`). Every model is deterministic: literal or seeded weights,
opset 17, IR version 8, fixed producer and doc strings, so two builds give byte-identical files.
`python -m models.build` rewrites the committed models; `python -m models.build --check` exits 1
when a committed model differs from what this module builds (it owns `models/*/*/model.onnx`).
The other `build_*` functions write one model file each, for benchmarks and scenario tests.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "CLASSIFIER_B",
    "CLASSIFIER_W",
    "FAULTY_THRESHOLD",
    "MODELS_DIR",
    "MODEL_FILE",
    "build_classifier_faulty",
    "build_classifier_hungry",
    "build_classifier_perturbed",
    "build_classifier_slow",
    "build_mlp",
    "build_repository",
    "main",
    "stale_files",
]

MODELS_DIR = Path(__file__).resolve().parent
MODEL_FILE = "model.onnx"
OPSET = 17
IR_VERSION = 8  # onnxruntime loads IR <= its own; 8 is accepted by every supported release
PRODUCER = "canaryserve-models"

CLASSIFIER_W = np.array(
    [[1.2, -0.4, -0.8], [-0.6, 1.0, -0.3], [0.3, -0.9, 0.7], [-0.5, 0.2, 0.9]], dtype=np.float32
)
CLASSIFIER_B = np.array([0.1, -0.2, 0.05], dtype=np.float32)
V2_CLASS2_BOOST = 2.0
#: Width of the bundled slow candidate's idle branch (about 10x classifier v2's run time).
SLOW_WIDTH = 1024
"""Classifier version 2 adds this to the bias of class 2 (so class 2 always scores higher)."""
#: Per base version: the W[3, 2] nudge that flips the argmax on about 1 % of N(0, 1) inputs.
PERTURBED_DELTA = {1: 0.08, 2: 0.085}
"""Added to W[3, 2]: the argmax changes on ~0.96% of standard-normal inputs."""
FAULTY_THRESHOLD = 1.6448536
"""The 95th percentile of N(0, 1): the faulty classifier fails on ~5% of standard-normal rows."""

_FloatArray = npt.NDArray[np.float32]
_Path = Path | str


class _Branch(NamedTuple):
    """Extra classifier nodes whose output (broadcastable to [N, 3]) is added to the logits."""

    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]
    output: str


def _tensor(name: str, value: npt.ArrayLike, dtype: type[np.generic]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _random(rng: np.random.Generator, shape: tuple[int, int]) -> _FloatArray:
    """Small weights: standard normal scaled by 1/sqrt(fan_in)."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(1.0 / np.sqrt(shape[0]))


def _model(
    name: str,
    doc: str,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto],
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
        doc_string=doc,
    )
    onnx.checker.check_model(model)
    return model


def _save(model: onnx.ModelProto, path: _Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.SerializeToString())
    return out


def _classifier(
    doc: str,
    w: _FloatArray = CLASSIFIER_W,
    b: _FloatArray = CLASSIFIER_B,
    branch: _Branch | None = None,
) -> onnx.ModelProto:
    """scores = Softmax(input @ w + b [+ branch], axis=1): input [batch, 4] -> scores [batch, 3]."""
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["logits"]),
    ]
    initializers = [_tensor("W", w, np.float32), _tensor("B", b, np.float32)]
    logits = "logits"
    if branch is not None:
        nodes += [*branch.nodes, helper.make_node("Add", [logits, branch.output], ["adjusted"])]
        initializers += branch.initializers
        logits = "adjusted"
    nodes.append(helper.make_node("Softmax", [logits], ["scores"], axis=1))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])]
    return _model("classifier", doc, nodes, inputs, outputs, initializers)


def _counter() -> onnx.ModelProto:
    nodes = [
        # ReduceSum takes axes as an input since opset 13; ReduceMax only from opset 18.
        helper.make_node("ReduceSum", ["ids", "axes"], ["total"], keepdims=0),
        helper.make_node("ReduceMax", ["ids"], ["maximum"], axes=[1], keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "length"])]
    outputs = [
        helper.make_tensor_value_info("total", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("maximum", TensorProto.INT64, ["batch"]),
    ]
    doc = "counter: total = sum(ids, axis=1), maximum = max(ids, axis=1); ids int64 [N, L>=1]"
    return _model("counter", doc, nodes, inputs, outputs, [_tensor("axes", [1], np.int64)])


def _shouter() -> onnx.ModelProto:
    # The "C" locale exists everywhere (onnxruntime's default en_US.UTF-8 often does not, and
    # then the session fails to load); it upper-cases ASCII letters only.
    node = helper.make_node(
        "StringNormalizer", ["text"], ["upper"], case_change_action="UPPER", locale="C"
    )
    inputs = [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])]
    outputs = [helper.make_tensor_value_info("upper", TensorProto.STRING, ["batch"])]
    doc = "shouter: upper = ASCII upper case of text; text string [N>=1]"
    return _model("shouter", doc, [node], inputs, outputs, [])


def _bundled() -> dict[str, onnx.ModelProto]:
    """The committed repository: relative file path -> model."""
    w3 = CLASSIFIER_W.copy()
    w3[3, 2] += PERTURBED_DELTA[2]
    return {
        f"classifier/1/{MODEL_FILE}": _classifier("classifier v1: softmax(x @ W + b)"),
        f"classifier/2/{MODEL_FILE}": _classifier(
            "classifier v2: v1 with bias[2] + 2.0", b=_bias(2)
        ),
        # Demo candidates of v2 (the stable version, see classifier/config.toml):
        f"classifier/3/{MODEL_FILE}": _classifier(
            f"classifier v3: v2 with W[3,2] + {PERTURBED_DELTA[2]}", w=w3, b=_bias(2)
        ),
        f"classifier/4/{MODEL_FILE}": _classifier_slow(SLOW_WIDTH, base=2),
        f"counter/1/{MODEL_FILE}": _counter(),
        f"shouter/1/{MODEL_FILE}": _shouter(),
    }


def build_repository(root: _Path) -> list[Path]:
    """Write the bundled repository under `root`; returns the files written."""
    return [_save(model, Path(root) / rel) for rel, model in _bundled().items()]


def build_mlp(path: _Path, seed: int = 0) -> Path:
    """input [batch, 256] -> Gemm 1024, Relu, Gemm 1024, Relu, Gemm 10 -> logits [batch, 10]."""
    rng = np.random.default_rng(seed)
    sizes = [256, 1024, 1024, 10]
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    x = "input"
    for i, (fan_in, fan_out) in enumerate(pairwise(sizes)):
        initializers += [
            _tensor(f"W{i}", _random(rng, (fan_in, fan_out)), np.float32),
            _tensor(f"B{i}", 0.01 * rng.standard_normal(fan_out), np.float32),
        ]
        last = i == len(sizes) - 2
        gemm = "logits" if last else f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"B{i}"], [gemm]))
        if not last:
            x = f"relu{i}"
            nodes.append(helper.make_node("Relu", [gemm], [x]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 256])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])]
    doc = f"mlp: 256 -> 1024 -> 1024 -> 10, relu, seed {seed}"
    return _save(_model("mlp", doc, nodes, inputs, outputs, initializers), path)


def _bias(base: int) -> _FloatArray:
    """The bias of classifier version `base` (1 or 2), which a candidate is derived from."""
    b = CLASSIFIER_B.copy()
    if base == 2:
        b[2] += V2_CLASS2_BOOST
    return b


def build_classifier_perturbed(path: _Path, base: int = 1) -> Path:
    """Classifier `base` with W[3, 2] nudged: a different argmax on ~1% of N(0, 1) inputs."""
    delta = PERTURBED_DELTA[base]
    w = CLASSIFIER_W.copy()
    w[3, 2] += delta
    doc = f"classifier perturbed: v{base} with W[3,2] + {delta}"
    return _save(_classifier(doc, w=w, b=_bias(base)), path)


def build_classifier_slow(path: _Path, width: int = 4096, base: int = 1) -> Path:
    """Classifier `base`'s outputs plus 0 * (a wide input-dependent MLP): same scores, slower."""
    return _save(_classifier_slow(width, base), path)


def _classifier_slow(width: int, base: int) -> onnx.ModelProto:
    """The wide weights are made at load time by ConstantOfShape, so the file stays small."""
    shape1 = np.array([4, width], dtype=np.int64)
    shape2 = np.array([width, width], dtype=np.int64)
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["slow_s1"],
            ["slow_W1"],
            value=helper.make_tensor("v1", TensorProto.FLOAT, [1], [0.01]),
        ),
        helper.make_node(
            "ConstantOfShape",
            ["slow_s2"],
            ["slow_W2"],
            value=helper.make_tensor("v2", TensorProto.FLOAT, [1], [0.001]),
        ),
        helper.make_node("MatMul", ["input", "slow_W1"], ["slow_h1"]),
        helper.make_node("Relu", ["slow_h1"], ["slow_r1"]),
        helper.make_node("MatMul", ["slow_r1", "slow_W2"], ["slow_h2"]),
        helper.make_node("Relu", ["slow_h2"], ["slow_r2"]),
        helper.make_node("ReduceSum", ["slow_r2"], ["slow_sum"], keepdims=0),
        helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_out"]),
    ]
    initializers = [
        _tensor("slow_s1", shape1, np.int64),
        _tensor("slow_s2", shape2, np.int64),
        _tensor("slow_zero", 0.0, np.float32),
    ]
    doc = f"classifier slow: v{base} + 0 * sum(relu(relu(x @ W1) @ W2)), width {width}"
    return _classifier(doc, b=_bias(base), branch=_Branch(nodes, initializers, "slow_out"))


def build_classifier_hungry(path: _Path, megabytes: int = 1024, base: int = 1) -> Path:
    """Classifier `base`'s outputs plus 0 * sum(a `megabytes` MiB tensor made from the input):
    same scores, but every run allocates that much (the tensor depends on the input, so
    onnxruntime cannot fold it away at load)."""
    size = np.array([megabytes * (1 << 20) // 4], dtype=np.int64)
    nodes = [
        helper.make_node("ReduceSum", ["input"], ["hungry_s"], keepdims=0),
        helper.make_node("Expand", ["hungry_s", "hungry_size"], ["hungry_big"]),
        helper.make_node("ReduceSum", ["hungry_big"], ["hungry_sum"], keepdims=0),
        helper.make_node("Mul", ["hungry_sum", "hungry_zero"], ["hungry_out"]),
    ]
    initializers = [
        _tensor("hungry_size", size, np.int64),
        _tensor("hungry_zero", 0.0, np.float32),
    ]
    doc = f"classifier hungry: v{base} + 0 * sum(expand(sum(x), {megabytes} MiB of float))"
    model = _classifier(doc, b=_bias(base), branch=_Branch(nodes, initializers, "hungry_out"))
    return _save(model, path)


def build_classifier_faulty(
    path: _Path, threshold: float = FAULTY_THRESHOLD, base: int = 1
) -> Path:
    """Classifier `base`, but run() fails on a batch with a row where input[:, 0] > threshold.

    Rows above the threshold gather index 1000 from a 1-element table of zeros, which onnxruntime
    rejects; otherwise the gathered 0 is added to the logits (so the branch is not pruned).
    """
    nodes = [
        helper.make_node("Gather", ["input", "fault_column"], ["fault_x0"], axis=1),
        helper.make_node("Greater", ["fault_x0", "fault_threshold"], ["fault_above"]),
        helper.make_node("Cast", ["fault_above"], ["fault_flag"], to=TensorProto.INT64),
        helper.make_node("Mul", ["fault_flag", "fault_stride"], ["fault_index"]),
        helper.make_node("Gather", ["fault_table", "fault_index"], ["fault_zero"]),
        helper.make_node("Unsqueeze", ["fault_zero", "fault_axes"], ["fault_out"]),
    ]
    initializers = [
        _tensor("fault_column", 0, np.int64),
        _tensor("fault_threshold", threshold, np.float32),
        _tensor("fault_stride", 1000, np.int64),
        _tensor("fault_table", [0.0], np.float32),
        _tensor("fault_axes", [1], np.int64),
    ]
    doc = f"classifier faulty: v{base}, but run() fails when any input[:, 0] > {threshold}"
    branch = _Branch(nodes, initializers, "fault_out")
    return _save(_classifier(doc, b=_bias(base), branch=branch), path)


def _model_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.glob(f"*/*/{MODEL_FILE}")}


def stale_files(root: _Path = MODELS_DIR) -> list[str]:
    """Model files under `root` that are missing, differ from a fresh build, or are not built."""
    committed = Path(root)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        build_repository(fresh)
        wanted, present = _model_files(fresh), _model_files(committed)
        return sorted(
            rel
            for rel in wanted | present
            if rel not in wanted
            or rel not in present
            or not filecmp.cmp(fresh / rel, committed / rel, shallow=False)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed models are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale bundled models (run `python -m models.build`):", *stale, sep="\n  ")
            return 1
        return 0
    written = build_repository(MODELS_DIR)
    print(f"built {len(written)} models under {MODELS_DIR}")
    extra = stale_files()
    if extra:
        print("not built by models/build.py (remove them or add them here):", *extra, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
