"""Build the INT8 variant of the default model, ``models/nanodet-g-416/int8/``, and its report.

Calibration and held-out photos are scikit-image's bundled pictures (public domain / CC0;
nothing is downloaded), written to a temporary folder and fed to ``edgesight model quantize``'s
code (edgesight/quantize.py): static QDQ, per-channel, Conv only, MinMax. The held-out set
is photos with COCO objects in them (a person, a cat, a cup, a motorcycle) and their mirror
images; none of them is in the calibration set.

    .venv/bin/python scripts/build_int8.py            # deterministic: same bytes every run

The Wasm speed-up that lets the web app offer the file to the in-browser fallback is measured
separately in headless Chromium (``bench/int8.py --record``) and kept in the variant's
model.json under ``quantization.speed``; this script keeps what is there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesight.model_card_file import write_model_card  # noqa: E402
from edgesight.quantize import quantize_model  # noqa: E402

MODEL_DIR = ROOT / "models" / "nanodet-g-416"
CALIBRATION = (
    "camera", "rocket", "hubble_deep_field", "page", "coins", "immunohistochemistry", "retina",
    "brick", "grass", "moon", "horse", "clock",
)  # fmt: skip
HELD_OUT = ("astronaut", "chelsea", "coffee", "motorcycle_left", "motorcycle_right")


def _picture(name: str) -> np.ndarray:
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        image = left if name.endswith("left") else right
    else:
        image = getattr(data, name)()
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def write_photos(folder: Path, names: tuple[str, ...], mirrored: bool) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for name in names:
        image = _picture(name)
        Image.fromarray(image).save(folder / f"{name}.png")
        if mirrored:
            Image.fromarray(np.ascontiguousarray(image[:, ::-1])).save(folder / f"{name}-m.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=MODEL_DIR / "int8")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "int8-nanodet-g-416.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    card_path = args.out_dir / "model.json"
    kept_speed = {}
    if card_path.is_file():
        recorded = json.loads(card_path.read_text())["quantization"]["speed"]
        kept_speed = {k: v for k, v in recorded.items() if k.startswith(("wasm_", "measured"))}
    with tempfile.TemporaryDirectory() as tmp:
        calibration, held_out = Path(tmp) / "calibration", Path(tmp) / "held-out"
        write_photos(calibration, CALIBRATION, mirrored=False)
        write_photos(held_out, HELD_OUT, mirrored=True)
        report = quantize_model(MODEL_DIR, calibration, args.out_dir, held_out_dir=held_out)
    card = json.loads(card_path.read_text())
    # the Wasm speed-ups come from bench/int8.py --record (a browser run): keep them
    card["quantization"]["speed"] = {**card["quantization"]["speed"], **kept_speed}
    write_model_card(args.out_dir, card)
    args.report.write_text(report.markdown(), encoding="utf-8")
    logging.getLogger("build_int8").info("%s", report.summary())


if __name__ == "__main__":
    main()
