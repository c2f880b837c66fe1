"""edgesight.quantize: the agreement rule on known detections, and an INT8 variant of the
default model calibrated on real photos (no speed is asserted: the machine is shared)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgesight.quantize import IOU_GOAL, Agreement, QuantizeError, compare, quantize_model
from pyodide_client.model_card import ModelCard
from pyodide_client.protocol import Detection

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416"


def det(class_id: int, score: float, x1: float = 0, y1: float = 0, size: float = 10) -> Detection:
    return Detection(class_id, score, x1, y1, x1 + size, y1 + size)


def test_identical_detections_agree() -> None:
    dets = [[det(0, 0.9), det(1, 0.6, 20, 20)], [det(2, 0.7)]]
    agreement = compare(dets, dets)
    assert (agreement.confident, agreement.matched, agreement.min_iou) == (3, 3, 1.0)
    assert agreement.max_score_drift == 0.0
    assert agreement.passes


def test_low_scores_are_not_counted() -> None:
    agreement = compare([[det(0, 0.9), det(1, 0.4)]], [[det(0, 0.88)]])
    assert (agreement.confident, agreement.matched) == (1, 1)
    assert agreement.max_score_drift == pytest.approx(0.02)
    assert agreement.passes


def test_another_class_at_the_same_place_is_no_match() -> None:
    agreement = compare([[det(0, 0.9)]], [[det(1, 0.9)]])
    assert (agreement.confident, agreement.matched) == (1, 0)
    assert not agreement.passes


def test_a_shifted_box_matches_but_can_fail_the_iou_goal() -> None:
    # shifted by 1 px of 10: IoU 90/110 = 0.818 < 0.85
    agreement = compare([[det(0, 0.9)]], [[det(0, 0.9, x1=1)]])
    assert agreement.matched == 1
    assert agreement.min_iou == pytest.approx(90 / 110)
    assert agreement.min_iou < IOU_GOAL
    assert not agreement.passes


def test_nothing_confident_passes_vacuously() -> None:
    assert compare([[det(0, 0.3)]], [[]]) == Agreement(1, 0, 0, 0.0, 0.0, 0.0, 0.0)


def _photos(folder: Path, names: list[str]) -> Path:
    from PIL import Image
    from skimage import data

    folder.mkdir()
    for name in names:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        Image.fromarray(image[..., :3]).save(folder / f"{name}.png")
    return folder


def test_an_int8_variant_of_the_default_model(tmp_path: Path) -> None:
    calibration = _photos(tmp_path / "cal", ["coffee", "camera", "rocket"])
    held_out = _photos(tmp_path / "held", ["astronaut", "chelsea"])
    report = quantize_model(MODEL_DIR, calibration, tmp_path / "int8", held_out_dir=held_out)
    # the person and the cat are found again, at nearly the same place
    assert report.agreement.confident >= 2
    assert report.agreement.passes, report.summary()
    assert report.int8_bytes < report.float_bytes / 2
    card_text = (tmp_path / "int8" / "model.json").read_text()
    card = ModelCard.from_json(card_text)
    assert card.name == "nanodet-g-416-int8"
    assert card.sha256 == hashlib.sha256(report.onnx_path.read_bytes()).hexdigest()
    data = json.loads(card_text)
    original = ModelCard.from_json((MODEL_DIR / "model.json").read_text())
    assert data["provenance"]["quantized_from_sha256"] == original.sha256
    assert data["quantization"]["agreement"]["passes"] is True
    assert data["quantization"]["calibration_images"] == 3
    assert "INT8 report: nanodet-g-416-int8" in report.markdown()


def test_no_photos_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuantizeError, match="no photos"):
        quantize_model(MODEL_DIR, tmp_path / "empty", tmp_path / "out")
