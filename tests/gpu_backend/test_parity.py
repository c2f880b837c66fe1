"""Compressed frames keep the detections (issue 9): on the project's test photos, as
themselves and as a 640x480 webcam shows them, every confident detection of the raw frame
(score >= 0.5) is found again, same class and IoU >= 0.9, on the JPEG and on the WebP frame
at the default quality. See tests/parity.py for the photos and why parity is defined on
confident detections."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from gpu_backend.engine import OnnxEngine, load_model
from pyodide_client.encoding import EncodingSettings
from pyodide_client.postprocess import PostprocessSettings, select
from pyodide_client.protocol import Detection, FrameEncoding
from tests.conftest import MODEL_PATH
from tests.parity import (
    CONFIDENT,
    FRAMINGS,
    PARITY_IOU,
    PARITY_PHOTOS,
    compressed_input,
    match,
    raw_input,
)

Detect = Callable[[npt.NDArray[np.uint8]], list[Detection]]

# Parity asks whether compression loses a detection, not which of two near-tied labels of
# one object the page shows: so no cross-class suppression here (issue 18 added it for
# what is shown). With it, chelsea framed as a webcam shows "dog 0.42" on the WebP frame
# where the raw frame shows "cat 0.59": the WebP frame scores cat 0.40 and dog 0.42 on the
# same box, and before issue 18 the page drew both labels.
PARITY_POSTPROCESS = PostprocessSettings(cross_class_iou_threshold=1.0)


@pytest.fixture(scope="module")
def detect() -> Detect:
    engine = OnnxEngine(MODEL_PATH, intra_op_threads=1)
    classes = len(load_model(MODEL_PATH).card.class_names)

    def run(tensor: npt.NDArray[np.uint8]) -> list[Detection]:
        boxes, scores = engine.infer(tensor[None])
        return select(
            memoryview(boxes[0]).cast("B"),
            memoryview(scores[0]).cast("B"),
            classes,
            PARITY_POSTPROCESS,
        )

    return run


@pytest.mark.parametrize("encoding", [FrameEncoding.JPEG, FrameEncoding.WEBP])
@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("photo", PARITY_PHOTOS)
def test_confident_detections_survive_compression_at_the_default_quality(
    detect: Detect, photo: str, framing: str, encoding: FrameEncoding
) -> None:
    raw, letterbox = raw_input(photo, framing)
    quality = EncodingSettings().default_quality(encoding)
    compressed, size_bytes = compressed_input(raw, letterbox, encoding, quality)
    raw_detections = detect(raw)
    result = match(raw_detections, detect(compressed))
    if framing == "photo":  # smaller in a webcam frame, coffee's table and coins' bowls
        assert result.confident >= 1, f"{photo}: nothing scores {CONFIDENT} on the raw frame"
    assert result.matched == result.confident, (
        f"{photo} ({framing}) as {encoding.name} at quality {quality} ({size_bytes} bytes): "
        f"{result.matched} of {result.confident} confident detections matched at IoU "
        f">= {PARITY_IOU}; the worst best-IoU was {result.worst_iou:.3f}"
    )
