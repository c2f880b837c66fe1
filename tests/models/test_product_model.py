"""Tests for the product detector models/nanodet-g-416 (built by scripts/build_model.py).

Sessions are created once per module (module-scoped fixtures), so the whole file runs in a few
seconds on CPU. The raw-equivalence test needs the raw tf2onnx export that
scripts/build_raw_model.py makes from public packages (scripts/test.sh runs it once per machine);
it is looked up at $EDGESIGHT_RAW_MODEL or that script's cache and skipped when absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from build_raw_model import DEFAULT_RAW, SOURCE_SHA256

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416"
MODEL_FILE = MODEL_DIR / "nanodet-g-416.onnx"
RAW_DEFAULT = DEFAULT_RAW
SIZE = 416
STRIDES = (8, 16, 32)
ANCHORS = 3549
NUM_CLASSES = 80
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32).reshape(1, 3, 1, 1)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32).reshape(1, 3, 1, 1)
SCORE_THRESHOLD = 0.35
IOU_THRESHOLD = 0.5


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sidecar() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MODEL_DIR / "model.json").read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return _session(MODEL_FILE)


@pytest.fixture(scope="module")
def raw_session() -> ort.InferenceSession:
    raw = Path(os.environ.get("EDGESIGHT_RAW_MODEL", RAW_DEFAULT))
    if not raw.is_file():
        pytest.skip(f"raw model not available at {raw}: run scripts/build_raw_model.py")
    return _session(raw)


def letterbox(image: np.ndarray) -> np.ndarray:
    """HxWx3 (or HxW) uint8 -> 3x416x416 uint8 RGB, nearest-neighbour, centred, pad 114."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    h, w = image.shape[:2]
    scale = min(SIZE / w, SIZE / h)
    nw, nh = round(w * scale), round(h * scale)
    rows = np.minimum((np.arange(nh) + 0.5) / scale, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(nw) + 0.5) / scale, w - 1).astype(np.int64)
    canvas = np.full((SIZE, SIZE, 3), 114, dtype=np.uint8)
    top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
    canvas[top : top + nh, left : left + nw] = image[rows][:, cols]
    return np.ascontiguousarray(canvas.transpose(2, 0, 1))


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    sources = {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "camera": data.camera(),
    }
    return {name: letterbox(img) for name, img in sources.items()}


