"""Compressed frames (IMAGE messages, issue 9) -> the letterboxed uint8 CHW model input.

JPEG goes through simplejpeg (libjpeg-turbo; about half Pillow's time at 416, see
docs/benchmarks.md), WebP through Pillow. The picture's size is read from the image header
and checked before a single pixel is decoded, so a small message that claims 60000 x 60000
pixels (a decompression bomb) costs microseconds and an IMAGE_TOO_LARGE, never a gigabyte
allocation.

A JPEG's cost also grows with its number of scans: libjpeg-turbo makes a pass over the
whole picture for each, so a valid progressive JPEG of 170,000 twelve-byte scans cost 3.6 s
of CPU (issue 17). Before decoding, the SOS markers are counted (a search over the payload,
no copy: every scan starts with the bytes FF DA, which entropy-coded data never holds,
so the count is an upper bound) and a frame of more than ``max_jpeg_scans`` is refused
with IMAGE_INVALID. Sharing decode time fairly between connections is ``decode_queue``'s.

``Decoder.decode`` is blocking: the node calls it on a worker thread of its own (both
decoders release the GIL while they work), not on the event loop and not on the inference
thread, so decoding overlaps the running batch. Every refusal is a ``ProtocolError`` that
names the frame, what was expected and what came; it is sent back as an ERROR and the
connection stays open.
"""

from __future__ import annotations

import io
import re
import time
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image as PILImage

from pyodide_client.preprocess import PAD_VALUE
from pyodide_client.protocol import ErrorCode, FrameEncoding, Image, ProtocolError

__all__ = ["MAX_JPEG_SCANS", "DecodedImage", "Decoder"]

# A baseline JPEG has 1 scan (3 when not interleaved), libjpeg's progressive script 10.
MAX_JPEG_SCANS = 32
_SOS = re.compile(b"\xff\xda")
# What a decoder's message may say of Python objects ("<_io.BytesIO object at 0x7f...>"):
# nothing a client should read (issue 17: a WebP error showed an object's address).
_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")

UInt8Array = npt.NDArray[np.uint8]

# Pillow's own bomb guard warns, then raises, far above anything a model input needs; the
# size check below refuses earlier. Its warning would only be noise in the node's log.
_PIL_ERRORS = (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError)


@dataclass(frozen=True)
class DecodedImage:
    tensor: UInt8Array  # [3, H, W], the picture at its place and PAD_VALUE around it
    decode_ms: float


