"""Graph surgery for ``edgesight model import``: wrap a detector's ONNX graph into a product
model (see pyodide_client/model_card.py for the contract).

- In front: uint8 RGB ``[batch, 3, H, W]`` -> float, divided by 255 (YOLO's normalisation),
  cast to the source's input type (float16 exports included).
- Behind, per output family, standard ops only (they run in onnxruntime and onnxruntime-web):

  ``yolov8``  ``[B, 4 + C, N]`` (cx, cy, w, h in input pixels, then C class scores, no
              objectness; Ultralytics YOLOv8 and YOLO11): Transpose, Slice, MatMul.
  ``yolov5``  ``[B, N, 5 + C]`` (cx, cy, w, h, objectness, C class probabilities): the
              scores are class x objectness.
  ``nms``     ``[B, K, 6]`` (x1, y1, x2, y2, score, class; an Ultralytics ``nms=True`` /
              end-to-end export), or three outputs ``boxes [B, K, 4]``, ``scores [B, K]``,
              ``classes [B, K]`` (a fourth, the detection count, is dropped: padded rows
              score 0): one score column per class, zero elsewhere.

  Each gives ``boxes`` ``[B, A, 4]`` (x1, y1, x2, y2) and ``scores`` ``[B, A, C]``.
- Batch: exports with a fixed batch of 1 get a named batch dimension; Reshape targets whose
  leading 1 is the batch become 0 ("copy that dimension"). Whether that worked is checked by
  running it (``model_check``), not assumed.

Needs the ``onnx`` package (the ``model-build`` extra).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["BATCH", "FAMILY_DECODERS", "free_batch", "wrap"]

BATCH = "batch"
P = "edgesight/"
# (cx, cy, w, h) @ M = (x1, y1, x2, y2)
_CXCYWH_TO_XYXY = np.array(
    [[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], dtype=np.float32
)


def _const(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(value, name)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _slice(
    src: str, out: str, start: int, end: int, axis: int = 2
) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    names = [f"{out}/starts", f"{out}/ends", f"{out}/axes"]
    inits = [
        _const(names[0], _i64(start)),
        _const(names[1], _i64(end)),
        _const(names[2], _i64(axis)),
    ]
    return [helper.make_node("Slice", [src, *names], [out], f"{out}/slice")], inits


def _to_float(src: str, out: str, elem_type: int) -> list[onnx.NodeProto]:
    if elem_type == TensorProto.FLOAT:
        return [helper.make_node("Identity", [src], [out], f"{out}/identity")]
    return [helper.make_node("Cast", [src], [out], f"{out}/cast", to=TensorProto.FLOAT)]


def _decode_yolov8(
    raw: str, elem_type: int, num_classes: int
) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    d = f"{P}decode/"
    nodes = [
        *_to_float(raw, f"{d}raw", elem_type),
        helper.make_node("Transpose", [f"{d}raw"], [f"{d}rows"], f"{d}transpose", perm=[0, 2, 1]),
    ]
    box_nodes, box_inits = _slice(f"{d}rows", f"{d}cxcywh", 0, 4)
    score_nodes, score_inits = _slice(f"{d}rows", "scores", 4, 4 + num_classes)
    nodes += [
        *box_nodes,
        *score_nodes,
        helper.make_node("MatMul", [f"{d}cxcywh", f"{d}to_xyxy"], ["boxes"], f"{d}to_xyxy"),
    ]
    return nodes, [*box_inits, *score_inits, _const(f"{d}to_xyxy", _CXCYWH_TO_XYXY)]


def _decode_yolov5(
    raw: str, elem_type: int, num_classes: int
) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    d = f"{P}decode/"
    nodes = _to_float(raw, f"{d}rows", elem_type)
    inits: list[TensorProto] = [_const(f"{d}to_xyxy", _CXCYWH_TO_XYXY)]
    for src, out, start, end in (
        (f"{d}rows", f"{d}cxcywh", 0, 4),
        (f"{d}rows", f"{d}objectness", 4, 5),
        (f"{d}rows", f"{d}class_probs", 5, 5 + num_classes),
    ):
        more_nodes, more_inits = _slice(src, out, start, end)
        nodes += more_nodes
        inits += more_inits
    nodes += [
        helper.make_node("MatMul", [f"{d}cxcywh", f"{d}to_xyxy"], ["boxes"], f"{d}to_xyxy"),
        helper.make_node("Mul", [f"{d}class_probs", f"{d}objectness"], ["scores"], f"{d}score"),
    ]
    return nodes, inits


def _decode_nms(
    raw: str, elem_type: int, num_classes: int
) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    d = f"{P}decode/"
    nodes = _to_float(raw, f"{d}rows", elem_type)
    inits: list[TensorProto] = [
        _const(f"{d}class_ids", np.arange(num_classes, dtype=np.float32)),
    ]
    for src, out, start, end in (
        (f"{d}rows", "boxes", 0, 4),
        (f"{d}rows", f"{d}score", 4, 5),
        (f"{d}rows", f"{d}class", 5, 6),
    ):
        more_nodes, more_inits = _slice(src, out, start, end)
        nodes += more_nodes
        inits += more_inits
    # one-hot by comparison (class ids are small integers stored as floats)
    nodes += [
        helper.make_node("Equal", [f"{d}class", f"{d}class_ids"], [f"{d}is_class"], f"{d}eq"),
        helper.make_node(
            "Cast", [f"{d}is_class"], [f"{d}one_hot"], f"{d}one_hot", to=TensorProto.FLOAT
        ),
        helper.make_node("Mul", [f"{d}one_hot", f"{d}score"], ["scores"], f"{d}score"),
    ]
    return nodes, inits


def _decode_nms_split(
    names: tuple[str, str, str], types: tuple[int, int, int], num_classes: int
) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    """Separate post-NMS outputs: boxes [B,K,4], scores [B,K], classes [B,K]."""
    d = f"{P}decode/"
    boxes, scores, classes = names
    nodes = [
        *_to_float(boxes, "boxes", types[0]),
        *_to_float(scores, f"{d}score_flat", types[1]),
        *_to_float(classes, f"{d}class_flat", types[2]),
        helper.make_node("Reshape", [f"{d}score_flat", f"{d}column"], [f"{d}score"], f"{d}s_col"),
        helper.make_node("Reshape", [f"{d}class_flat", f"{d}column"], [f"{d}class"], f"{d}c_col"),
        helper.make_node("Equal", [f"{d}class", f"{d}class_ids"], [f"{d}is_class"], f"{d}eq"),
        helper.make_node(
            "Cast", [f"{d}is_class"], [f"{d}one_hot"], f"{d}one_hot", to=TensorProto.FLOAT
        ),
        helper.make_node("Mul", [f"{d}one_hot", f"{d}score"], ["scores"], f"{d}score"),
    ]
    inits = [
        _const(f"{d}class_ids", np.arange(num_classes, dtype=np.float32)),
        _const(f"{d}column", _i64(0, -1, 1)),
    ]
    return nodes, inits


FAMILY_DECODERS = {"yolov8": _decode_yolov8, "yolov5": _decode_yolov5, "nms": _decode_nms}


def _free_product_names(graph: onnx.GraphProto) -> dict[str, str]:
    """Rename source tensors called ``boxes`` or ``scores`` (post-NMS exports often use
    them), so the product's own outputs can take those names. Returns old -> new."""
    renamed = {name: f"{P}source/{name}" for name in ("boxes", "scores")}
    tensors = {t for n in graph.node for t in (*n.input, *n.output)} | {
        o.name for o in graph.output
    }
    renamed = {old: new for old, new in renamed.items() if old in tensors}
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = renamed.get(name, name)
    for value in graph.output:
        value.name = renamed.get(value.name, value.name)
    return renamed


