"""Which detection results the page draws, sans-I/O.

A result is drawn only over the frame it belongs to or a newer one, whichever path (node or
local engine) it came from, so a late answer never moves the overlay back in time; results
for frames of a source the page left (another camera, a file) are never drawn over the new
one. Each drawn result carries ``expires_ms``: its boxes are cleared if no newer result
replaces them by then (issue 10: a bad file or a stalled node left boxes frozen).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .page_api import public_detections
from .postprocess import FrameBox
from .view import in_view

__all__ = ["BOXES_EXPIRE_MS", "Overlay"]

BOXES_EXPIRE_MS = 1000.0  # boxes not replaced by a newer result within this are cleared


class Overlay:
    """The newest frame drawn and the start of the current source."""

    def __init__(self) -> None:
        self.newest_drawn_capture_ms = float("-inf")
        self.source_since_ms = float("-inf")  # frames grabbed before it are another source's

    def source_changed(self, now_ms: float) -> None:
        self.source_since_ms = now_ms

    def detections(
        self,
        source: str,
        frame_id: int,
        boxes: tuple[FrameBox, ...],
        capture_ms: float,
        server: str | None = None,
        **timings: float | str,
    ) -> dict[str, Any] | None:
        """The page's "detections" event for a result, or None when it is not drawn; its
        ``api`` entry is the public shape (page_api.public_detections) JS hands out."""
        if capture_ms < max(self.newest_drawn_capture_ms, self.source_since_ms):
            return None
        self.newest_drawn_capture_ms = capture_ms
        drawn = [asdict(box) for box in boxes]
        round_trip_ms = timings.get("round_trip_ms")
        public = public_detections(
            source,
            server,
            frame_id,
            capture_ms,
            drawn,
            round_trip_ms=float(round_trip_ms) if round_trip_ms is not None else None,
        )
        return {
            "type": "detections",
            "source": source,
            "expires_ms": BOXES_EXPIRE_MS,
            "in_view": in_view(boxes),
            "frame_id": frame_id,
            "capture_ms": capture_ms,
            "boxes": drawn,
            "api": public,
            **timings,
        }
