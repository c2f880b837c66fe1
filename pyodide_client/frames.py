"""How node frames leave the page, sans-I/O: encoding choice, pacing and bookkeeping.

``Frames`` holds the page's frame-encoding settings (``EDGESIGHT_FRAME_ENCODING``, the
target frame rate) and what this browser's canvas can encode; the per-link choice is
``encoding.EncodingPolicy``'s, made inside the link's ``NodeStream``. It answers
``plan_frame`` in the JSON the page reads, paces frames on a link at its lowest quality
(issue 9), and records each frame sent: the dashboard's bytes on the wire and, for a
sampled frame, the TRACE message (issue 12) queued ahead of it.

Frames in flight (issue 16): a page configured with ``max_in_flight`` 0 (the web app's
``EDGESIGHT_FRAMES_IN_FLIGHT`` default) lets each link's ``NodeStream`` adapt K to its
network time (``inflight.InFlightPolicy``), up to the node's HELLO limit; 1..64 pin K.
"""

from __future__ import annotations

import json
import struct

from .dashboard import Dashboard
from .encoding import EncodingSettings
from .inflight import InFlightSettings
from .page_config import PageConfig
from .protocol import FrameEncoding
from .stream import NodeStream
from .tracing import PageTraces

__all__ = ["ADAPTIVE_MAX_IN_FLIGHT", "Frames"]

# The page's own bound on an adaptive K (the node's HELLO bounds it too): 8 carries 30 fps
# over about 250 ms of network time.
ADAPTIVE_MAX_IN_FLIGHT = 8

_FRAME_ID = struct.Struct("<I")  # right after the header in FRAME and IMAGE


class Frames:
    """Frame planning and the record of frames sent on the current link."""

    def __init__(self, config: PageConfig, dashboard: Dashboard) -> None:
        # How frames travel (issue 9): EDGESIGHT_FRAME_ENCODING, decided per link by
        # encoding.EncodingPolicy; what this browser can encode is set_encoders()'s to say.
        self.settings = EncodingSettings(mode=config.frame_encoding, target_fps=config.target_fps)
        self.can_encode: tuple[FrameEncoding, ...] = (FrameEncoding.JPEG,)
        self.dashboard = dashboard
        self.traces = PageTraces.from_config(config.trace)  # issue 12; None: off
        self.last_sent_ms = float("-inf")

    def in_flight_for(self, max_in_flight: int) -> tuple[int, InFlightSettings | None]:
        """A new stream's ``max_in_flight`` and ``in_flight`` for the page's setting: 0
        adapts K to the link (issue 16), a positive number pins it."""
        if max_in_flight == 0:
            return ADAPTIVE_MAX_IN_FLIGHT, InFlightSettings(target_fps=self.settings.target_fps)
        return max_in_flight, None

    def set_encoders(self, names: str) -> None:
        """What this browser's canvas can encode: a comma-separated list of 'jpeg' and
        'webp'. Streams opened from now on offer them to their nodes."""
        known = {"jpeg": FrameEncoding.JPEG, "webp": FrameEncoding.WEBP}
        self.can_encode = tuple(known[n] for n in names.split(",") if n.strip() in known)

    def is_paced(self, stream: NodeStream, now_ms: float | None) -> bool:
        """A link at its lowest quality also paces frames: too soon for the next one."""
        pace_ms = stream.encoding.min_interval_ms
        return now_ms is not None and now_ms - self.last_sent_ms < pace_ms

    def plan(self, stream: NodeStream, width_px: int, height_px: int, now_ms: float) -> str:
        """``plan_frame``'s JSON: ``{"encoding", "quality", "width", "height"}``."""
        plan = stream.plan_frame(width_px, height_px, now_ms)
        return json.dumps(
            {
                "encoding": plan.encoding,
                "quality": plan.quality,
                "width": plan.width_px,
                "height": plan.height_px,
            }
        )

    def sent(
        self,
        stream: NodeStream,
        message: bytes,
        encoding: str,
        capture_ms: float,
        now_ms: float,
        outbox: list[bytes],
    ) -> None:
        """``message`` (a FRAME or IMAGE in ``encoding``) goes to the node now."""
        self.last_sent_ms = now_ms
        self.dashboard.frame_sent(now_ms, encoding, len(message))
        # A sampled frame's TRACE goes to the outbox, which the page sends before the frame
        # (issue 12); only to a node whose WELCOME says it takes traces.
        welcome = stream.welcome
        if self.traces is None or welcome is None or not welcome.takes_traces:
            return
        trace = self.traces.frame_sent(_FRAME_ID.unpack_from(message, 4)[0], capture_ms, now_ms)
        if trace is not None:
            outbox.append(trace)
