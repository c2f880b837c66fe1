"""Fake webcams for Chromium: real photos written as YUV4MPEG2 (.y4m) video files.

Chromium plays such a file in a loop as the camera when launched with
``--use-file-for-fake-video-capture``. The photos are scikit-image's public-domain/CC0
``astronaut`` (a person) and ``chelsea`` (a cat), letterboxed onto a black 640x480 frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["fit_frame", "photo", "write_y4m"]

FRAME_WIDTH_PX = 640
FRAME_HEIGHT_PX = 480


def photo(name: str) -> npt.NDArray[np.uint8]:
    """An RGB photo from scikit-image's bundled data (astronaut, chelsea, coffee)."""
    from skimage import data

    image: npt.NDArray[np.uint8] = getattr(data, name)()
    return image


def fit_frame(
    rgb: npt.NDArray[np.uint8], width_px: int = FRAME_WIDTH_PX, height_px: int = FRAME_HEIGHT_PX
) -> npt.NDArray[np.uint8]:
    """Scale a photo to fit a black frame of the given size, centred."""
    h, w = rgb.shape[:2]
    scale = min(width_px / w, height_px / h)
    size = (round(w * scale), round(h * scale))
    scaled = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    frame = np.zeros((height_px, width_px, 3), np.uint8)
    top, left = (height_px - size[1]) // 2, (width_px - size[0]) // 2
    frame[top : top + size[1], left : left + size[0]] = scaled
    return frame


def _to_yuv420(rgb: npt.NDArray[np.uint8]) -> bytes:
    """Full-range BT.601 (JPEG) Y'CbCr with 2x2 chroma averaging: y4m's C420jpeg."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b

    def sub(plane: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        h, w = plane.shape
        return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y, sub(cb), sub(cr)]
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def write_y4m(path: Path, frames: list[npt.NDArray[np.uint8]], fps: int = 30) -> Path:
    """Write RGB frames (all the same even size) as a C420jpeg y4m file."""
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"y4m 4:2:0 needs even frame sizes, got {w}x{h}")
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(_to_yuv420(frame))
    return path
