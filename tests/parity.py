"""Detection parity between raw and compressed frames (issue 9), shared by
tests/gpu_backend/test_parity.py and bench/frame_bytes.py.

A photo, as itself or as a 640x480 webcam shows it (fitted onto black, like the e2e tests'
fake camera: a 4:3 frame is 416x312 of picture), is letterboxed the way the page does it
for raw frames (pyodide_client.preprocess);
its picture area (no padding) is then encoded as JPEG or WebP with Pillow and decoded by the
node's decoder (gpu_backend.decode), and both model inputs go through the real model.

Parity is defined on confident detections, because low-score ones flicker between any two
slightly different inputs (NOTES.md: matching every detection >= 0.35 at IoU 0.9 kept only
16-20 of 26 at any quality): every detection scoring >= ``CONFIDENT`` on the raw frame must
have a detection of the same class with IoU >= ``PARITY_IOU`` on the compressed frame (at
the node's usual 0.35 threshold).
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gpu_backend.decode import Decoder
from pyodide_client.preprocess import Letterbox
from pyodide_client.protocol import Detection, FrameEncoding, Image

__all__ = [
    "CONFIDENT",
    "FRAMINGS",
    "PARITY_IOU",
    "PARITY_PHOTOS",
    "Match",
    "compressed_input",
    "frame_rgba",
    "iou",
    "match",
    "raw_input",
]

# scikit-image photos in which the product model finds something with score >= 0.5:
# a person (astronaut, camera), a cat (chelsea), a dining table (coffee), four bowls (coins)
PARITY_PHOTOS = ("astronaut", "chelsea", "coffee", "camera", "coins")
CONFIDENT = 0.5
PARITY_IOU = 0.9
SIZE = 416
FRAMINGS = ("photo", "webcam")
ROOT = Path(__file__).resolve().parents[1]
_FORMATS = {FrameEncoding.JPEG: "JPEG", FrameEncoding.WEBP: "WEBP"}

UInt8Array = npt.NDArray[np.uint8]


def photo_rgba(name: str) -> tuple[bytes, int, int]:
    from skimage import data

    rgb: UInt8Array = getattr(data, name)()
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    h, w = rgb.shape[:2]
    rgba = np.full((h, w, 4), 255, np.uint8)
    rgba[..., :3] = rgb[..., :3]
    return rgba.tobytes(), w, h


def webcam_rgba(name: str) -> tuple[bytes, int, int]:
    """The photo as a 640x480 camera shows it (fitted onto black, as the e2e fake camera)."""
    sys.path.insert(0, str(ROOT / "playwright"))
    from fake_camera import fit_frame, photo

    picture = photo(name)
    if picture.ndim == 2:  # "camera" is greyscale
        picture = np.stack([picture] * 3, axis=-1)
    rgb = fit_frame(picture, 640, 480)
    rgba = np.full((480, 640, 4), 255, np.uint8)
    rgba[..., :3] = rgb
    return rgba.tobytes(), 640, 480


def frame_rgba(name: str, framing: str) -> tuple[bytes, int, int]:
    """``framing`` "photo" (the photo at its own size) or "webcam" (640x480)."""
    return photo_rgba(name) if framing == "photo" else webcam_rgba(name)


def raw_input(name: str, framing: str = "photo") -> tuple[UInt8Array, Letterbox]:
    """The raw frame's model input, as the page builds it, and its letterbox."""
    rgba, w, h = frame_rgba(name, framing)
    letterbox = Letterbox.for_frame(w, h, SIZE)
    tensor = np.frombuffer(bytes(letterbox.fill(rgba)), np.uint8).reshape(3, SIZE, SIZE)
    return tensor, letterbox


def encode_picture(
    tensor: UInt8Array, letterbox: Letterbox, encoding: FrameEncoding, quality: float
) -> Image:
    """The IMAGE message a page would send for this frame: its picture area only."""
    from PIL import Image as PILImage

    g = letterbox.geometry
    area = tensor[:, g.top_px : g.top_px + g.scaled_height_px]
    area = area[:, :, g.left_px : g.left_px + g.scaled_width_px]
    out = io.BytesIO()
    picture = PILImage.fromarray(np.ascontiguousarray(area.transpose(1, 2, 0)))
    picture.save(out, _FORMATS[encoding], quality=round(quality * 100))
    return Image(
        1,
        0.0,
        encoding,
        g.scaled_width_px,
        g.scaled_height_px,
        g.left_px,
        g.top_px,
        out.getvalue(),
    )


def compressed_input(
    tensor: UInt8Array, letterbox: Letterbox, encoding: FrameEncoding, quality: float
) -> tuple[UInt8Array, int]:
    """The model input the node decodes from the compressed frame, and the IMAGE's size."""
    image = encode_picture(tensor, letterbox, encoding, quality)
    decoded = Decoder(SIZE).decode(image)
    return decoded.tensor, len(image.serialize())


def iou(a: Detection, b: Detection) -> float:
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = w * h
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Match:
    confident: int  # raw detections scoring >= CONFIDENT
    matched: int  # of those, found again on the compressed frame
    worst_iou: float  # the lowest best-IoU among the confident ones (1.0 with none)


def match(raw: list[Detection], compressed: list[Detection]) -> Match:
    confident = [d for d in raw if d.score >= CONFIDENT]
    matched = 0
    worst = 1.0
    for d in confident:
        best = max((iou(d, c) for c in compressed if c.class_id == d.class_id), default=0.0)
        worst = min(worst, best)
        matched += best >= PARITY_IOU
    return Match(len(confident), matched, worst)
