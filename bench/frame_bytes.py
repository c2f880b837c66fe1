"""Compressed frames (issue 9): bytes per frame, detection parity and node decode time.

For each test photo (tests/parity.py: five scikit-image photos with confident detections),
both as the photo itself and as a 640x480 webcam shows it (4:3, so 416x312 of picture):
the raw FRAME, and the IMAGE message at several JPEG and WebP qualities (Pillow's encoders,
standing in for the browser's). For each: the message size, how many confident detections
(score >= 0.5 on the raw frame) survive at IoU >= 0.9, and the node's decode time
(gpu_backend.decode, one thread). Writes bench/results/frame_bytes.json and a plot.

    .venv/bin/python bench/frame_bytes.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import RESULTS, machine, table, write_result  # noqa: E402

from gpu_backend.decode import Decoder  # noqa: E402
from gpu_backend.engine import OnnxEngine, load_model  # noqa: E402
from pyodide_client.encoding import EncodingSettings  # noqa: E402
from pyodide_client.postprocess import PostprocessSettings, select  # noqa: E402
from pyodide_client.preprocess import Letterbox  # noqa: E402
from pyodide_client.protocol import Detection, Dtype, Frame, FrameEncoding  # noqa: E402
from tests.parity import FRAMINGS, PARITY_PHOTOS, encode_picture, frame_rgba, match  # noqa: E402

log = logging.getLogger("bench.frame_bytes")
MODEL = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"
QUALITIES = (0.3, 0.4, 0.5, 0.6, 0.75, 0.9)
SIZE = 416


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="decodes timed per image")
    parser.add_argument("--out", type=Path, default=RESULTS / "frame_bytes.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    engine = OnnxEngine(MODEL, intra_op_threads=1)
    classes = len(load_model(MODEL).card.class_names)
    decoder = Decoder(SIZE)

    def detect(tensor: np.ndarray) -> list[Detection]:
        boxes, scores = engine.infer(tensor[None])
        return select(
            memoryview(boxes[0]).cast("B"),
            memoryview(scores[0]).cast("B"),
            classes,
            PostprocessSettings(),
        )

    frames: dict[str, tuple[np.ndarray, Letterbox]] = {}
    for name in PARITY_PHOTOS:
        for framing in FRAMINGS:
            rgba, w, h = frame_rgba(name, framing)
            letterbox = Letterbox.for_frame(w, h, SIZE)
            tensor = np.frombuffer(bytes(letterbox.fill(rgba)), np.uint8).reshape(3, SIZE, SIZE)
            frames[f"{name}/{framing}"] = (tensor, letterbox)
    raw_bytes = len(Frame.header_bytes(1, 0.0, Dtype.UINT8, (3, SIZE, SIZE))) + 3 * SIZE * SIZE
    raw_detections = {key: detect(tensor) for key, (tensor, _) in frames.items()}

    rows: list[dict[str, Any]] = []
    for encoding in (FrameEncoding.JPEG, FrameEncoding.WEBP):
        for quality in QUALITIES:
            for framing in FRAMINGS:
                sizes: list[int] = []
                decode_ms: list[float] = []
                confident = matched = 0
                for key, (tensor, letterbox) in frames.items():
                    if not key.endswith(framing):
                        continue
                    image = encode_picture(tensor, letterbox, encoding, quality)
                    sizes.append(len(image.serialize()))
                    decoded = decoder.decode(image)
                    result = match(raw_detections[key], detect(decoded.tensor))
                    confident += result.confident
                    matched += result.matched
                    for _ in range(5):
                        decoder.decode(image)  # warm
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        decoder.decode(image)
                        decode_ms.append((time.perf_counter() - t0) * 1000)
                ordered = sorted(sizes)
                decode_sorted = sorted(decode_ms)
                rows.append(
                    {
                        "encoding": encoding.name.lower(),
                        "quality": quality,
                        "framing": framing,
                        "bytes_mean": round(statistics.fmean(sizes)),
                        "bytes_p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
                        "bytes_max": ordered[-1],
                        "confident": confident,
                        "matched": matched,
                        "decode_p50_ms": round(statistics.median(decode_ms), 3),
                        "decode_p95_ms": round(
                            decode_sorted[
                                min(len(decode_sorted) - 1, int(0.95 * len(decode_sorted)))
                            ],
                            3,
                        ),
                    }
                )
                log.info("%s", rows[-1])
    defaults = EncodingSettings()
    result = {
        "machine": machine(),
        "command": "bench/frame_bytes.py " + " ".join(sys.argv[1:]),
        "photos": list(PARITY_PHOTOS),
        "raw_frame_bytes": raw_bytes,
        "default_quality": {"jpeg": defaults.jpeg_quality, "webp": defaults.webp_quality},
        "parity": "confident (>= 0.5) raw detections found again, same class, IoU >= 0.9",
        "rows": rows,
    }
    write_result(args.out, result)
    print(
        table(
            ["enc", "q", "framing", "mean B", "p95 B", "parity", "decode p50 ms", "p95 ms"],
            [
                [
                    r["encoding"],
                    r["quality"],
                    r["framing"],
                    r["bytes_mean"],
                    r["bytes_p95"],
                    f"{r['matched']}/{r['confident']}",
                    r["decode_p50_ms"],
                    r["decode_p95_ms"],
                ]
                for r in rows
            ],
        )
    )
    plot(result, args.out.with_suffix(".png"))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for encoding, color in (("jpeg", "#1f77b4"), ("webp", "#2ca02c")):
        for framing, style in zip(FRAMINGS, ("-", "--"), strict=True):
            points = [
                r for r in result["rows"] if r["encoding"] == encoding and r["framing"] == framing
            ]
            qualities = [r["quality"] for r in points]
            left.plot(
                qualities,
                [r["bytes_mean"] / 1000 for r in points],
                style,
                color=color,
                marker="o",
                label=f"{encoding}, {framing}",
            )
            right.plot(
                qualities,
                [r["decode_p50_ms"] for r in points],
                style,
                color=color,
                marker="o",
                label=f"{encoding}, {framing}",
            )
    left.axhline(16, color="grey", lw=0.8, ls=":")
    left.text(0.3, 16.5, "goal 16 KB", color="grey", fontsize=8)
    left.set(xlabel="quality", ylabel="KB per frame (mean)", title="IMAGE size (raw: 519 KB)")
    right.axhline(2, color="grey", lw=0.8, ls=":")
    right.set(xlabel="quality", ylabel="ms (p50, one thread)", title="node decode at 416")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log.info("wrote %s", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
