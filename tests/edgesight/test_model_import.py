"""edgesight.model_import on small synthetic detectors, one per output family: known raw
outputs in, known boxes and scores out of the wrapped product model; and the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgesight.model_import import ModelImportError, import_model, read_names  # noqa: E402
from pyodide_client.model_card import ModelCard  # noqa: E402
from tests.handshake import handshake  # noqa: E402

H, W = 32, 48  # a non-square input
NAMES = ["cat", "dog", "fall"]
C = len(NAMES)


def detector(
    raw: np.ndarray,
    *,
    input_shape: list[Any] | None = None,
    metadata: dict[str, str] | None = None,
    extra_nodes: list[Any] | None = None,
    input_type: int = TensorProto.FLOAT,
    opset: int = 13,
) -> Any:
    """A 'detector' whose single output is ``raw`` plus the image mean in element [0, 0, 0],
    so the normalisation (uint8 / 255) shows, and a batch-leading Reshape target [1, ...]."""
    shape = input_shape or [1, 3, H, W]
    flat = np.zeros(raw.size, np.float32)
    flat[0] = 1.0
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["xf"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean", "mean_shape"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "mask"], ["bump"]),
        helper.make_node("Add", ["bump", "raw"], ["out"]),
        *(extra_nodes or []),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), "mean_shape"),
        numpy_helper.from_array(flat.reshape(raw.shape[1:])[None], "mask"),
        numpy_helper.from_array(raw.astype(np.float32), "raw"),
    ]
    graph = helper.make_graph(
        nodes,
        "synthetic",
        [helper.make_tensor_value_info("x", input_type, shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(raw.shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


def save(tmp_path: Path, model: Any, name: str = "det.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def names_file(tmp_path: Path, names: list[str] = NAMES) -> Path:
    path = tmp_path / f"names-{len(names)}.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def run(onnx_path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(["boxes", "scores"], {"images": images})
    return boxes, scores


def grey(value: int, batch: int = 1) -> np.ndarray:
    return np.full((batch, 3, H, W), value, np.uint8)


# --- families: known boxes in, known boxes out ---------------------------------------------


def test_yolov8_centre_size_becomes_corners(tmp_path: Path) -> None:
    # given an Ultralytics-style [1, 4 + C, N] output: anchor 1 is a dog at centre (20, 10),
    # 8 wide, 4 high; anchor 0's cx carries the image mean (0 for a black image)
    n = 5
    raw = np.zeros((1, 4 + C, n), np.float32)
    raw[0, :4, 1] = [20, 10, 8, 4]
    raw[0, 4 + 1, 1] = 0.9
    raw[0, 4 + 2, 3] = 0.4
    model = detector(raw, metadata={"names": "{0: 'cat', 1: 'dog', 2: 'fall'}", "stride": "32"})
    # when it is imported (names from the metadata, family detected)
    result = import_model(save(tmp_path, model), tmp_path / "out")
    # then the product has uint8 input, xyxy boxes and per-class scores
    assert result.card.family == "yolov8"
    assert result.card.class_names == tuple(NAMES)
    assert (result.card.input_width_px, result.card.input_height_px) == (W, H)
    boxes, scores = run(result.onnx_path, grey(0))
    assert boxes.shape == (1, n, 4)
    assert scores.shape == (1, n, C)
    np.testing.assert_allclose(boxes[0, 1], [16, 8, 24, 12])
    np.testing.assert_allclose(scores[0, 1], [0, 0.9, 0])
    np.testing.assert_allclose(scores[0, 3], [0, 0, 0.4])


def test_the_input_is_divided_by_255_in_the_graph(tmp_path: Path) -> None:
    raw = np.zeros((1, 4 + C, 4), np.float32)
    result = import_model(
        save(tmp_path, detector(raw)), tmp_path / "out", names_path=names_file(tmp_path)
    )
    # a white image has mean 1.0 after /255; it lands in anchor 0's cx (x1 = x2 = 1.0)
    boxes, _ = run(result.onnx_path, grey(255))
    np.testing.assert_allclose(boxes[0, 0, [0, 2]], [1.0, 1.0], atol=1e-6)


def test_yolov5_scores_are_class_times_objectness(tmp_path: Path) -> None:
    # given [1, N, 5 + C]: anchor 2 is cx,cy,w,h = 10,20,4,6, objectness 0.5, class 2 at 0.8
    raw = np.zeros((1, 6, 5 + C), np.float32)
    raw[0, 2] = [10, 20, 4, 6, 0.5, 0.1, 0.2, 0.8]
    result = import_model(
        save(tmp_path, detector(raw)), tmp_path / "out", names_path=names_file(tmp_path)
    )
    assert result.card.family == "yolov5"
    boxes, scores = run(result.onnx_path, grey(0))
    np.testing.assert_allclose(boxes[0, 2], [8, 17, 12, 23])
    np.testing.assert_allclose(scores[0, 2], [0.05, 0.1, 0.4], rtol=1e-6)


def test_post_nms_rows_become_one_score_per_class(tmp_path: Path) -> None:
    # given an end-to-end export [1, K, 6]: x1, y1, x2, y2, score, class
    raw = np.zeros((1, 4, 6), np.float32)
    raw[0, 0] = [0, 1, 5, 6, 0.0, 0]  # cx of row 0 carries the mean: keep it a black image
    raw[0, 1] = [1, 2, 30, 20, 0.7, 2]
    raw[0, 2] = [3, 4, 10, 12, 0.6, 1]
    model = detector(raw, metadata={"args": "{'nms': True, 'batch': 1}"})
    result = import_model(save(tmp_path, model), tmp_path / "out", names_path=names_file(tmp_path))
    assert result.card.family == "nms"
    boxes, scores = run(result.onnx_path, grey(0))
    np.testing.assert_allclose(boxes[0, 1], [1, 2, 30, 20])
    np.testing.assert_allclose(scores[0, 1], [0, 0, 0.7], rtol=1e-6)
    np.testing.assert_allclose(scores[0, 2], [0, 0.6, 0], rtol=1e-6)


def split_nms_detector() -> Any:
    """Post-NMS outputs apart, named as exporters name them: boxes [1,K,4], scores [1,K],
    classes [1,K] int64 and num_dets [1,1]."""
    k = 3
    boxes = np.array([[[1, 2, 30, 20], [3, 4, 10, 12], [0, 0, 0, 0]]], np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Reshape", ["mean", "one_one"], ["mean11"]),
        helper.make_node("Mul", ["mean11", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "score_values"], ["scores"]),
        helper.make_node("Reshape", ["nothing", "one_one_one"], ["nothing3"]),
        helper.make_node("Add", ["nothing3", "box_values"], ["boxes"]),
        helper.make_node("Identity", ["class_values"], ["classes"]),
        helper.make_node("Identity", ["count"], ["num_dets"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 1], np.int64), "one_one"),
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), "one_one_one"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([[0.7, 0.6, 0.0]], np.float32), "score_values"),
        numpy_helper.from_array(boxes, "box_values"),
        numpy_helper.from_array(np.array([[2, 1, 0]], np.int64), "class_values"),
        numpy_helper.from_array(np.array([[2]], np.int64), "count"),
    ]
    graph = helper.make_graph(
        nodes,
        "split-nms",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, H, W])],
        [
            helper.make_tensor_value_info("num_dets", TensorProto.INT64, [1, 1]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, k, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, k]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, [1, k]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_post_nms_outputs_apart_become_one_score_per_class(tmp_path: Path) -> None:
    # given an export whose own outputs are already called boxes and scores
    path = save(tmp_path, split_nms_detector())
    result = import_model(path, tmp_path / "out", names_path=names_file(tmp_path))
    assert result.card.family == "nms"
    boxes, scores = run(result.onnx_path, grey(0))
    np.testing.assert_allclose(boxes[0, :2], [[1, 2, 30, 20], [3, 4, 10, 12]])
    np.testing.assert_allclose(scores[0], [[0, 0, 0.7], [0, 0.6, 0], [0, 0, 0]], rtol=1e-6)


def test_a_float16_model_gets_a_float16_input(tmp_path: Path) -> None:
    raw = np.zeros((1, 4 + C, 4), np.float32)
    raw[0, :4, 2] = [10, 10, 4, 4]
    model = detector(raw, input_type=TensorProto.FLOAT16)
    result = import_model(save(tmp_path, model), tmp_path / "out", names_path=names_file(tmp_path))
    boxes, _ = run(result.onnx_path, grey(0))
    np.testing.assert_allclose(boxes[0, 2], [8, 8, 12, 12])


def test_a_fixed_batch_of_one_is_freed_and_checked(tmp_path: Path) -> None:
    raw = np.zeros((1, 4 + C, 4), np.float32)
    result = import_model(
        save(tmp_path, detector(raw)), tmp_path / "out", names_path=names_file(tmp_path)
    )
    # the Reshape target [1, 1, 1] became [0, 1, 1]: a batch of three runs, each its own
    assert result.is_batch_free
    assert result.card.fixed_batch is None
    assert result.check_report["batch_checked"] == 3
    boxes, _ = run(result.onnx_path, np.concatenate([grey(0), grey(255), grey(51)]))
    np.testing.assert_allclose(boxes[:, 0, 0], [0.0, 1.0, 0.2], atol=1e-5)


def test_a_batch_that_cannot_be_freed_stays_one(tmp_path: Path) -> None:
    # a Reshape whose target is computed from a constant Shape chain cannot follow the batch
    raw = np.zeros((1, 4 + C, 4), np.float32)
    model = detector(raw)
    graph = model.graph
    for node in graph.node:
        if node.op_type == "Reshape":
            node.input[1] = "mean_shape_computed"
    graph.node.insert(
        0,
        helper.make_node("Identity", ["mean_shape"], ["mean_shape_computed"]),
    )
    result = import_model(save(tmp_path, model), tmp_path / "out", names_path=names_file(tmp_path))
    assert not result.is_batch_free
    assert result.card.fixed_batch == 1
    card = json.loads(result.card_path.read_text())
    assert card["input"]["shape"] == [1, 3, H, W]


def test_the_written_card_is_the_contract(tmp_path: Path) -> None:
    raw = np.zeros((1, 4 + C, 4), np.float32)
    result = import_model(
        save(tmp_path, detector(raw)),
        tmp_path / "out",
        names_path=names_file(tmp_path),
        name="my-det",
        licence="CC0",
    )
    card = ModelCard.from_json(result.card_path.read_text())
    assert card == result.card
    assert (card.name, card.file, card.licence) == ("my-det", "my-det.onnx", "CC0")
    data = json.loads(result.card_path.read_text())
    assert data["provenance"]["source_file"] == "det.onnx"
    assert data["anchors"] == 4


def test_a_dynamic_input_takes_its_size_from_the_metadata(tmp_path: Path) -> None:
    raw = np.zeros((1, 4 + C, 4), np.float32)
    model = detector(
        raw, input_shape=["batch", 3, "height", "width"], metadata={"imgsz": f"[{H}, {W}]"}
    )
    result = import_model(save(tmp_path, model), tmp_path / "out", names_path=names_file(tmp_path))
    assert result.card.frame_shape == (3, H, W)


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "names: [cat, dog, fall]\n",
        "names:\n  0: cat\n  1: dog\n  2: fall\n",
        "nc: 3\nnames:\n- cat\n- dog\n- fall\n",
    ],
    ids=["list", "mapping", "block"],
)
def test_names_from_a_data_yaml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(text)
    assert read_names(path) == NAMES


# --- refusals ------------------------------------------------------------------------------


def refusal(tmp_path: Path, model: Any, **kwargs: Any) -> str:
    kwargs.setdefault("names_path", names_file(tmp_path))
    with pytest.raises(ModelImportError) as info:
        import_model(save(tmp_path, model), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / "model.json").exists()
    return str(info.value)


def test_refuses_a_dynamic_size_without_a_default(tmp_path: Path) -> None:
    model = detector(np.zeros((1, 4 + C, 4), np.float32), input_shape=[1, 3, "h", "w"])
    message = refusal(tmp_path, model)
    assert "dynamic spatial size" in message
    assert "--imgsz" in message


def test_refuses_the_wrong_input_rank(tmp_path: Path) -> None:
    model = detector(np.zeros((1, 4 + C, 4), np.float32), input_shape=[1, 3, H])
    model.graph.node[1].attribute[0].ints[:] = [1, 2]
    assert "must have rank 4 [batch, 3, H, W], got shape [1, 3, 32] (rank 3)" in refusal(
        tmp_path, model
    )


def test_refuses_an_operator_onnxruntime_web_lacks(tmp_path: Path) -> None:
    custom = helper.make_node("FancyNms", ["out"], ["unused"], domain="com.example")
    model = detector(np.zeros((1, 4 + C, 4), np.float32), extra_nodes=[custom])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    message = refusal(tmp_path, model)
    assert "operators onnxruntime-web does not run" in message
    assert "com.example:FancyNms" in message


def test_refuses_names_that_do_not_fit_the_output(tmp_path: Path) -> None:
    model = detector(np.zeros((1, 4 + C, 9), np.float32))
    message = refusal(tmp_path, model, names_path=names_file(tmp_path, ["a", "b"]))
    assert "fits no known family for 2 classes" in message


def test_refuses_names_that_differ_from_the_metadata(tmp_path: Path) -> None:
    model = detector(np.zeros((1, 4 + C, 9), np.float32), metadata={"names": "{0: 'a'}"})
    assert "lists 3 classes, but the model's metadata lists 1" in refusal(tmp_path, model)


def test_refuses_a_model_without_names(tmp_path: Path) -> None:
    model = detector(np.zeros((1, 4 + C, 9), np.float32))
    assert "carries no class names" in refusal(tmp_path, model, names_path=None)


def test_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "x.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelImportError, match="is not an ONNX model"):
        import_model(path, tmp_path / "out", names_path=names_file(tmp_path))


# --- a genuine Ultralytics export, imported and served by a real node ----------------------


@pytest.fixture(scope="module")
def fall_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.models.fall_model import fall_onnx

    return import_model(fall_onnx(), tmp_path_factory.mktemp("fall") / "fall-detection")


def test_an_ultralytics_export_is_imported_from_its_metadata(fall_model: Any) -> None:
    card = fall_model.card
    assert card.family == "yolov8"
    assert card.class_names == ("Normal", "Fall")
    assert card.frame_shape == (3, 640, 640)
    assert fall_model.is_batch_free
    assert fall_model.check_report == {"anchors": 8400, "batch_checked": 3}
    assert "AGPL-3.0" in card.licence
    data = json.loads(fall_model.card_path.read_text())
    assert data["provenance"]["source_version"] == "8.3.202"


def test_a_node_serves_the_imported_model(fall_model: Any) -> None:
    from websockets.sync.client import connect

    from edgesight.serving import ServerThread
    from gpu_backend.app import create_app
    from gpu_backend.settings import NodeSettings
    from pyodide_client.stream import Detections, NodeStream
    from tests.media import rgba_photo

    settings = NodeSettings(
        port=0, model_path=fall_model.onnx_path, node_name="fall", intra_op_threads=1
    )
    with (
        ServerThread(create_app(settings), max_message_bytes=settings.max_message_bytes) as node,
        connect(node.ws_url, compression=None, max_size=None, open_timeout=30) as conn,
    ):
        stream = NodeStream()
        ready = handshake(conn, stream, timeout_s=30)
        # the page learns the classes and the input shape from the node
        assert ready.hello.class_names == ("Normal", "Fall")
        assert ready.hello.frame_shape == (3, 640, 640)
        rgba, w, h = rgba_photo("astronaut")
        conn.send(stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=1.0))
        (result,) = stream.receive(conn.recv(timeout=60), now_ms=2.0)
    assert isinstance(result, Detections)
    assert {box.label for box in result.boxes} <= {"Normal", "Fall"}
    assert all(0 <= box.x1 < box.x2 <= w and 0 <= box.y1 < box.y2 <= h for box in result.boxes)
