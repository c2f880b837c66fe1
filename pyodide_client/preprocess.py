"""Frame preprocessing: RGBA bytes of any size -> letterboxed uint8 CHW RGB model input.

Runs inside Pyodide on every camera frame, so it uses only C-level bytes operations: a
row gather with ``bytes.join`` over slices and one strided slice assignment per output
column and channel (about 3 x 416 of them), never a per-pixel Python loop. Resizing is
nearest-neighbour with pixel-centre sampling: output pixel ``j`` reads source pixel
``((2j + 1) * src) // (2 * dst)``.

A ``Letterbox`` holds the geometry for one (frame size, model input size) pair and a
reusable output buffer; build it once per frame size and call ``fill`` per frame. The model
input may be non-square (``input_width_px`` x ``input_height_px``, from the model card or the
node's HELLO); omitting the height means a square input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PAD_VALUE", "Letterbox", "letterbox_geometry"]

PAD_VALUE = 114  # grey padding, the usual letterbox value for COCO detectors
RGBA_CHANNELS = 4
RGB_CHANNELS = 3


@dataclass(frozen=True)
class Geometry:
    """Where the scaled frame sits inside the model input."""

    frame_width_px: int
    frame_height_px: int
    input_width_px: int
    input_height_px: int
    scale: float
    scaled_width_px: int
    scaled_height_px: int
    left_px: int
    top_px: int

    def to_frame(self, x: float, y: float) -> tuple[float, float]:
        """Map a point in model-input pixels back to frame pixels, clamped to the frame."""
        fx = (x - self.left_px) / self.scale
        fy = (y - self.top_px) / self.scale
        return (
            min(max(fx, 0.0), float(self.frame_width_px)),
            min(max(fy, 0.0), float(self.frame_height_px)),
        )


def letterbox_geometry(
    width_px: int, height_px: int, input_width_px: int, input_height_px: int | None = None
) -> Geometry:
    """Fit a frame into the model input, keeping its aspect ratio, centred. ``input_height_px``
    defaults to ``input_width_px`` (a square input)."""
    in_w = input_width_px
    in_h = input_width_px if input_height_px is None else input_height_px
    if width_px <= 0 or height_px <= 0:
        raise ValueError(f"frame size must be positive, got {width_px}x{height_px}")
    if in_w <= 0 or in_h <= 0:
        raise ValueError(f"input size must be positive, got {in_w}x{in_h}")
    scale = min(in_w / width_px, in_h / height_px)
    scaled_w = max(1, min(in_w, round(width_px * scale)))
    scaled_h = max(1, min(in_h, round(height_px * scale)))
    return Geometry(
        frame_width_px=width_px,
        frame_height_px=height_px,
        input_width_px=in_w,
        input_height_px=in_h,
        scale=scale,
        scaled_width_px=scaled_w,
        scaled_height_px=scaled_h,
        left_px=(in_w - scaled_w) // 2,
        top_px=(in_h - scaled_h) // 2,
    )


def _source_index(i: int, src: int, dst: int) -> int:
    return min(src - 1, ((2 * i + 1) * src) // (2 * dst))


@dataclass
class Letterbox:
    """Reusable letterbox plan for frames of one size."""

    geometry: Geometry
    _source_rows: tuple[int, ...] = field(init=False, repr=False)
    _column_plan: tuple[tuple[int, int, int], ...] = field(init=False, repr=False)
    _buffer: bytearray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        g = self.geometry
        row = g.input_width_px
        plane = row * g.input_height_px
        self._source_rows = tuple(
            _source_index(y, g.frame_height_px, g.scaled_height_px)
            for y in range(g.scaled_height_px)
        )
        # One entry per (channel, output column): where it starts in the output tensor,
        # where it ends, and which byte of the gathered source rows feeds it.
        stop_offset = (g.scaled_height_px - 1) * row + 1
        plan = []
        for channel in range(RGB_CHANNELS):
            for x in range(g.scaled_width_px):
                start = channel * plane + g.top_px * row + g.left_px + x
                sx = _source_index(x, g.frame_width_px, g.scaled_width_px)
                plan.append((start, start + stop_offset, sx * RGBA_CHANNELS + channel))
        self._column_plan = tuple(plan)
        self._buffer = bytearray([PAD_VALUE]) * (RGB_CHANNELS * plane)

    @classmethod
    def for_frame(
        cls, width_px: int, height_px: int, input_width_px: int, input_height_px: int | None = None
    ) -> Letterbox:
        return cls(letterbox_geometry(width_px, height_px, input_width_px, input_height_px))

    def fits(
        self, width_px: int, height_px: int, input_width_px: int, input_height_px: int | None = None
    ) -> bool:
        g = self.geometry
        in_h = input_width_px if input_height_px is None else input_height_px
        return (g.frame_width_px, g.frame_height_px, g.input_width_px, g.input_height_px) == (
            width_px,
            height_px,
            input_width_px,
            in_h,
        )

    @classmethod
    def reuse(
        cls,
        previous: Letterbox | None,
        width_px: int,
        height_px: int,
        input_width_px: int,
        input_height_px: int | None = None,
    ) -> Letterbox:
        """``previous`` if it fits this frame size (keeping its buffer), else a new plan."""
        if previous is not None and previous.fits(
            width_px, height_px, input_width_px, input_height_px
        ):
            return previous
        return cls.for_frame(width_px, height_px, input_width_px, input_height_px)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The tensor's shape, [3, H, W] (CHW)."""
        g = self.geometry
        return (RGB_CHANNELS, g.input_height_px, g.input_width_px)

    def fill(self, rgba: bytes | bytearray | memoryview) -> bytearray:
        """Letterbox one RGBA frame; returns the shared output buffer (CHW, RGB, uint8).

        The buffer is reused by the next call: send or copy it before filling again."""
        g = self.geometry
        row_bytes = g.frame_width_px * RGBA_CHANNELS
        expected = row_bytes * g.frame_height_px
        if len(rgba) != expected:
            raise ValueError(
                f"RGBA frame of {g.frame_width_px}x{g.frame_height_px} needs {expected} bytes, "
                f"got {len(rgba)}"
            )
        src = rgba if isinstance(rgba, bytes) else bytes(rgba)
        rows = b"".join([src[r * row_bytes : (r + 1) * row_bytes] for r in self._source_rows])
        out = self._buffer
        step = g.input_width_px
        for start, stop, offset in self._column_plan:
            out[start:stop:step] = rows[offset::row_bytes]
        return out
