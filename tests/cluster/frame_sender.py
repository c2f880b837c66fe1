"""A CPython stand-in for one camera page's node link that sends frames the way the page
does (issue 9): ``NodeStream`` plans each frame, raw frames are letterboxed in Python,
JPEG/WebP pictures are encoded with Pillow at the planned size and quality (the page uses
the browser's encoder), AUTH goes after the HELLO and PINGs when the policy asks.

``FrameSender(url, rgba, width, height, encoding=...)`` is a context manager around one
WebSocket; ``send_one()`` sends a frame and waits for its answer (one frame in flight, what
the page keeps on a near node) and returns a ``Sent`` record; ``send_burst(n)`` sends n
back to back; ``run_for(seconds, fps)`` streams as a camera at ``fps`` would, keeping up
to ``max_in_flight`` frames unanswered (given ``in_flight`` settings, as many as the link
needs, up to that: issue 16). ``sock``, a connected socket, is used instead of opening one
(the network lab connects from inside a namespace); ``ssl_context`` verifies a wss://
node. Used by tests/cluster/test_bandwidth.py, tests/netlab, bench/bandwidth.py and
bench/lossy_link.py.
``_transmit``/``_receive`` are the transport's seam: tests/cluster/wt_sender.py sends the
same way over WebTransport.
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import time
from dataclasses import dataclass
from types import TracebackType

import numpy as np
from websockets.sync.client import ClientConnection, connect

from pyodide_client.encoding import EncodingSettings
from pyodide_client.inflight import InFlightSettings
from pyodide_client.preprocess import Letterbox
from pyodide_client.stream import (
    Detections,
    FrameDropped,
    FramePlan,
    NodeError,
    NodeStream,
)
from tests.handshake import handshake

__all__ = ["FrameSender", "Sent"]

_FORMATS = {"jpeg": "JPEG", "webp": "WEBP"}


def now_ms() -> float:
    return time.monotonic() * 1000


@dataclass(frozen=True)
class Sent:
    encoding: str
    size_bytes: int
    round_trip_ms: float
    done_ms: float
    labels: tuple[str, ...]  # what the node found (empty for an error or a drop)
    quality: float
    decode_ms: float = 0.0  # the node's, for a compressed frame


class FrameSender:
    def __init__(
        self,
        url: str,
        rgba: bytes,
        width_px: int,
        height_px: int,
        encoding: EncodingSettings | None = None,
        timeout_s: float = 30.0,
        max_in_flight: int = 1,
        in_flight: InFlightSettings | None = None,
        sock: socket.socket | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.sock = sock
        self.ssl_context = ssl_context  # for a wss:// url
        self.rgba = rgba
        self.width_px = width_px
        self.height_px = height_px
        self.timeout_s = timeout_s
        self.stream = NodeStream(
            max_in_flight=max_in_flight,
            encoding=encoding or EncodingSettings(),
            in_flight=in_flight,
        )
        self.max_window = 0  # the largest K a frame was sent under
        self.welcome_encodings: int | None = None
        self._conn: ClientConnection | None = None
        self._exits = contextlib.ExitStack()
        self._pictures: dict[tuple[str, float], bytes] = {}
        self._sent: dict[float, tuple[float, int]] = {}  # capture_ms -> quality, bytes

    def __enter__(self) -> FrameSender:
        self._conn = self._exits.enter_context(
            connect(
                self.url,
                compression=None,
                max_size=None,
                open_timeout=10,
                sock=self.sock,
                ssl=self.ssl_context,
            )
        )
        ready = handshake(self._conn, self.stream, self.timeout_s)
        if ready.welcome is not None:
            self.welcome_encodings = ready.welcome.encodings
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exits.close()

    def _picture(self, plan: FramePlan) -> bytes:
        """The frame's picture area encoded as planned (cached: the frame never changes)."""
        key = (plan.encoding, plan.quality)
        if key not in self._pictures:
            from PIL import Image as PILImage

            letterbox = Letterbox(self.stream.letterbox_for(self.width_px, self.height_px).geometry)
            g = letterbox.geometry
            tensor = np.frombuffer(bytes(letterbox.fill(self.rgba)), np.uint8)
            tensor = tensor.reshape(3, g.input_height_px, g.input_width_px)
            area = tensor[:, g.top_px : g.top_px + g.scaled_height_px]
            area = area[:, :, g.left_px : g.left_px + g.scaled_width_px].transpose(1, 2, 0)
            out = io.BytesIO()
            PILImage.fromarray(np.ascontiguousarray(area)).save(
                out, _FORMATS[plan.encoding], quality=round(plan.quality * 100)
            )
            self._pictures[key] = out.getvalue()
        return self._pictures[key]

    def _send(self, start: float) -> None:
        if self.stream.ping_due(start):
            self._transmit(self.stream.ping(start))
        plan = self.stream.plan_frame(self.width_px, self.height_px, start)
        if plan.encoding == "raw":
            message = self.stream.encode_frame(
                self.rgba, self.width_px, self.height_px, start, start
            )
        else:
            message = self.stream.encode_image(
                self._picture(plan), self.width_px, self.height_px, start, start
            )
        self._sent[start] = (plan.quality, len(message))
        self.max_window = max(self.max_window, self.stream.window)
        # as the page does: the round trip counts from the send, not from the encoding
        self.stream.mark_sent(now_ms())
        self._transmit(message)

    def _transmit(self, message: bytes) -> None:
        """One protocol message to the node (the transport's seam: tests/cluster/wt_sender.py)."""
        assert self._conn is not None, "use FrameSender as a context manager"
        self._conn.send(message)

    def _receive(self, timeout_s: float) -> bytes:
        """The node's next message; raises TimeoutError after ``timeout_s``."""
        assert self._conn is not None, "use FrameSender as a context manager"
        data = self._conn.recv(timeout=timeout_s)
        assert isinstance(data, bytes), f"expected a binary message, got {data!r}"
        return data

    def _answers(self, timeout_s: float) -> list[Sent]:
        """What the next message from the node answers: a frame, or nothing (a PONG)."""
        data = self._receive(timeout_s)
        done: list[Sent] = []
        for event in self.stream.receive(data, now_ms()):
            if isinstance(event, Detections):
                quality, size = self._sent.pop(event.capture_ms, (0.0, event.size_bytes))
                labels = tuple(box.label for box in event.boxes)
                done.append(
                    Sent(
                        event.encoding,
                        size,
                        event.round_trip_ms,
                        now_ms(),
                        labels,
                        quality,
                        event.decode_ms,
                    )
                )
            elif isinstance(event, NodeError | FrameDropped):
                done.append(Sent("lost", 0, 0.0, now_ms(), (), 0.0))
        return done

    def send_one(self) -> Sent:
        """One frame, as the policy plans it; returns when the node has answered it."""
        self._send(now_ms())
        while True:
            done = self._answers(self.timeout_s)
            if done:
                return done[0]

    def send_burst(self, count: int) -> list[Sent]:
        """``count`` frames back to back (within ``max_in_flight``), then their answers in
        the order they came."""
        for _ in range(count):
            self._send(now_ms())
        done: list[Sent] = []
        while len(done) < count:
            done.extend(self._answers(self.timeout_s))
        return done

    def run_for(self, duration_s: float, fps: float = 30.0) -> list[Sent]:
        """Stream as a camera at ``fps`` for ``duration_s``: a frame goes out at each camera
        tick that finds a free slot (a tick with none waits for it, as the page's pump);
        returns the answered frames."""
        done: list[Sent] = []
        interval_ms = 1000.0 / fps
        start = now_ms()
        end = start + duration_s * 1000.0
        next_tick = start
        while True:
            now = now_ms()
            if now >= end:
                break
            if now >= next_tick and self.stream.can_send():
                pace_ms = self.stream.encoding.min_interval_ms
                self._send(now)
                next_tick = max(next_tick + interval_ms, now + pace_ms)
                continue
            if now >= next_tick:  # a camera frame waits for a slot, as the page's would
                self.stream.note_waiting(now)
            wait_s = (next_tick - now) / 1000 if self.stream.can_send() else self.timeout_s
            try:
                done.extend(self._answers(max(0.001, min(wait_s, (end - now) / 1000))))
            except TimeoutError:
                continue  # the next camera tick
        return done
