"""OnnxEngine follows the model card: input and output names, any input width and height, and
a fixed batch of 1 run one frame at a time. Uses a tiny synthetic product model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from gpu_backend.engine import EngineError, OnnxEngine, load_model  # noqa: E402

HEIGHT, WIDTH = 4, 6


def tiny_model(batch: str | int) -> bytes:
    """pix uint8 [B,3,4,6] -> b [B,1,4] = the first four pixels of channel 0; s [B,1,2] = 0.5."""
    nodes = [
        helper.make_node("Cast", ["pix"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["f", "flat_shape"], ["flat"]),
        helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["b"]),
        helper.make_node("Slice", ["flat", "starts", "ends2", "axes"], ["first2"]),
        helper.make_node("Mul", ["first2", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "half"], ["s"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([0, 1, -1], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([0], np.int64), "starts"),
        numpy_helper.from_array(np.array([4], np.int64), "ends"),
        numpy_helper.from_array(np.array([2], np.int64), "ends2"),
        numpy_helper.from_array(np.array([2], np.int64), "axes"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pix", TensorProto.UINT8, [batch, 3, HEIGHT, WIDTH])],
        [
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [batch, 1, 4]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [batch, 1, 2]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def write(tmp_path: Path, batch: str | int, input_name: str = "pix") -> Path:
    data = tiny_model(batch)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(data)
    card = {
        "name": "tiny",
        "file": "tiny.onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "family": "yolov8",
        "input": {
            "name": input_name,
            "dtype": "uint8",
            "shape": [batch, 3, HEIGHT, WIDTH],
            "layout": "NCHW",
            "channels": "RGB",
            "normalisation": "in-graph",
        },
        "outputs": {
            "boxes": {"name": "b", "shape": [batch, 1, 4], "format": "xyxy"},
            "scores": {"name": "s", "shape": [batch, 1, 2]},
        },
        "classes": ["a", "b"],
        "licence": "test",
        "provenance": {},
    }
    (tmp_path / "model.json").write_text(json.dumps(card))
    return path


def frames(count: int) -> np.ndarray:
    return np.arange(count * 3 * HEIGHT * WIDTH, dtype=np.uint8).reshape(count, 3, HEIGHT, WIDTH)


@pytest.mark.parametrize("batch", ["batch", 1])
def test_engine_uses_the_card_names_and_any_batch(tmp_path: Path, batch: str | int) -> None:
    # given a product model with non-default names, non-square input, free or fixed batch
    path = write(tmp_path, batch)
    engine = OnnxEngine(path, provider="cpu", card=load_model(path).card)
    images = frames(3)
    # when a batch of three runs
    boxes, scores = engine.infer(images)
    # then each frame's outputs are its own
    assert boxes.shape == (3, 1, 4)
    assert scores.shape == (3, 1, 2)
    for i in range(3):
        np.testing.assert_array_equal(boxes[i, 0], images[i, 0, 0, :4].astype(np.float32))
    np.testing.assert_array_equal(scores, np.full((3, 1, 2), 0.5, np.float32))


def test_a_card_naming_another_input_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "batch", input_name="images")
    with pytest.raises(EngineError, match=r"model.json names input 'images'.*inputs \['pix'\]"):
        OnnxEngine(path, provider="cpu")
