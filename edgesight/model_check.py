"""The self-check an imported (or quantised) product model must pass before it is written:
it loads in onnxruntime, its outputs have the contract's shapes, its boxes are finite, and a
batch of N gives what N runs of one give (when the batch is free)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .model_errors import ModelImportError

__all__ = ["self_check"]

BATCH_N = 3
ATOL = 1e-3


def self_check(
    model_bytes: bytes, hw: tuple[int, int], num_classes: int, *, is_batch_free: bool
) -> dict[str, Any]:
    """Returns {"anchors": A, "batch_checked": N}; raises ModelImportError saying what failed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelImportError(f"onnxruntime cannot load the wrapped model: {exc}") from exc
    rng = np.random.default_rng(0)
    height, width = hw
    batch = rng.integers(0, 256, size=(BATCH_N, 3, height, width), dtype=np.uint8)

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            boxes, scores = session.run(["boxes", "scores"], {"images": images})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelImportError(f"a dry run with batch {len(images)} failed: {exc}") from exc
        return np.asarray(boxes), np.asarray(scores)

    singles = [run(batch[i : i + 1]) for i in range(BATCH_N)]
    boxes, scores = singles[0]
    anchors = boxes.shape[1] if boxes.ndim == 3 else -1
    if boxes.shape != (1, anchors, 4) or scores.shape != (1, anchors, num_classes):
        raise ModelImportError(
            f"outputs have shapes boxes {list(boxes.shape)}, scores {list(scores.shape)}; "
            f"expected [1, A, 4] and [1, A, {num_classes}]"
        )
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ModelImportError("a dry run gave non-finite boxes or scores")
    report: dict[str, Any] = {"anchors": anchors, "batch_checked": 1}
    if is_batch_free:
        many_boxes, many_scores = run(batch)
        for i, (one_boxes, one_scores) in enumerate(singles):
            if not (
                np.allclose(many_boxes[i], one_boxes[0], atol=ATOL, rtol=1e-4)
                and np.allclose(many_scores[i], one_scores[0], atol=ATOL, rtol=1e-4)
            ):
                raise ModelImportError(
                    f"image {i} of a batch of {BATCH_N} differs from the same image alone"
                )
        report["batch_checked"] = BATCH_N
    return report
