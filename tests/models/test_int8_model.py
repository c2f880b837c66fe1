"""The shipped INT8 variant models/nanodet-g-416/int8 (built by scripts/build_int8.py): its
card is the float model's contract plus its report, it finds what the float model finds, and
the build script reproduces its bytes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from pyodide_client.model_card import ModelCard
from tests.models.test_product_model import detect, letterbox

ROOT = Path(__file__).resolve().parents[2]
FLOAT_DIR = ROOT / "models" / "nanodet-g-416"
INT8_DIR = FLOAT_DIR / "int8"


@pytest.fixture(scope="module")
def card_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((INT8_DIR / "model.json").read_text())
    return data


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    from skimage import data

    return {"astronaut": letterbox(data.astronaut()), "chelsea": letterbox(data.chelsea())}


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_the_card_is_the_float_contract_plus_its_report(card_data: dict[str, Any]) -> None:
    card = ModelCard.from_json(json.dumps(card_data))
    float_card = ModelCard.from_json((FLOAT_DIR / "model.json").read_text())
    assert card.sha256 == hashlib.sha256((INT8_DIR / card.file).read_bytes()).hexdigest()
    assert card_data["provenance"]["quantized_from_sha256"] == float_card.sha256
    assert (card.class_names, card.frame_shape) == (float_card.class_names, float_card.frame_shape)
    assert card_data["quantization"]["agreement"]["passes"] is True
    assert card_data["quantization"]["agreement"]["min_iou"] >= 0.85


def test_only_conv_is_quantised(card_data: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(INT8_DIR / card_data["file"]))
    float_model = onnx.load(str(FLOAT_DIR / "nanodet-g-416.onnx"))
    ops = {n.op_type for n in model.graph.node} - {"QuantizeLinear", "DequantizeLinear"}
    # the same operators as the float model: QDQ pairs added, nothing replaced
    assert ops == {n.op_type for n in float_model.graph.node}
    weights = {i.name for i in model.graph.initializer}
    quantised_weights = {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights
    }
    consumers = {n.op_type for n in model.graph.node if set(n.input) & quantised_weights}
    assert consumers == {"Conv"}


@pytest.mark.parametrize(("name", "expected"), [("astronaut", "person"), ("chelsea", "cat")])
def test_finds_what_the_float_model_finds(
    card_data: dict[str, Any], photos: dict[str, np.ndarray], name: str, expected: str
) -> None:
    session = _session(INT8_DIR / card_data["file"])
    boxes, scores = session.run(["boxes", "scores"], {"images": photos[name][None]})
    found = detect(boxes[0], scores[0])
    assert found
    assert card_data["classes"][found[0][0]] == expected


def test_the_build_script_reproduces_the_int8_file(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_int8.py"),
            "--out-dir",
            str(tmp_path),
            "--report",
            str(tmp_path / "report.md"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    name = "nanodet-g-416-int8.onnx"
    assert (tmp_path / name).read_bytes() == (INT8_DIR / name).read_bytes()
    built = json.loads((tmp_path / "model.json").read_text())
    shipped = json.loads((INT8_DIR / "model.json").read_text())
    assert built["quantization"]["agreement"] == shipped["quantization"]["agreement"]