class Decoder:
    """Decodes IMAGE payloads for one model input size (the HELLO's [3, H, W]); the
    height defaults to the width (a square input)."""

    def __init__(
        self,
        input_width_px: int,
        input_height_px: int | None = None,
        pad_value: int = PAD_VALUE,
        max_jpeg_scans: int = MAX_JPEG_SCANS,
    ) -> None:
        height = input_width_px if input_height_px is None else input_height_px
        if input_width_px <= 0 or height <= 0:
            raise ValueError(f"input size must be positive, got {input_width_px}x{height}")
        if max_jpeg_scans < 1:
            raise ValueError(f"max_jpeg_scans must be at least 1, got {max_jpeg_scans}")
        self.input_width_px = input_width_px
        self.input_height_px = height
        self.pad_value = pad_value
        self.max_jpeg_scans = max_jpeg_scans

    def decode(self, image: Image) -> DecodedImage:
        """The frame's model input; raises ProtocolError (IMAGE_INVALID, IMAGE_TOO_LARGE)."""
        started_s = time.perf_counter()
        image.check(self.input_width_px, self.input_height_px)
        payload = image.payload
        if image.encoding is FrameEncoding.JPEG:
            pixels = self._jpeg(image, payload)
        else:
            pixels = self._webp(image, payload)
        tensor = np.empty((3, self.input_height_px, self.input_width_px), np.uint8)
        self._pad(tensor, image)
        # HWC -> CHW: the one copy, straight into the model input
        area = tensor[:, image.top_px : image.top_px + image.height_px]
        area[:, :, image.left_px : image.left_px + image.width_px] = pixels.transpose(2, 0, 1)
        return DecodedImage(tensor, (time.perf_counter() - started_s) * 1000.0)

    def _pad(self, tensor: UInt8Array, image: Image) -> None:
        """Fill only what the picture does not cover (a 4:3 frame: two bands)."""
        top, bottom = image.top_px, image.top_px + image.height_px
        left, right = image.left_px, image.left_px + image.width_px
        pad = self.pad_value
        tensor[:, :top] = pad
        tensor[:, bottom:] = pad
        tensor[:, top:bottom, :left] = pad
        tensor[:, top:bottom, right:] = pad

    def _check_size(self, image: Image, kind: str, width: int, height: int) -> None:
        in_w, in_h = self.input_width_px, self.input_height_px
        if width > in_w or height > in_h:
            raise ProtocolError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"frame {image.frame_id}: the {kind} says it is {width}x{height} pixels; "
                f"at most {in_w}x{in_h} fit the model input (declared "
                f"{image.width_px}x{image.height_px})",
                image.frame_id,
            )
        if (width, height) != (image.width_px, image.height_px):
            raise ProtocolError(
                ErrorCode.IMAGE_INVALID,
                f"frame {image.frame_id}: declared {image.width_px}x{image.height_px}, "
                f"but the {kind} is {width}x{height}",
                image.frame_id,
            )

    def _jpeg(self, image: Image, payload: bytes | bytearray | memoryview) -> UInt8Array:
        try:
            height, width, _colorspace, _subsampling = simplejpeg.decode_jpeg_header(payload)
        except ValueError as exc:
            raise _invalid(image, "JPEG", exc) from exc
        self._check_size(image, "JPEG", int(width), int(height))
        self._check_scans(image, payload)
        try:
            pixels: UInt8Array = simplejpeg.decode_jpeg(payload, colorspace="RGB")
        except ValueError as exc:
            raise _invalid(image, "JPEG", exc) from exc
        return pixels

    def _check_scans(self, image: Image, payload: bytes | bytearray | memoryview) -> None:
        scans = 0
        for scans, _ in enumerate(_SOS.finditer(payload), start=1):  # no copy of a view
            if scans > self.max_jpeg_scans:
                raise ProtocolError(
                    ErrorCode.IMAGE_INVALID,
                    f"frame {image.frame_id}: the JPEG has more than {self.max_jpeg_scans} "
                    "scans (SOS markers), the most this node decodes (a baseline JPEG has "
                    "1, a progressive one about 10)",
                    image.frame_id,
                )

    def _webp(self, image: Image, payload: bytes | bytearray | memoryview) -> UInt8Array:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
                picture = PILImage.open(io.BytesIO(payload), formats=["WEBP"])
        except PILImage.DecompressionBombError as exc:  # over 2 x Pillow's pixel limit
            raise ProtocolError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"frame {image.frame_id}: the WebP claims more pixels than Pillow will "
                f"decode; at most {self.input_width_px}x{self.input_height_px} fit the model "
                f"input (declared {image.width_px}x{image.height_px})",
                image.frame_id,
            ) from exc
        except _PIL_ERRORS as exc:
            raise _invalid(image, "WebP", exc) from exc
        with picture:
            width, height = picture.size  # from the header: nothing decoded yet
            self._check_size(image, "WebP", width, height)
            try:
                rgb = picture.convert("RGB")
            except _PIL_ERRORS as exc:
                raise _invalid(image, "WebP", exc) from exc
        return np.asarray(rgb)


def _invalid(image: Image, kind: str, exc: Exception) -> ProtocolError:
    # The decoder's own words say what is wrong (truncated, not a JPEG); they name no path
    # or internal state, so they may go to the client, cut short.
    reason = _OBJECT_REPR.sub("the payload", str(exc)).strip().rstrip(".")[:120]
    reason = reason or type(exc).__name__
    return ProtocolError(
        ErrorCode.IMAGE_INVALID,
        f"frame {image.frame_id}: the payload is not a valid {kind} picture ({reason})",
        image.frame_id,
    )
