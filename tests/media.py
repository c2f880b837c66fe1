"""Real photos as test media: scikit-image's astronaut (a person, public domain) and
chelsea (a cat, CC0), shaped the way the browser hands frames to Python."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["rgba_photo"]


def rgba_photo(name: str) -> tuple[bytes, int, int]:
    """A scikit-image photo as RGBA bytes, as a browser canvas would hand it over."""
    from skimage import data

    rgb: npt.NDArray[np.uint8] = getattr(data, name)()
    h, w = rgb.shape[:2]
    rgba = np.full((h, w, 4), 255, np.uint8)
    rgba[..., :3] = rgb
    return rgba.tobytes(), w, h