def free_batch(graph: onnx.GraphProto) -> int:
    """Make a fixed batch of 1 a named dimension: in the inputs and outputs, and in constant
    Reshape targets that start with 1. Returns how many Reshape targets changed."""
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = BATCH
    del graph.value_info[:]  # inferred shapes with the old batch would contradict it
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    changed = 0
    rewritten: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        target_name = node.input[1]
        if target_name in rewritten:
            node.input[1] = rewritten[target_name]
            changed += 1
            continue
        if target_name in inits:
            target = numpy_helper.to_array(inits[target_name])
        elif target_name in constants:
            target = numpy_helper.to_array(constants[target_name].attribute[0].t)
        else:
            continue  # computed from Shape: already follows the batch
        if target.ndim != 1 or target.size < 2 or int(target[0]) != 1:
            continue
        fixed = target.astype(np.int64).copy()
        fixed[0] = 0
        new_name = f"{P}batch_free/{target_name}"
        graph.initializer.append(_const(new_name, fixed))
        rewritten[target_name] = new_name
        node.input[1] = new_name
        changed += 1
    return changed


def wrap(
    source: onnx.ModelProto,
    family: str,
    num_classes: int,
    input_hw: tuple[int, int],
    is_batch_free: bool,
    split_outputs: tuple[str, str, str] | None = None,
) -> onnx.ModelProto:
    """The product model: uint8 ``images`` in, ``boxes`` and ``scores`` out.
    ``split_outputs``: the (boxes, scores, classes) outputs of a post-NMS model that has
    them apart; otherwise the family decodes the first output."""
    model = onnx.ModelProto()
    model.CopyFrom(source)
    graph = model.graph
    renamed = _free_product_names(graph)
    if split_outputs is not None:
        split_outputs = (
            renamed.get(split_outputs[0], split_outputs[0]),
            renamed.get(split_outputs[1], split_outputs[1]),
            renamed.get(split_outputs[2], split_outputs[2]),
        )
    (src_input,) = graph.input
    raw_output = graph.output[0]
    in_type = src_input.type.tensor_type.elem_type
    out_type = raw_output.type.tensor_type.elem_type
    if is_batch_free:
        free_batch(graph)
    else:
        del graph.value_info[:]
    height, width = input_hw
    batch: str | int = BATCH if is_batch_free else 1
    pre = f"{P}pre/"
    normalised = f"{pre}normalised"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == src_input.name:
                node.input[i] = normalised
    pre_nodes = [
        helper.make_node("Cast", ["images"], [f"{pre}float"], f"{pre}cast", to=TensorProto.FLOAT),
        helper.make_node(
            "Mul",
            [f"{pre}float", f"{pre}inv255"],
            [normalised if in_type == TensorProto.FLOAT else f"{pre}scaled"],
            f"{pre}scale",
        ),
    ]
    if in_type != TensorProto.FLOAT:
        pre_nodes.append(
            helper.make_node("Cast", [f"{pre}scaled"], [normalised], f"{pre}to_input", to=in_type)
        )
    if split_outputs is not None:
        types = {o.name: o.type.tensor_type.elem_type for o in graph.output}
        decode_nodes, decode_inits = _decode_nms_split(
            split_outputs,
            (types[split_outputs[0]], types[split_outputs[1]], types[split_outputs[2]]),
            num_classes,
        )
    else:
        decode_nodes, decode_inits = FAMILY_DECODERS[family](raw_output.name, out_type, num_classes)
    nodes = [*pre_nodes, *graph.node, *decode_nodes]
    inits = [
        _const(f"{pre}inv255", np.array(1.0 / 255.0, dtype=np.float32)),
        *graph.initializer,
        *decode_inits,
    ]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    del graph.initializer[:]
    # Reshape targets replaced by batch-free ones are left unused: drop them
    graph.initializer.extend(i for i in inits if i.name in used)
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info("images", TensorProto.UINT8, [batch, 3, height, width])
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, None, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, None, num_classes]),
        ]
    )
    return model
