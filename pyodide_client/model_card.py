"""The model contract: what a node, the page and the in-browser fallback must agree on about
a model. Parsed from the ``model.json`` sidecar that travels with the model (the node reads it
from disk; the browser fetches it from the web app); stdlib only, it runs in Pyodide.

A *product model* (what edgesight serves) always has this shape, whatever it came from:

- one input, uint8 RGB, NCHW ``[batch, 3, H, W]`` (or a fixed batch of 1), normalised in the
  graph: the wire and the Wasm worker carry the letterboxed camera pixels as they are;
- two outputs: ``boxes`` float32 ``[batch, A, 4]`` as x1, y1, x2, y2 in input pixels, and
  ``scores`` float32 ``[batch, A, C]`` per-class scores, one column per class name.

``family`` says what the file was built from (NanoDet, an Ultralytics YOLOv8/YOLO11 or YOLOv5
export, a post-NMS model); each family's own output layout is decoded in the graph when the
model is built or imported (``scripts/build_model.py``, ``edgesight model import``), so one
post-processing path (``postprocess.select``) serves them all. The names of the input and the
two outputs are the card's, never hard-coded by a runtime.

Every field is checked on load; an error names the field, what was expected and what came.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["FAMILIES", "ModelCard", "ModelCardError"]

# Where a product model came from (its decode is in the graph either way).
FAMILIES = ("nanodet", "yolov8", "yolov5", "nms")
_HEX = "0123456789abcdef"


class ModelCardError(ValueError):
    """A model.json that lacks a field or has one of the wrong kind."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    file: str
    sha256: str
    input_width_px: int
    input_height_px: int
    class_names: tuple[str, ...]
    input_name: str = "images"
    boxes_output: str = "boxes"
    scores_output: str = "scores"
    family: str = "nanodet"
    fixed_batch: int | None = None  # None: any batch size; 1: the engine runs one at a time
    licence: str = ""

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """One frame's tensor shape, [3, H, W], as a node announces it in HELLO."""
        return (3, self.input_height_px, self.input_width_px)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"model.json is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelCardError(f"model.json must hold an object, got {type(data).__name__}")
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> ModelCard:
        name = _field(data, "name", str)
        file = _field(data, "file", str)
        sha256 = _field(data, "sha256", str).lower()
        if len(sha256) != 64 or any(c not in _HEX for c in sha256):
            raise ModelCardError(f"model.json sha256 must be 64 hex digits, got {sha256!r}")
        model_input = _field(data, "input", dict)
        input_name = _field(model_input, "name", str, "input.")
        batch, height, width = _input_shape(model_input.get("shape"))
        for key, expected in (
            ("dtype", "uint8"),
            ("layout", "NCHW"),
            ("channels", "RGB"),
            ("normalisation", "in-graph"),
        ):
            if model_input.get(key) != expected:
                raise ModelCardError(
                    f"model.json input.{key} must be {expected!r}, got {model_input.get(key)!r}"
                )
        classes = _field(data, "classes", list)
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise ModelCardError("model.json classes must be a non-empty list of strings")
        outputs = _field(data, "outputs", dict)
        boxes = _field(outputs, "boxes", dict, "outputs.")
        scores = _field(outputs, "scores", dict, "outputs.")
        boxes_name = _field(boxes, "name", str, "outputs.boxes.")
        scores_name = _field(scores, "name", str, "outputs.scores.")
        if boxes.get("format") != "xyxy":
            raise ModelCardError(
                f"model.json outputs.boxes.format must be 'xyxy', got {boxes.get('format')!r}"
            )
        _check_output_shape(boxes.get("shape"), 4, "outputs.boxes.shape")
        _check_output_shape(scores.get("shape"), len(classes), "outputs.scores.shape")
        family = _field(data, "family", str)
        if family not in FAMILIES:
            raise ModelCardError(
                f"model.json family must be one of {', '.join(FAMILIES)}, got {family!r}"
            )
        licence = _field(data, "licence", str)
        _field(data, "provenance", dict)
        return cls(
            name=name,
            file=file,
            sha256=sha256,
            input_width_px=width,
            input_height_px=height,
            class_names=tuple(classes),
            input_name=input_name,
            boxes_output=boxes_name,
            scores_output=scores_name,
            family=family,
            fixed_batch=batch,
            licence=licence,
        )


def _input_shape(shape: Any) -> tuple[int | None, int, int]:
    """[batch, 3, H, W] -> (fixed batch or None, H, W)."""
    if not (isinstance(shape, list) and len(shape) == 4 and shape[1] == 3):
        raise ModelCardError(f"model.json input.shape must be [batch, 3, H, W], got {shape!r}")
    if not all(_is_positive_int(v) for v in shape[2:]):
        raise ModelCardError(
            "model.json input.shape must be [batch, 3, H, W] with H and W positive integers, "
            f"got {shape!r}"
        )
    batch = shape[0]
    if isinstance(batch, str):
        return None, shape[2], shape[3]
    if batch != 1 or not _is_positive_int(batch):
        raise ModelCardError(
            "model.json input.shape batch must be a name (any batch) or 1, got "
            f"{batch!r} in {shape!r}"
        )
    return 1, shape[2], shape[3]


def _check_output_shape(shape: Any, last: int, where: str) -> None:
    """[batch, A, last] with A a positive integer."""
    ok = (
        isinstance(shape, list)
        and len(shape) == 3
        and (isinstance(shape[0], str) or shape[0] == 1)
        and _is_positive_int(shape[1])
        and shape[2] == last
    )
    if not ok:
        raise ModelCardError(f"model.json {where} must be [batch, anchors, {last}], got {shape!r}")


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _field(data: dict[str, Any], key: str, kind: type, prefix: str = "") -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ModelCardError(
            f"model.json field {prefix + key!r} must be a {kind.__name__}, "
            f"got {type(value).__name__}"
        )
    return value
