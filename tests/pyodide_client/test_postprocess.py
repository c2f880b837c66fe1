"""pyodide_client.postprocess against straightforward numpy references: thresholding with
``np.flatnonzero`` and a plain greedy class-aware NMS."""

from __future__ import annotations

import numpy as np
import pytest

from pyodide_client import postprocess
from pyodide_client.postprocess import (
    FrameBox,
    PostprocessSettings,
    iou,
    non_max_suppression,
    scores_above,
    select,
    to_frame,
)
from pyodide_client.preprocess import letterbox_geometry
from pyodide_client.protocol import Detection

# --- scores_above -------------------------------------------------------------------------

SMALLEST_DENORMAL = float(np.nextafter(np.float32(0), np.float32(1)))
SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)


def special_scores(threshold: float) -> list[float]:
    """Values at and around the threshold and at the ends of the float32 range."""
    t32 = np.float32(threshold)
    return [
        float(t32),
        float(np.nextafter(t32, np.float32(0))),
        float(np.nextafter(t32, np.float32(2))),
        0.0,
        -0.0,
        1.0,
        SMALLEST_DENORMAL,
        1e-40,
        SMALLEST_NORMAL,
        float(np.nextafter(np.float32(1), np.float32(0))),
        float("nan"),
        float("inf"),
        -0.5,
    ]


def reference_scores_above(scores: np.ndarray, threshold: float) -> list[tuple[int, float]]:
    # Compare in float64, as the documented ">= threshold" reads for a Python float threshold.
    flat = scores.ravel()
    wide = flat.astype(np.float64)
    return [(int(i), float(wide[i])) for i in np.flatnonzero(wide >= threshold)]


THRESHOLDS = [0.5, 0.35, 0.25, 1.0, 0.999, 1e-3, 1e-40, SMALLEST_DENORMAL, SMALLEST_NORMAL]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_scores_above_matches_flatnonzero(threshold: float) -> None:
    # given random scores with the awkward values sprinkled in at random places
    rng = np.random.default_rng(12345)
    scores = rng.random(5000, dtype=np.float32) ** 3
    specials = np.array(special_scores(threshold) * 20, dtype=np.float32)
    scores[rng.choice(scores.size, size=specials.size, replace=False)] = specials
    # when
    hits = scores_above(scores.tobytes(), threshold)
    # then
    assert hits == reference_scores_above(scores, threshold)


def test_scores_exactly_at_the_threshold_are_included() -> None:
    scores = np.array([0.25, 0.5, 0.49999997, 0.75, 1.0, 0.0], dtype=np.float32)
    assert scores_above(scores.tobytes(), 0.5) == [(1, 0.5), (3, 0.75), (4, 1.0)]


def test_scores_above_with_all_zero_scores_finds_nothing() -> None:
    assert scores_above(bytes(4 * 1000), 1e-40) == []


def test_scores_above_accepts_a_memoryview() -> None:
    scores = np.array([0.1, 0.9, 0.6], dtype=np.float32)
    view = memoryview(scores.tobytes())
    assert scores_above(view, 0.5) == reference_scores_above(scores, 0.5)


def test_scores_above_rejects_a_partial_float() -> None:
    with pytest.raises(ValueError, match="float32 bytes, got 7 bytes"):
        scores_above(bytes(7), 0.5)


# --- iou ----------------------------------------------------------------------------------


def box(x1: float, y1: float, x2: float, y2: float, cls: int = 0, score: float = 0.9) -> Detection:
    return Detection(cls, score, x1, y1, x2, y2)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (box(0, 0, 2, 2), box(1, 1, 3, 3), 1 / 7),  # overlap 1, union 4 + 4 - 1
        (box(0, 0, 2, 2), box(0, 0, 2, 2), 1.0),
        (box(0, 0, 4, 4), box(1, 1, 2, 2), 1 / 16),  # one inside the other
        (box(0, 0, 2, 2), box(2, 0, 4, 2), 0.0),  # touching edges
        (box(0, 0, 2, 2), box(5, 5, 6, 6), 0.0),  # apart
        (box(0, 0, 4, 2), box(2, 0, 6, 2), 4 / 12),  # half of each
        (box(1, 1, 1, 1), box(1, 1, 1, 1), 0.0),  # empty boxes
    ],
)
def test_iou_of_known_boxes(a: Detection, b: Detection, expected: float) -> None:
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


