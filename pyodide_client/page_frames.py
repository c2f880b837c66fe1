"""One camera frame's way through the page, sans-I/O (issue 19): JS says a frame came,
Python says where it goes, JS hands back its pixels (or, for JPEG/WebP, the bytes its
canvas encoded), Python says what to send or run.

``FrameCycle`` holds whether a new frame waits, and the one frame asked for and not yet
handed back: while a compressed frame is being encoded no other is asked for (one encoder
at a time), and a frame encoded for a link the page has left since is not sent.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrameCycle", "Grab"]


@dataclass(frozen=True)
class Grab:
    """A frame the page asked JS for."""

    to: str  # "node" or "local"
    capture_ms: float
    width_px: int  # the source's size when it was asked for
    height_px: int
    encoding: str = "raw"  # raw, jpeg or webp (node frames)
    socket_id: int | None = None  # the link it is for (node frames)


class FrameCycle:
    def __init__(self) -> None:
        self.has_new_frame = False
        self.width_px = 0
        self.height_px = 0
        self.grab: Grab | None = None  # asked for, not handed back yet
        self.last_sent: Grab | None = None  # the frame last sent or run, for its ``sent``

    def arrived(self, width_px: int, height_px: int) -> None:
        """The source has a new frame of this size."""
        self.has_new_frame = True
        self.width_px, self.height_px = width_px, height_px

    @property
    def is_waiting(self) -> bool:
        """A new frame waits and none is on its way through JS."""
        return self.has_new_frame and self.grab is None

    def ask(self, grab: Grab) -> Grab:
        self.has_new_frame = False
        self.grab = grab
        return grab

    def handed_back(self) -> Grab | None:
        """The frame asked for came back (pixels, encoded bytes, or skipped)."""
        grab, self.grab = self.grab, None
        return grab
