"""One camera frame's way through the page, sans-I/O (issue 19): JS says a frame came,
Python says where it goes, JS hands back its pixels (or, for JPEG/WebP, the bytes its
canvas encoded), Python says what to send or run.

``FrameCycle`` holds whether a new frame waits, and the one frame asked for and not yet
handed back: while a compressed frame is being encoded no other is asked for (one encoder
at a time), and a frame encoded for a link the page has left since is not sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .page_core import PageCore
from .page_events import Buffer
from .page_json import JsonEvent, payload
from .page_sockets import Role, Socket, SocketBook

__all__ = ["FrameCycle", "FramePath", "Grab"]

Command = dict[str, Any]


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


class FramePath:
    """The frame events (``frame``, ``pixels``, ``encoded``, ``frame_skipped``, ``sent``,
    ``drawn``) and the commands that move a frame (``grab``, ``send``, ``local_run``)."""

    def __init__(self, core: PageCore, sockets: SocketBook) -> None:
        self.core = core
        self.sockets = sockets
        self.cycle = FrameCycle()
        self.time_origin_ms = 0.0  # performance.timeOrigin: trace reports use wall time

    def frame(self, event: JsonEvent) -> list[Command]:
        self.cycle.arrived(event.whole("width"), event.whole("height"))
        return []

    def pump(self, now_ms: float) -> list[Command]:
        """A waiting frame, when the core says where it may go now."""
        frames = self.cycle
        if not frames.is_waiting:
            return []
        to = self.core.next_action(now_ms)
        if to == "wait":
            return []
        width, height = frames.width_px, frames.height_px
        if to == "local":
            frames.ask(Grab("local", now_ms, width, height))
            return [{"do": "grab", "to": "local", "capture_ms": now_ms}]
        link = self.sockets.one(Role.LINK)
        if link is None:
            frames.has_new_frame = False  # as before: this frame has no socket to go on
            return []
        plan = json.loads(self.core.plan_frame(width, height, now_ms))
        frames.ask(Grab("node", now_ms, width, height, plan["encoding"], link.id))
        return [{"do": "grab", "to": "node", "capture_ms": now_ms, **plan}]

    def skipped(self, event: JsonEvent) -> list[Command]:
        self.cycle.handed_back()
        return []

    def pixels(self, event: JsonEvent, data: Buffer | None) -> list[Command]:
        grab, now = self.cycle.handed_back(), event.now_ms
        width, height = event.whole("width"), event.whole("height")
        if grab is None:
            return []
        rgba = payload(data, event)
        frame = {"capture_ms": grab.capture_ms, "width": width, "height": height}
        if grab.to == "local":
            frame_id = self.core.local_steps.encode(rgba, width, height, grab.capture_ms, now)
            self.cycle.last_sent = grab
            return [
                {
                    "do": "local_run",
                    "id": frame_id,
                    "data": bytes(self.core.local_steps.tensor()),
                    "frame": frame,
                }
            ]
        link = self._link_for(grab)
        if link is None:
            return []
        message = self.core.encode_frame(rgba, width, height, grab.capture_ms, now)
        return self._send_frame(link, message, grab, frame)

    def encoded(self, event: JsonEvent, data: Buffer | None) -> list[Command]:
        grab = self.cycle.handed_back()
        if grab is None:
            return []
        link = self._link_for(grab)  # the node changed while encoding: not sent
        if link is None:
            return []
        width, height = grab.width_px, grab.height_px
        message = self.core.encode_image(
            payload(data, event), width, height, grab.capture_ms, event.now_ms
        )
        frame = {"capture_ms": grab.capture_ms, "width": width, "height": height}
        return self._send_frame(link, message, grab, frame)

    def _link_for(self, grab: Grab) -> Socket | None:
        """The link the frame was asked for, if it may still take it: not when the page
        moved while JS encoded, nor when its window closed meanwhile (a smaller K)."""
        link, stream = self.sockets.one(Role.LINK), self.core.stream
        if link is None or link.id != grab.socket_id or stream is None:
            return None
        return link if stream.can_send() else None

    def _send_frame(
        self, link: Socket, message: bytes, grab: Grab, frame: Command
    ) -> list[Command]:
        # a sampled frame's TRACE (in the link's outbox) goes just before it (issue 12)
        out = self.sockets.flush("", self.core.take_outgoing)
        self.cycle.last_sent = grab
        return [*out, {"do": "send", "socket": link.id, "data": message, "frame": frame}]

    def sent(self, event: JsonEvent) -> list[Command]:
        """JS sent (or ran) the last frame; ``preprocess_ms``: its own time on it."""
        grab, now = self.cycle.last_sent, event.now_ms
        self.cycle.last_sent = None
        if grab is not None and grab.to == "node" and grab.encoding == "raw":
            self.core.frame_sent(now)  # round trips count from now
        self.core.note_preprocess(event.number("preprocess_ms"), now)
        return []

    def drawn(self, event: JsonEvent) -> list[Command]:
        now = event.now_ms
        self.core.note_drawn(event.number("capture_ms"), event.number("draw_ms"), now)
        trace = self.core.config.trace
        report = self.core.take_trace_report(self.time_origin_ms) if trace is not None else ""
        if trace is None or not report:
            return []
        return [{"do": "post", "url": trace.url, "body": report}]
