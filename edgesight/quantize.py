"""``edgesight model quantize``: an INT8 variant of a product model, and the evidence for it.

onnxruntime.quantization, static, QDQ format, per-channel weights, calibrated (MinMax) on the
user's photos letterboxed exactly as the page does (pyodide_client.preprocess). Only ``Conv``
is quantised: quantising every operator, the in-graph normalisation and box decode included,
destroyed the output (every image gave the same top class; measured, docs/models.md).

The report compares the INT8 model with the float one on held-out photos, through the same
post-processing as the node and the page (pyodide_client.postprocess.select):

- agreement: every *confident* float detection (score >= CONFIDENT_SCORE; low scores flicker
  between any two runs) must have an INT8 detection of the same class with IoU >=
  MATCH_IOU; the IoU of those matches and the score drift are reported;
- speed: session.run on this CPU, float and INT8 interleaved in one run (the machine is
  shared: only the ratio means anything).

It passes when every confident detection is matched and the smallest matched IoU is at least
IOU_GOAL. The web app offers the INT8 file to the in-browser fallback only when it passes and
a measured Wasm speed-up (``bench/int8.py`` records it in the variant's model.json) is above
1 (webapp/model_files.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyodide_client.model_card import ModelCard, ModelCardError
from pyodide_client.postprocess import PostprocessSettings, iou, select
from pyodide_client.preprocess import Letterbox
from pyodide_client.protocol import Detection

from .model_card_file import write_model_card

__all__ = [
    "CONFIDENT_SCORE",
    "IOU_GOAL",
    "MATCH_IOU",
    "Agreement",
    "QuantizeError",
    "QuantizeReport",
    "compare",
    "load_photos",
    "quantize_model",
]

log = logging.getLogger(__name__)

CONFIDENT_SCORE = 0.5
MATCH_IOU = 0.5
IOU_GOAL = 0.85
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SPEED_RUNS = 20

UInt8Array = npt.NDArray[np.uint8]


class QuantizeError(ValueError):
    """The model or the photos cannot give an INT8 variant; the message says why."""


@dataclass(frozen=True)
class Agreement:
    images: int
    confident: int  # float detections with score >= CONFIDENT_SCORE
    matched: int  # of those, with an INT8 detection of the same class at IoU >= MATCH_IOU
    min_iou: float
    mean_iou: float
    max_score_drift: float
    mean_score_drift: float

    @property
    def passes(self) -> bool:
        return self.matched == self.confident and self.min_iou >= IOU_GOAL


@dataclass(frozen=True)
class QuantizeReport:
    model: str
    variant: str
    agreement: Agreement
    float_ms: float  # median session.run, batch 1, this CPU
    int8_ms: float
    calibration_images: int
    onnx_path: Path
    float_bytes: int
    int8_bytes: int

    @property
    def cpu_speedup(self) -> float:
        return self.float_ms / self.int8_ms if self.int8_ms > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "onnxruntime.quantization static QDQ, per-channel, Conv only, MinMax",
            "calibration_images": self.calibration_images,
            "agreement": {
                **asdict(self.agreement),
                "confident_score": CONFIDENT_SCORE,
                "match_iou": MATCH_IOU,
                "iou_goal": IOU_GOAL,
                "passes": self.agreement.passes,
            },
            "speed": {
                "node_cpu_float_ms": round(self.float_ms, 2),
                "node_cpu_int8_ms": round(self.int8_ms, 2),
                "node_cpu_speedup": round(self.cpu_speedup, 2),
            },
        }

    def summary(self) -> str:
        a = self.agreement
        return (
            f"{self.onnx_path}: {self.int8_bytes / 1e6:.1f} MB (float {self.float_bytes / 1e6:.1f}"
            f" MB); {self.cpu_speedup:.2f}x faster on this CPU ({self.float_ms:.1f} -> "
            f"{self.int8_ms:.1f} ms); {a.matched}/{a.confident} confident detections matched on "
            f"{a.images} held-out photos, min IoU {a.min_iou:.3f}, max score drift "
            f"{a.max_score_drift:.3f}: {'passes' if a.passes else 'DOES NOT pass'}"
        )

    def markdown(self) -> str:
        a = self.agreement
        rows = [
            f"# INT8 report: {self.variant}",
            "",
            f"Made by `edgesight model quantize` from `{self.model}` "
            f"({self.calibration_images} calibration photos).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| held-out photos | {a.images} |",
            f"| confident float detections (score >= {CONFIDENT_SCORE}) | {a.confident} |",
            f"| matched by INT8 (same class, IoU >= {MATCH_IOU}) | {a.matched} |",
            f"| matched IoU min / mean | {a.min_iou:.3f} / {a.mean_iou:.3f} |",
            f"| score drift max / mean | {a.max_score_drift:.3f} / {a.mean_score_drift:.3f} |",
            f"| passes (all matched, min IoU >= {IOU_GOAL}) | {a.passes} |",
            f"| session.run float / INT8 on this CPU | {self.float_ms:.1f} / {self.int8_ms:.1f}"
            f" ms ({self.cpu_speedup:.2f}x) |",
            f"| file size float / INT8 | {self.float_bytes / 1e6:.1f} / "
            f"{self.int8_bytes / 1e6:.1f} MB |",
            "",
            "Times are medians of interleaved runs on a shared machine: read the ratio. Speed "
            "in onnxruntime-web (headless Chromium, 1 and 2 threads) is measured by "
            "`bench/int8.py`, see docs/benchmarks.md.",
            "",
        ]
        return "\n".join(rows)


def load_photos(folder: Path, card: ModelCard) -> list[tuple[str, UInt8Array]]:
    """Every photo in ``folder``, letterboxed into the model input as the page does it."""
    from PIL import Image

    if not folder.is_dir():
        raise QuantizeError(f"photo folder not found: {folder}")
    photos = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
            width, height = rgba.size
            data = rgba.tobytes()
        box = Letterbox.for_frame(width, height, card.input_width_px, card.input_height_px)
        tensor = np.frombuffer(bytes(box.fill(data)), np.uint8).reshape(box.shape)
        photos.append((path.name, tensor))
    if not photos:
        raise QuantizeError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return photos


def _detect(session: Any, card: ModelCard, tensor: UInt8Array) -> list[Detection]:
    boxes, scores = session.run(
        [card.boxes_output, card.scores_output], {card.input_name: tensor[None]}
    )
    return select(
        np.ascontiguousarray(boxes[0], "<f4").tobytes(),
        np.ascontiguousarray(scores[0], "<f4").tobytes(),
        len(card.class_names),
        PostprocessSettings(),
    )


def compare(float_dets: list[list[Detection]], int8_dets: list[list[Detection]]) -> Agreement:
    """Agreement of INT8 detections with the float ones, image by image."""
    confident = matched = 0
    ious: list[float] = []
    drifts: list[float] = []
    for reference, candidate in zip(float_dets, int8_dets, strict=True):
        for det in reference:
            if det.score < CONFIDENT_SCORE:
                continue
            confident += 1
            same = [
                (iou(det, other), other) for other in candidate if other.class_id == det.class_id
            ]
            best_iou, best = max(same, key=lambda pair: pair[0], default=(0.0, None))
            if best is None or best_iou < MATCH_IOU:
                continue
            matched += 1
            ious.append(best_iou)
            drifts.append(abs(best.score - det.score))
    return Agreement(
        images=len(float_dets),
        confident=confident,
        matched=matched,
        min_iou=min(ious, default=0.0),
        mean_iou=statistics.fmean(ious) if ious else 0.0,
        max_score_drift=max(drifts, default=0.0),
        mean_score_drift=statistics.fmean(drifts) if drifts else 0.0,
    )


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _speed(sessions: list[Any], card: ModelCard, tensor: UInt8Array) -> list[float]:
    """Median ms per run for each session, runs interleaved so load hits both alike."""
    times: list[list[float]] = [[] for _ in sessions]
    feed = {card.input_name: tensor[None]}
    outputs = [card.boxes_output, card.scores_output]
    for session in sessions:  # warm-up
        session.run(outputs, feed)
    for _ in range(SPEED_RUNS):
        for i, session in enumerate(sessions):
            started = time.perf_counter()
            session.run(outputs, feed)
            times[i].append((time.perf_counter() - started) * 1000.0)
    return [statistics.median(t) for t in times]


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over letterboxed photos."""

    def __init__(self, input_name: str, tensors: list[UInt8Array]) -> None:
        self._feeds = iter([{input_name: t[None]} for t in tensors])

    def get_next(self) -> dict[str, UInt8Array] | None:
        return next(self._feeds, None)


