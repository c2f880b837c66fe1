"""ModelCard: the model.json sidecar both sides agree on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pyodide_client import model_card
from pyodide_client.model_card import ModelCard, ModelCardError

SHA = "0123456789abcdef" * 4
SHIPPED_CARD = Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416" / "model.json"


def card(**changes: Any) -> dict[str, Any]:
    """A valid model.json as a dict; ``changes`` replace top-level keys (None removes one)."""
    data: dict[str, Any] = {
        "name": "tiny-det",
        "file": "tiny-det.onnx",
        "sha256": SHA,
        "family": "yolov8",
        "input": {
            "name": "pixels",
            "shape": ["batch", 3, 320, 320],
            "dtype": "uint8",
            "layout": "NCHW",
            "channels": "RGB",
            "normalisation": "in-graph",
        },
        "outputs": {
            "boxes": {"name": "b", "shape": ["batch", 100, 4], "format": "xyxy"},
            "scores": {"name": "s", "shape": ["batch", 100, 3]},
        },
        "classes": ["person", "bicycle", "car"],
        "licence": "Apache-2.0",
        "provenance": {"imported_from": "tiny.onnx"},
        "extra": {"ignored": True},
    }
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


def with_input(**changes: Any) -> dict[str, Any]:
    data = card()
    data["input"].update(changes)
    for key, value in changes.items():
        if value is None:
            del data["input"][key]
    return data


def with_output(which: str, **changes: Any) -> dict[str, Any]:
    data = card()
    data["outputs"][which].update(changes)
    for key, value in changes.items():
        if value is None:
            del data["outputs"][which][key]
    return data


def test_valid_card() -> None:
    assert ModelCard.from_json(json.dumps(card())) == ModelCard(
        name="tiny-det",
        file="tiny-det.onnx",
        sha256=SHA,
        input_width_px=320,
        input_height_px=320,
        class_names=("person", "bicycle", "car"),
        input_name="pixels",
        boxes_output="b",
        scores_output="s",
        family="yolov8",
        fixed_batch=None,
        licence="Apache-2.0",
    )


def test_sha256_is_lowercased() -> None:
    parsed = ModelCard.from_json(json.dumps(card(sha256=SHA.upper())))
    assert parsed.sha256 == SHA


def test_a_fixed_batch_of_one_is_accepted() -> None:
    parsed = ModelCard.from_json(json.dumps(with_input(shape=[1, 3, 64, 64])))
    assert (parsed.input_width_px, parsed.input_height_px, parsed.fixed_batch) == (64, 64, 1)


def test_a_non_square_input_is_width_by_height() -> None:
    # given [batch, 3, H=384, W=640]
    parsed = ModelCard.from_json(json.dumps(with_input(shape=["n", 3, 384, 640])))
    # then the width and height are told apart, and a frame is [3, H, W]
    assert (parsed.input_width_px, parsed.input_height_px) == (640, 384)
    assert parsed.frame_shape == (3, 384, 640)


def test_any_class_count_matching_the_scores() -> None:
    data = card(classes=["fall"])
    data["outputs"]["scores"]["shape"] = ["batch", 100, 1]
    assert ModelCard.from_json(json.dumps(data)).class_names == ("fall",)


def test_the_shipped_card_parses() -> None:
    if not SHIPPED_CARD.exists():
        pytest.skip(f"{SHIPPED_CARD} is not built")
    parsed = ModelCard.from_json(SHIPPED_CARD.read_text(encoding="utf-8"))
    assert parsed.name == "nanodet-g-416"
    assert parsed.frame_shape == (3, 416, 416)
    assert len(parsed.class_names) == 80
    assert parsed.class_names[0] == "person"
    assert (parsed.input_name, parsed.boxes_output, parsed.scores_output) == (
        "images",
        "boxes",
        "scores",
    )
    assert parsed.family == "nanodet"
    assert "Apache-2.0" in parsed.licence


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{", "model.json is not valid JSON"),
        ("[1, 2]", "model.json must hold an object, got list"),
        ('"card"', "model.json must hold an object, got str"),
    ],
)
def test_not_an_object(text: str, fragment: str) -> None:
    with pytest.raises(ModelCardError, match=r"^model\.json") as info:
        ModelCard.from_json(text)
    assert fragment in str(info.value)


POSITIVE = "input.shape must be [batch, 3, H, W] with H and W positive integers"
INVALID = [
    ("name-missing", card(name=None), "field 'name' must be a str, got NoneType"),
    ("name-number", card(name=7), "field 'name' must be a str, got int"),
    ("file-missing", card(file=None), "field 'file' must be a str, got NoneType"),
    ("file-list", card(file=["a.onnx"]), "field 'file' must be a str, got list"),
    ("sha256-missing", card(sha256=None), "field 'sha256' must be a str, got NoneType"),
    ("sha256-short", card(sha256=SHA[:-1]), f"sha256 must be 64 hex digits, got {SHA[:-1]!r}"),
    ("sha256-long", card(sha256=SHA + "0"), "sha256 must be 64 hex digits"),
    ("sha256-not-hex", card(sha256="g" * 64), "sha256 must be 64 hex digits"),
    ("input-missing", card(input=None), "field 'input' must be a dict, got NoneType"),
    ("input-list", card(input=[1, 3, 320, 320]), "field 'input' must be a dict, got list"),
    ("input-name", with_input(name=None), "field 'input.name' must be a str, got NoneType"),
    ("shape-missing", with_input(shape=None), "input.shape must be [batch, 3, H, W], got None"),
    ("shape-3d", with_input(shape=[3, 320, 320]), "input.shape must be [batch, 3, H, W]"),
    ("shape-1-channel", with_input(shape=[1, 1, 320, 320]), "input.shape must be [batch, 3"),
    ("shape-nhwc", with_input(shape=[1, 320, 320, 3]), "input.shape must be [batch, 3"),
    ("size-text", with_input(shape=[1, 3, "h", "w"]), POSITIVE),
    ("size-float", with_input(shape=[1, 3, 320.0, 320.0]), POSITIVE),
    ("size-zero", with_input(shape=[1, 3, 0, 0]), f"{POSITIVE}, got [1, 3, 0, 0]"),
    ("size-negative", with_input(shape=[1, 3, -5, -5]), POSITIVE),
    (
        "batch-4",
        with_input(shape=[4, 3, 8, 8]),
        "input.shape batch must be a name (any batch) or 1",
    ),
    ("dtype-float", with_input(dtype="float32"), "input.dtype must be 'uint8', got 'float32'"),
    ("dtype-missing", with_input(dtype=None), "input.dtype must be 'uint8', got None"),
    ("layout-nhwc", with_input(layout="NHWC"), "input.layout must be 'NCHW', got 'NHWC'"),
    ("channels-bgr", with_input(channels="BGR"), "input.channels must be 'RGB', got 'BGR'"),
    (
        "normalisation-none",
        with_input(normalisation=None),
        "input.normalisation must be 'in-graph', got None",
    ),
    ("classes-missing", card(classes=None), "field 'classes' must be a list, got NoneType"),
    ("classes-text", card(classes="person"), "field 'classes' must be a list, got str"),
    ("classes-empty", card(classes=[]), "classes must be a non-empty list of strings"),
    ("classes-number", card(classes=["a", 2]), "classes must be a non-empty list of strings"),
    ("outputs-missing", card(outputs=None), "field 'outputs' must be a dict, got NoneType"),
    (
        "boxes-name",
        with_output("boxes", name=None),
        "field 'outputs.boxes.name' must be a str, got NoneType",
    ),
    (
        "scores-name",
        with_output("scores", name=3),
        "field 'outputs.scores.name' must be a str, got int",
    ),
    ("boxes-xywh", with_output("boxes", format="xywh"), "outputs.boxes.format must be 'xyxy'"),
    (
        "boxes-shape",
        with_output("boxes", shape=["batch", 100, 5]),
        "outputs.boxes.shape must be [batch, anchors, 4], got ['batch', 100, 5]",
    ),
    (
        "scores-classes",
        with_output("scores", shape=["batch", 100, 80]),
        "outputs.scores.shape must be [batch, anchors, 3]",
    ),
    ("family-missing", card(family=None), "field 'family' must be a str, got NoneType"),
    ("family-unknown", card(family="ssd"), "family must be one of nanodet, yolov8, yolov5, nms"),
    ("licence-missing", card(licence=None), "field 'licence' must be a str, got NoneType"),
    ("provenance", card(provenance="me"), "field 'provenance' must be a dict, got str"),
]


@pytest.mark.parametrize(
    ("data", "fragment"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_field_names_the_field(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ModelCardError, match=r"^model\.json") as info:
        ModelCard.from_json(json.dumps(data))
    assert fragment in str(info.value)


def test_model_card_error_is_a_value_error() -> None:
    assert issubclass(ModelCardError, ValueError)


def test_all_names_exist() -> None:
    for name in model_card.__all__:
        assert hasattr(model_card, name), name
