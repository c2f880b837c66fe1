"""An engine that does nothing: every frame is answered at once with no detections. For
tests and benchmarks that exercise the link and the frame path rather than this machine's
inference (bench/null_node.py, bench/lossy_link.py, tests/netlab); the decoder, batcher,
connection policy and protocol around it are the product's own."""

from __future__ import annotations

import numpy as np

from gpu_backend.engine import Engine, Float32Array, LoadedModel, UInt8Array
from gpu_backend.settings import NodeSettings

__all__ = ["NullEngine", "null_engine"]


class NullEngine:
    provider = "NullExecutionProvider"
    device_name = "none"

    def __init__(self, anchors: int, classes: int) -> None:
        self._anchors = anchors
        self._classes = classes

    def infer(self, images: UInt8Array) -> tuple[Float32Array, Float32Array]:
        batch = len(images)
        return (
            np.zeros((batch, self._anchors, 4), np.float32),
            np.zeros((batch, self._anchors, self._classes), np.float32),
        )


def null_engine(settings: NodeSettings, model: LoadedModel) -> Engine:
    """``create_app``'s engine factory. Post-processing takes any anchor count; a few keep
    its cost negligible."""
    return NullEngine(anchors=16, classes=len(model.card.class_names))