# --- non_max_suppression ------------------------------------------------------------------


def test_nms_suppresses_an_overlapping_box_of_the_same_class() -> None:
    best = box(0, 0, 10, 10, cls=1, score=0.9)
    overlapping = box(1, 1, 11, 11, cls=1, score=0.8)  # iou 81 / 119
    assert non_max_suppression([overlapping, best], 0.5, 100) == [best]


def test_nms_keeps_an_overlapping_box_of_another_class() -> None:
    cat = box(0, 0, 10, 10, cls=1, score=0.9)
    dog = box(1, 1, 11, 11, cls=2, score=0.8)
    assert non_max_suppression([dog, cat], 0.5, 100) == [cat, dog]


def test_nms_drops_a_weaker_label_on_the_same_object() -> None:
    # given a pickup scored car 0.6 by one anchor and truck 0.5 by another, IoU 0.82 (issue 18)
    car = box(0, 0, 100, 100, cls=2, score=0.6)
    truck = box(0, 0, 100, 82, cls=7, score=0.5)
    # when NMS suppresses across classes above 0.7, then the object has one label
    assert non_max_suppression([truck, car], 0.6, 100, 0.7) == [car]
    # and class-aware only (the default), both labels stay
    assert non_max_suppression([truck, car], 0.6, 100) == [car, truck]


def test_nms_keeps_overlapping_objects_of_other_classes_below_the_cross_class_threshold() -> None:
    # given a person on a horse: boxes overlapping by IoU 0.5
    horse = box(0, 0, 100, 100, cls=17, score=0.8)
    person = box(0, 0, 100, 50, cls=0, score=0.7)
    assert non_max_suppression([person, horse], 0.6, 100, 0.7) == [horse, person]


def test_nms_cross_class_threshold_is_exclusive() -> None:
    a = box(0, 0, 2, 2, cls=1, score=0.9)
    b = box(1, 1, 3, 3, cls=2, score=0.8)  # iou exactly 1/7
    assert non_max_suppression([a, b], 0.5, 100, 1 / 7) == [a, b]
    assert non_max_suppression([a, b], 0.5, 100, 1 / 8) == [a]


def test_select_gives_one_object_one_label_across_anchors() -> None:
    # given two anchors on one object: giraffe 0.5 and zebra 0.45, IoU 0.98 (issue 18)
    boxes = np.array([[10, 10, 110, 210], [10, 10, 110, 206]], dtype=np.float32)
    scores = np.array([[0.5, 0.0], [0.0, 0.45]], dtype=np.float32)
    got = select(boxes.tobytes(), scores.tobytes(), 2, PostprocessSettings())
    assert [d.class_id for d in got] == [0]
    # multi_label asks for every label, so it keeps both
    got = select(boxes.tobytes(), scores.tobytes(), 2, PostprocessSettings(multi_label=True))
    assert [d.class_id for d in got] == [0, 1]


def test_nms_keeps_a_box_whose_iou_equals_the_threshold() -> None:
    a = box(0, 0, 2, 2, score=0.9)
    b = box(1, 1, 3, 3, score=0.8)  # iou exactly 1/7
    assert non_max_suppression([a, b], 1 / 7, 100) == [a, b]
    assert non_max_suppression([a, b], 1 / 8, 100) == [a]


def test_nms_suppressed_box_does_not_suppress_others() -> None:
    # a suppresses b; b would suppress c, but b is gone, and a and c barely overlap
    a = box(0, 0, 10, 10, score=0.9)
    b = box(4, 0, 14, 10, score=0.8)  # iou(a, b) = 60 / 140
    c = box(8, 0, 18, 10, score=0.7)  # iou(b, c) = 60 / 140, iou(a, c) = 20 / 180
    assert non_max_suppression([c, b, a], 0.3, 100) == [a, c]


