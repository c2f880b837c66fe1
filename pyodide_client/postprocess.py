"""Post-processing: raw model outputs -> thresholded, class-aware NMS'd detections, and the
mapping of boxes from model-input pixels back to frame pixels.

The model returns, per image, ``boxes`` float32 [A, 4] (x1, y1, x2, y2 in input pixels) and
``scores`` float32 [A, C] (sigmoid quality scores in [0, 1]). The node and the browser's
local fallback both call ``select``; it uses the standard library only and finds the few
scores above the threshold with C-level bytes operations, not a loop over A * C floats.

One box is one object: each anchor keeps only its best class (argmax per anchor, as
NanoDet's and YOLO's reference post-processing do), then class-aware NMS runs. Otherwise a
box whose anchor scores "dog 0.59" and "cow 0.39" is reported twice, with two labels on the
same rectangle (issue 10). ``multi_label=True`` keeps every class above the threshold.

Different anchors can still put two classes on one object (car + truck on one pickup at IoU
0.82, giraffe + zebra at 0.96, issue 18): after class-aware NMS at ``iou_threshold``, a box
is also suppressed by any higher-scoring box of another class it overlaps by more than
``cross_class_iou_threshold`` (0.7 by default). Two different objects rarely overlap that
much (a person on a horse, a cup on a table overlap far less), one object seen twice almost
always does. ``multi_label=True`` turns this off too: it asks for every label.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .preprocess import Geometry
from .protocol import Detection

__all__ = [
    "FrameBox",
    "PostprocessSettings",
    "best_per_anchor",
    "iou",
    "non_max_suppression",
    "scores_above",
    "select",
    "to_frame",
]

_FLOAT32 = struct.Struct("<f")
_BOX = struct.Struct("<4f")


@dataclass(frozen=True)
class PostprocessSettings:
    score_threshold: float = 0.35
    iou_threshold: float = 0.6
    max_candidates: int = 1000
    max_detections: int = 100
    # A box overlapping a better box of another class by more than this is the same object
    # labelled twice and is dropped (issue 18); 1.0 keeps every class-distinct box.
    cross_class_iou_threshold: float = 0.7
    multi_label: bool = False  # keep every class above the threshold, not only the best

    def __post_init__(self) -> None:
        if not 0.0 < self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in (0, 1], got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if not 0.0 < self.cross_class_iou_threshold <= 1.0:
            raise ValueError(
                f"cross_class_iou_threshold must be in (0, 1], got {self.cross_class_iou_threshold}"
            )
        if self.max_candidates < 1 or self.max_detections < 1:
            raise ValueError("max_candidates and max_detections must be at least 1")


@dataclass(frozen=True)
class FrameBox:
    """A detection in frame pixels, with its label: what the overlay draws."""

    label: str
    class_id: int
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


def _high_byte_table(threshold: float) -> bytes:
    # Non-negative IEEE-754 floats order like their bit patterns, so the top byte of a
    # little-endian float32 is a monotone coarse key: every score >= threshold has a top
    # byte >= the threshold's. Scores are sigmoid outputs, never negative.
    (bits,) = struct.unpack("<I", _FLOAT32.pack(threshold))
    floor = bits >> 24
    return bytes(1 if floor <= b < 0x80 else 0 for b in range(256))


def scores_above(
    scores: bytes | bytearray | memoryview, threshold: float
) -> list[tuple[int, float]]:
    """(flat index, score) of every little-endian float32 in ``scores`` >= threshold."""
    data = bytes(scores) if not isinstance(scores, bytes) else scores
    if len(data) % 4:
        raise ValueError(f"scores must be float32 bytes, got {len(data)} bytes")
    mask = data[3::4].translate(_high_byte_table(threshold))
    hits: list[tuple[int, float]] = []
    pos = mask.find(1)
    while pos != -1:
        (value,) = _FLOAT32.unpack_from(data, pos * 4)
        if value >= threshold:
            hits.append((pos, value))
        pos = mask.find(1, pos + 1)
    return hits


def best_per_anchor(hits: list[tuple[int, float]], num_classes: int) -> list[tuple[int, float]]:
    """Of ``scores_above``'s (flat index, score) hits, the best class of each anchor; the
    lowest class index wins a tie. Every anchor's true best class is among the hits when
    it reaches the threshold, so this equals argmax-then-threshold."""
    best: dict[int, tuple[int, float]] = {}
    for flat, score in hits:  # in flat-index order, so a tie keeps the first class
        anchor = flat // num_classes
        kept = best.get(anchor)
        if kept is None or score > kept[1]:
            best[anchor] = (flat, score)
    return list(best.values())


def iou(a: Detection, b: Detection) -> float:
    ix = min(a.x2, b.x2) - max(a.x1, b.x1)
    iy = min(a.y2, b.y2) - max(a.y1, b.y1)
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def non_max_suppression(
    candidates: Iterable[Detection],
    iou_threshold: float,
    max_detections: int,
    cross_class_iou_threshold: float = 1.0,
) -> list[Detection]:
    """Greedy NMS, best score first: a box is suppressed by a kept box of its class that it
    overlaps by more than ``iou_threshold``, or by a kept box of another class that it
    overlaps by more than ``cross_class_iou_threshold`` (1.0, the default: class-aware only)."""
    kept: list[Detection] = []
    by_class: dict[int, list[Detection]] = {}
    for det in sorted(candidates, key=lambda d: d.score, reverse=True):
        same_class = by_class.setdefault(det.class_id, [])
        if any(iou(det, other) > iou_threshold for other in same_class):
            continue
        if cross_class_iou_threshold < 1.0 and any(
            iou(det, other) > cross_class_iou_threshold
            for other in kept
            if other.class_id != det.class_id
        ):
            continue
        same_class.append(det)
        kept.append(det)
        if len(kept) >= max_detections:
            break
    return kept


def select(
    boxes: bytes | bytearray | memoryview,
    scores: bytes | bytearray | memoryview,
    num_classes: int,
    settings: PostprocessSettings,
) -> list[Detection]:
    """Detections of one image from its raw ``boxes`` [A,4] and ``scores`` [A,C] float32
    bytes (little-endian, C order), in model-input pixels, best first."""
    anchors = len(boxes) // 16
    if len(boxes) != anchors * 16 or len(scores) != anchors * num_classes * 4:
        raise ValueError(
            f"expected boxes of {anchors}x4 and scores of {anchors}x{num_classes} float32, "
            f"got {len(boxes)} and {len(scores)} bytes"
        )
    hits = scores_above(scores, settings.score_threshold)
    if not settings.multi_label:
        hits = best_per_anchor(hits, num_classes)
    if len(hits) > settings.max_candidates:
        hits.sort(key=lambda hit: hit[1], reverse=True)
        del hits[settings.max_candidates :]
    candidates = []
    for flat, score in hits:
        anchor, class_id = divmod(flat, num_classes)
        x1, y1, x2, y2 = _BOX.unpack_from(boxes, anchor * 16)
        candidates.append(Detection(class_id, score, x1, y1, x2, y2))
    cross_class = 1.0 if settings.multi_label else settings.cross_class_iou_threshold
    return non_max_suppression(
        candidates, settings.iou_threshold, settings.max_detections, cross_class
    )


def to_frame(
    detections: Sequence[Detection], geometry: Geometry, class_names: Sequence[str]
) -> list[FrameBox]:
    """Map detections from model-input pixels to frame pixels; drop boxes left empty."""
    out = []
    for det in detections:
        x1, y1 = geometry.to_frame(det.x1, det.y1)
        x2, y2 = geometry.to_frame(det.x2, det.y2)
        if x2 <= x1 or y2 <= y1:
            continue
        label = (
            class_names[det.class_id]
            if 0 <= det.class_id < len(class_names)
            else f"class {det.class_id}"
        )
        out.append(FrameBox(label, det.class_id, det.score, x1, y1, x2, y2))
    return out