def read_card(model_dir: Path) -> tuple[dict[str, Any], ModelCard, Path]:
    card_path = model_dir / "model.json"
    if not card_path.is_file():
        raise QuantizeError(f"model metadata not found: {card_path}")
    text = card_path.read_text(encoding="utf-8")
    try:
        card = ModelCard.from_json(text)
    except ModelCardError as exc:
        raise QuantizeError(f"{card_path}: {exc}") from exc
    model_path = model_dir / card.file
    if not model_path.is_file():
        raise QuantizeError(f"model file not found: {model_path}")
    data: dict[str, Any] = json.loads(text)
    return data, card, model_path


def quantize_model(
    model_dir: Path,
    calibration_dir: Path,
    out_dir: Path,
    *,
    held_out_dir: Path | None = None,
) -> QuantizeReport:
    data, card, model_path = read_card(model_dir)
    calibration, held_out = _photos(calibration_dir, held_out_dir, card)
    variant = f"{card.name}-int8"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"{variant}.onnx"
    log.info("calibrating on %d photos, holding out %d", len(calibration), len(held_out))
    _quantize(model_path, out_path, card, calibration)
    float_session, int8_session = _session(model_path), _session(out_path)
    agreement = compare(
        [_detect(float_session, card, t) for _, t in held_out],
        [_detect(int8_session, card, t) for _, t in held_out],
    )
    float_ms, int8_ms = _speed([float_session, int8_session], card, held_out[0][1])
    int8_bytes = out_path.read_bytes()
    report = QuantizeReport(
        model=card.name,
        variant=variant,
        agreement=agreement,
        float_ms=float_ms,
        int8_ms=int8_ms,
        calibration_images=len(calibration),
        onnx_path=out_path,
        float_bytes=model_path.stat().st_size,
        int8_bytes=len(int8_bytes),
    )
    variant_card = {
        **data,
        "name": variant,
        "file": out_path.name,
        "sha256": hashlib.sha256(int8_bytes).hexdigest(),
        "provenance": {
            **data.get("provenance", {}),
            "quantized_by": "edgesight model quantize",
            "quantized_from": card.file,
            "quantized_from_sha256": card.sha256,
        },
        "quantization": report.to_json(),
    }
    write_model_card(out_dir, variant_card)
    return report


def _photos(
    calibration_dir: Path, held_out_dir: Path | None, card: ModelCard
) -> tuple[list[UInt8Array], list[tuple[str, UInt8Array]]]:
    """The calibration tensors and the named held-out ones: ``held_out_dir``'s photos, or
    every 5th calibration photo, left out of calibration."""
    photos = load_photos(calibration_dir, card)
    if held_out_dir is not None:
        return [t for _, t in photos], load_photos(held_out_dir, card)
    if len(photos) < 2:
        raise QuantizeError(
            f"{calibration_dir} has {len(photos)} photo; give at least 2 (every 5th is "
            "held out to measure agreement) or --held-out DIR"
        )
    held_out = [p for i, p in enumerate(photos) if i % 5 == 4] or photos[-1:]
    held_names = {name for name, _ in held_out}
    return [t for name, t in photos if name not in held_names], held_out


def _quantize(
    model_path: Path, out_path: Path, card: ModelCard, calibration: list[UInt8Array]
) -> None:
    """Static QDQ, per channel, ``Conv`` only: quantising every op (the in-graph
    normalisation and box decode too) destroyed the output."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    quantize_static(
        str(model_path),
        str(out_path),
        _Calibration(card.input_name, calibration),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