def run(session: ort.InferenceSession, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes, scores = session.run(["boxes", "scores"], {"images": batch})
    return boxes, scores


def reference_decode(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy GFL decode of the six raw outputs (told apart by shape)."""
    boxes, scores = [], []
    for stride in STRIDES:
        n = SIZE // stride
        cls = next(o for o in outputs if o.shape == (1, n * n, NUM_CLASSES))[0]
        dist = next(o for o in outputs if o.shape == (1, n * n, 44))[0].reshape(n * n, 4, 11)
        prob = np.exp(dist - dist.max(axis=-1, keepdims=True))
        prob /= prob.sum(axis=-1, keepdims=True)
        ltrb = (prob * np.arange(11)).sum(axis=-1) * stride
        idx = np.arange(n * n)
        cx, cy = (idx % n + 0.5) * stride, (idx // n + 0.5) * stride
        x1y1 = np.stack([cx, cy], axis=1) - ltrb[:, :2]
        x2y2 = np.stack([cx, cy], axis=1) + ltrb[:, 2:]
        boxes.append(np.concatenate([x1y1, x2y2], axis=1))
        scores.append(cls)
    return np.concatenate(boxes), np.concatenate(scores)


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union: np.ndarray = np.maximum(area + areas - inter, 1e-9)
    return np.asarray(inter / union)


def detect(boxes: np.ndarray, scores: np.ndarray) -> list[tuple[int, float, np.ndarray]]:
    """Threshold + class-aware greedy NMS; returns (class, score, box) by descending score."""
    anchor, cls = np.nonzero(scores >= SCORE_THRESHOLD)
    conf = scores[anchor, cls]
    order = np.argsort(-conf, kind="stable")
    kept: list[tuple[int, float, np.ndarray]] = []
    for i in order:
        box = boxes[anchor[i]]
        same = [k[2] for k in kept if k[0] == cls[i]]
        if same and iou(box, np.array(same)).max() > IOU_THRESHOLD:
            continue
        kept.append((int(cls[i]), float(conf[i]), box))
    return kept


def test_sidecar_sha256_matches_file(sidecar: dict[str, Any]) -> None:
    assert sidecar["file"] == MODEL_FILE.name
    assert hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest() == sidecar["sha256"]


def test_metadata_props(session: ort.InferenceSession, sidecar: dict[str, Any]) -> None:
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["edgesight.name"] == sidecar["name"] == "nanodet-g-416"
    assert json.loads(meta["edgesight.classes"]) == sidecar["classes"]
    assert len(sidecar["classes"]) == NUM_CLASSES
    assert sidecar["classes"][0] == "person"
    assert sidecar["classes"][15] == "cat"
    assert meta["edgesight.input_size"] == "416"
    assert sidecar["provenance"]["source_sha256"] == SOURCE_SHA256
    for name, sha in SOURCE_SHA256.items():
        assert f"package/{name} sha256 {sha}" in meta["edgesight.source"]
    assert "Apache-2.0" in meta["edgesight.licence"]
    assert "MIT" in meta["edgesight.licence"]


def test_io_signature(session: ort.InferenceSession, sidecar: dict[str, Any]) -> None:
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(uint8)", ["batch", 3, 416, 416])
    outs = [(o.name, o.type, o.shape) for o in session.get_outputs()]
    assert outs == [
        ("boxes", "tensor(float)", ["batch", ANCHORS, 4]),
        ("scores", "tensor(float)", ["batch", ANCHORS, NUM_CLASSES]),
    ]
    assert sidecar["input"]["shape"] == inp.shape
    assert sidecar["anchors"] == ANCHORS
    assert sidecar["outputs"]["boxes"]["shape"] == ["batch", ANCHORS, 4]
    assert sidecar["outputs"]["scores"]["shape"] == ["batch", ANCHORS, NUM_CLASSES]


def test_dynamic_batch_matches_single(
    session: ort.InferenceSession, images: dict[str, np.ndarray]
) -> None:
    batch = np.stack(list(images.values()))
    boxes, scores = run(session, batch)
    assert boxes.shape == (4, ANCHORS, 4)
    assert scores.shape == (4, ANCHORS, NUM_CLASSES)
    for i, image in enumerate(images.values()):
        one_boxes, one_scores = run(session, image[None])
        np.testing.assert_allclose(boxes[i], one_boxes[0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(scores[i], one_scores[0], rtol=0, atol=1e-4)
    assert not np.allclose(scores[0], scores[1], atol=1e-2), "items must differ"


def test_matches_raw_model_with_reference_decode(
    session: ort.InferenceSession,
    raw_session: ort.InferenceSession,
    images: dict[str, np.ndarray],
) -> None:
    image = images["astronaut"][None]
    bgr = image[:, ::-1].astype(np.float32)
    raw_in = ((bgr - MEAN_BGR) / STD_BGR).astype(np.float32)
    ref_boxes, ref_scores = reference_decode(raw_session.run(None, {"input_1:0": raw_in}))
    boxes, scores = run(session, image)
    np.testing.assert_allclose(boxes[0], ref_boxes, rtol=0, atol=1e-3)
    np.testing.assert_allclose(scores[0], ref_scores, rtol=0, atol=1e-3)


@pytest.mark.parametrize(("name", "expected"), [("astronaut", "person"), ("chelsea", "cat")])
def test_top_detection(
    session: ort.InferenceSession,
    sidecar: dict[str, Any],
    images: dict[str, np.ndarray],
    name: str,
    expected: str,
) -> None:
    boxes, scores = run(session, images[name][None])
    found = detect(boxes[0], scores[0])
    assert found, f"no detection above {SCORE_THRESHOLD} on {name}"
    cls, score, box = found[0]
    assert sidecar["classes"][cls] == expected, (name, sidecar["classes"][cls], score)
    assert box[2] > box[0]
    assert box[3] > box[1]
