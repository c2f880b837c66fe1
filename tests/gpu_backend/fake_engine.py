"""A fake Engine for batcher and endpoint unit tests: deterministic outputs that encode
which image produced them, an optional gate to hold a batch, and an optional failure."""

from __future__ import annotations

import threading

import numpy as np

from gpu_backend.engine import Float32Array, UInt8Array

ANCHORS = 6
CLASSES = 3


class FakeEngine:
    provider = "FakeExecutionProvider"
    device_name = "fake"

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.gate: threading.Event | None = None  # when set, infer waits for it
        self.entered = threading.Event()  # set when a batch has started
        self.fail_next = False

    def infer(self, images: UInt8Array) -> tuple[Float32Array, Float32Array]:
        self.batch_sizes.append(len(images))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=10), "test never opened the gate"
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("simulated device failure")
        batch = len(images)
        boxes = np.zeros((batch, ANCHORS, 4), np.float32)
        scores = np.zeros((batch, ANCHORS, CLASSES), np.float32)
        marker = images[:, 0, 0, 0].astype(np.float32)  # first pixel identifies the frame
        boxes[:, 0, 0] = marker
        boxes[:, 0, 1] = marker
        boxes[:, 0, 2] = marker + 10
        boxes[:, 0, 3] = marker + 10
        scores[:, 0, 1] = 0.9
        return boxes, scores