def test_nms_orders_by_score_and_caps_at_max_detections() -> None:
    scores = [0.4, 0.9, 0.1, 0.7, 0.8, 0.3]
    far_apart = [box(20 * i, 0, 20 * i + 10, 10, cls=i % 3, score=s) for i, s in enumerate(scores)]
    capped = non_max_suppression(far_apart, 0.5, 4)
    assert [d.score for d in capped] == [0.9, 0.8, 0.7, 0.4]
    everything = non_max_suppression(far_apart, 0.5, 100)
    assert [d.score for d in everything] == [0.9, 0.8, 0.7, 0.4, 0.3, 0.1]


def test_nms_of_nothing() -> None:
    assert non_max_suppression([], 0.5, 10) == []


# --- select -------------------------------------------------------------------------------


def reference_select(
    boxes: np.ndarray, scores: np.ndarray, settings: PostprocessSettings
) -> list[Detection]:
    num_classes = scores.shape[1]
    flat = scores.ravel().astype(np.float64)
    candidates = np.flatnonzero(flat >= settings.score_threshold)
    if not settings.multi_label:  # argmax per anchor (the first class on a tie)
        best = np.argmax(np.nan_to_num(scores.astype(np.float64), nan=-1.0), axis=1)
        candidates = candidates[candidates % num_classes == best[candidates // num_classes]]
    order = candidates[np.argsort(-flat[candidates], kind="stable")]
    order = order[: settings.max_candidates]
    wide = boxes.astype(np.float64)
    kept: list[int] = []
    for flat_index in order:
        anchor, cls = divmod(int(flat_index), num_classes)
        x1, y1, x2, y2 = wide[anchor]
        suppressed = False
        cross_class = 1.0 if settings.multi_label else settings.cross_class_iou_threshold
        for other in kept:
            other_anchor, other_cls = divmod(other, num_classes)
            limit = settings.iou_threshold if other_cls == cls else cross_class
            ox1, oy1, ox2, oy2 = wide[other_anchor]
            iw = min(x2, ox2) - max(x1, ox1)
            ih = min(y2, oy2) - max(y1, oy1)
            if iw <= 0 or ih <= 0:
                continue
            inter = iw * ih
            union = (x2 - x1) * (y2 - y1) + (ox2 - ox1) * (oy2 - oy1) - inter
            if inter / union > limit:
                suppressed = True
                break
        if not suppressed:
            kept.append(int(flat_index))
            if len(kept) == settings.max_detections:
                break
    out = []
    for flat_index in kept:
        anchor, cls = divmod(flat_index, num_classes)
        x1, y1, x2, y2 = (float(v) for v in boxes[anchor])
        out.append(Detection(cls, float(flat[flat_index]), x1, y1, x2, y2))
    return out


def random_outputs(seed: int, anchors: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes bunched around a few centres so that NMS has overlaps to resolve."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(40, 376, size=(6, 2))
    centre = centres[rng.integers(0, len(centres), size=anchors)] + rng.normal(0, 6, (anchors, 2))
    size = rng.uniform(20, 80, size=(anchors, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    scores = (rng.random((anchors, classes)) ** 4).astype(np.float32)
    return boxes, scores


SELECT_CASES = [
    (0, PostprocessSettings()),
    (1, PostprocessSettings(score_threshold=0.5, iou_threshold=0.3)),
    (2, PostprocessSettings(max_candidates=40)),
    (3, PostprocessSettings(max_detections=5)),
    (4, PostprocessSettings(score_threshold=0.1, iou_threshold=0.9, max_candidates=300)),
    (5, PostprocessSettings(score_threshold=0.9, iou_threshold=1.0)),  # nothing suppressed
    (6, PostprocessSettings(multi_label=True)),
    (7, PostprocessSettings(score_threshold=0.1, multi_label=True, max_candidates=50)),
    (8, PostprocessSettings(score_threshold=0.1, cross_class_iou_threshold=0.4)),
    (9, PostprocessSettings(score_threshold=0.1, cross_class_iou_threshold=1.0)),
]


@pytest.mark.parametrize(("seed", "settings"), SELECT_CASES, ids=[str(c[0]) for c in SELECT_CASES])
def test_select_matches_reference(seed: int, settings: PostprocessSettings) -> None:
    # given raw model outputs for one image
    boxes, scores = random_outputs(seed, anchors=400, classes=5)
    # when
    got = select(boxes.tobytes(), scores.tobytes(), 5, settings)
    # then
    expected = reference_select(boxes, scores, settings)
    assert got == expected
    assert len(got) <= settings.max_detections
    assert [d.score for d in got] == sorted((d.score for d in got), reverse=True)


def test_select_keeps_only_the_best_candidates_before_nms() -> None:
    # given three far-apart anchors scoring 0.9, 0.6 and 0.8 in class 1
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]], dtype=np.float32)
    scores = np.array([[0, 0.9], [0, 0.6], [0, 0.8]], dtype=np.float32)
    settings = PostprocessSettings(score_threshold=0.5, max_candidates=2)
    # when
    got = select(memoryview(boxes.tobytes()), memoryview(scores.tobytes()), 2, settings)
    # then the 0.6 candidate never reached NMS
    assert got == [
        Detection(1, float(np.float32(0.9)), 0.0, 0.0, 10.0, 10.0),
        Detection(1, float(np.float32(0.8)), 100.0, 0.0, 110.0, 10.0),
    ]


def test_select_gives_one_box_one_class() -> None:
    # given one anchor scoring dog 0.59 and cow 0.39 (the photo in issue 10)
    boxes = np.array([[10, 10, 200, 200]], dtype=np.float32)
    scores = np.array([[0.0, 0.39, 0.59]], dtype=np.float32)  # classes: -, cow, dog
    # when
    got = select(boxes.tobytes(), scores.tobytes(), 3, PostprocessSettings())
    # then the box is a dog, once
    assert [(d.class_id, round(d.score, 2)) for d in got] == [(2, 0.59)]


def test_select_multi_label_keeps_every_class_of_a_box() -> None:
    boxes = np.array([[10, 10, 200, 200]], dtype=np.float32)
    scores = np.array([[0.0, 0.39, 0.59]], dtype=np.float32)
    settings = PostprocessSettings(multi_label=True)
    got = select(boxes.tobytes(), scores.tobytes(), 3, settings)
    assert [d.class_id for d in got] == [2, 1]


def test_best_per_anchor_keeps_the_first_class_on_a_tie() -> None:
    # anchor 0: classes 1 and 2 tie; anchor 1: class 2 wins
    hits = [(1, 0.5), (2, 0.5), (4, 0.4), (5, 0.7)]
    assert postprocess.best_per_anchor(hits, 3) == [(1, 0.5), (5, 0.7)]


def test_select_with_no_anchors() -> None:
    assert select(b"", b"", 80, PostprocessSettings()) == []


@pytest.mark.parametrize(
    ("boxes_bytes", "scores_bytes"),
    [(16 * 3, 4 * 5 * 2), (16 * 3 + 4, 4 * 5 * 3), (16 * 3, 4 * 5 * 3 + 4)],
    ids=["fewer-scores", "ragged-boxes", "extra-score"],
)
def test_select_rejects_mismatched_outputs(boxes_bytes: int, scores_bytes: int) -> None:
    with pytest.raises(ValueError, match=rf"got {boxes_bytes} and {scores_bytes} bytes"):
        select(bytes(boxes_bytes), bytes(scores_bytes), 5, PostprocessSettings())


# --- to_frame -----------------------------------------------------------------------------

GEOMETRY = letterbox_geometry(640, 480, 416)  # scale 0.65, image rows 52..364 of the input


def test_to_frame_maps_boxes_to_frame_pixels() -> None:
    detections = [
        Detection(0, 0.9, 0.0, 52.0, 208.0, 208.0),
        Detection(1, 0.8, 65.0, 117.0, 130.0, 364.0),
    ]
    boxes = to_frame(detections, GEOMETRY, ["person", "bicycle"])
    assert [(b.label, b.class_id, b.score) for b in boxes] == [
        ("person", 0, 0.9),
        ("bicycle", 1, 0.8),
    ]
    assert (boxes[0].x1, boxes[0].y1, boxes[0].x2, boxes[0].y2) == pytest.approx(
        (0.0, 0.0, 320.0, 240.0)
    )
    assert (boxes[1].x1, boxes[1].y1, boxes[1].x2, boxes[1].y2) == pytest.approx(
        (100.0, 100.0, 200.0, 480.0)
    )


def test_to_frame_clips_a_box_reaching_into_the_padding() -> None:
    [clipped] = to_frame([Detection(0, 0.5, -20.0, 26.0, 65.0, 117.0)], GEOMETRY, ["a"])
    assert (clipped.x1, clipped.y1, clipped.x2, clipped.y2) == pytest.approx(
        (0.0, 0.0, 100.0, 100.0)
    )


@pytest.mark.parametrize(
    "padding_box",
    [
        (10.0, 0.0, 100.0, 40.0),  # in the top band
        (10.0, 370.0, 100.0, 416.0),  # in the bottom band
        (10.0, 0.0, 100.0, 52.0),  # touching the image's top edge only
    ],
)
def test_to_frame_drops_boxes_entirely_in_the_padding(
    padding_box: tuple[float, float, float, float],
) -> None:
    inside = Detection(0, 0.9, 65.0, 117.0, 130.0, 182.0)
    boxes = to_frame([Detection(0, 0.95, *padding_box), inside], GEOMETRY, ["a"])
    assert [b.score for b in boxes] == [0.9]


def test_to_frame_drops_degenerate_boxes() -> None:
    assert to_frame([Detection(0, 0.9, 100.0, 100.0, 100.0, 200.0)], GEOMETRY, ["a"]) == []


def test_to_frame_names_unknown_classes_by_number() -> None:
    [frame_box] = to_frame([Detection(7, 0.9, 65.0, 117.0, 130.0, 182.0)], GEOMETRY, ["a"])
    assert frame_box == FrameBox(
        "class 7", 7, 0.9, frame_box.x1, frame_box.y1, frame_box.x2, frame_box.y2
    )


# --- settings -----------------------------------------------------------------------------


def test_settings_defaults_are_valid() -> None:
    settings = PostprocessSettings()
    assert 0 < settings.score_threshold <= 1
    assert 0 < settings.iou_threshold <= 1


def test_settings_accept_the_inclusive_upper_bounds() -> None:
    PostprocessSettings(score_threshold=1.0, iou_threshold=1.0, max_candidates=1, max_detections=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"score_threshold": 0.0}, "score_threshold must be in (0, 1], got 0.0"),
        ({"score_threshold": 1.5}, "score_threshold must be in (0, 1], got 1.5"),
        ({"score_threshold": -0.1}, "score_threshold must be in (0, 1], got -0.1"),
        ({"iou_threshold": 0.0}, "iou_threshold must be in (0, 1], got 0.0"),
        ({"iou_threshold": 2.0}, "iou_threshold must be in (0, 1], got 2.0"),
        (
            {"cross_class_iou_threshold": 0.0},
            "cross_class_iou_threshold must be in (0, 1], got 0.0",
        ),
        ({"max_candidates": 0}, "max_candidates and max_detections must be at least 1"),
        ({"max_detections": 0}, "max_candidates and max_detections must be at least 1"),
    ],
)
def test_settings_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match="must be") as info:
        PostprocessSettings(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_all_names_exist() -> None:
    for name in postprocess.__all__:
        assert hasattr(postprocess, name), name
