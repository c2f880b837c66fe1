"""A node whose engine does nothing (``--engine null``): every frame is answered at once
with no detections. For benchmarks that measure the link and the frame path rather than
this machine's inference (bench/bandwidth.py); the decoder, batcher, connection policy and
protocol are the product's own. Never a product server.

    .venv/bin/python bench/null_node.py --port 8011
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesight.serving import ServerThread  # noqa: E402
from gpu_backend.app import create_app  # noqa: E402
from gpu_backend.engine import Engine, Float32Array, LoadedModel, UInt8Array  # noqa: E402
from gpu_backend.settings import NodeSettings  # noqa: E402

MODEL = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"


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
    # post-processing takes any anchor count; a few keep its cost negligible
    return NullEngine(anchors=16, classes=len(model.card.class_names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = NodeSettings(port=args.port, model_path=MODEL, node_name="null-node")
    with ServerThread(
        create_app(settings, engine_factory=null_engine),
        port=args.port,
        max_message_bytes=settings.max_message_bytes,
    ):
        threading.Event().wait()  # until the bench terminates this process


if __name__ == "__main__":
    main()
