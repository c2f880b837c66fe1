"""``FrameSender`` over WebTransport (issue 16): the same camera, policy and measures as
the WebSocket one (tests/cluster/frame_sender.py), with the page's QUIC framing
(tests/wt_client.py, ``pyodide_client.quic_framing``) and its latest-frame-wins rule.

- The session opens as the page opens it: extended CONNECT with an Origin, then the page
  speaks first on the control stream (a PING), the node's HELLO, AUTH, WELCOME.
- Each frame goes on a unidirectional stream of its own; PINGs on the control stream.
- **Latest frame wins**: when a frame is sent while an older one is still uploading (not
  every byte of it has left this client once: the congestion window or the pacer holds
  the rest), the older stream is reset (RESET_STREAM) and the frame leaves the window at
  once (``NodeStream.abandon``), as static/wt-link.js does when a newer ``write`` finds
  an older one unresolved. A frame whose bytes all left is never reset: its lost packets
  are QUIC's to repair. ``frames_reset`` counts the resets.
- ``rule="page"`` is that rule as the page has it: of the older frames still uploading,
  the one furthest along is kept (it finishes; the others are reset), so a frame always
  gets through. ``rule="reset_all"`` is the page's rule before: every older frame still
  uploading is reset. On a link whose congestion window holds less than a frame for
  longer than a frame interval (loss and distance together) that reset every frame before
  it left, and nothing was answered (docs/benchmarks.md (u)).
- Its QUIC stack uses CUBIC, as Chromium's does (aioquic's default is NewReno).

The client's asyncio loop runs only while the sender waits for the node (like the
synchronous WebSocket client's); ``namespace`` makes its UDP socket inside a network
namespace (the lab's A).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from types import TracebackType
from typing import Any

from pyodide_client.protocol import HEADER_SIZE, Dropped, Ping, Result, parse
from pyodide_client.quic_framing import WT_PATH, rides_own_stream
from pyodide_client.stream import Ready
from tests.netlab.netns import inside
from tests.wt_client import WtClient, open_session

from .frame_sender import FrameSender, now_ms

__all__ = ["PAGE_ORIGIN", "RULES", "WtFrameSender"]

PAGE_ORIGIN = "http://127.0.0.1:8000"  # on a node's default allow-list
RULES = ("page", "reset_all")  # which older frames a newer one resets
FRAME_ID = struct.Struct("<I")  # protocol.py: right after the header
HEAD_BYTES = 16  # what the page keeps of a frame to abandon it (static/wt-link.js)


class WtFrameSender(FrameSender):
    def __init__(
        self,
        host: str,
        port: int,
        rgba: bytes,
        width_px: int,
        height_px: int,
        *,
        namespace: str | None = None,
        origin: str = PAGE_ORIGIN,
        cadata: bytes | None = None,
        rule: str = "page",
        **options: Any,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")
        super().__init__(f"https://{host}:{port}{WT_PATH}", rgba, width_px, height_px, **options)
        self.host = host
        self.port = port
        self.namespace = namespace
        self.origin = origin
        self.cadata = cadata
        self.rule = rule
        self.frames_reset = 0
        self.sent_ids: list[int] = []
        self.answered_ids: set[int] = set()
        self.client: WtClient | None = None
        self._loop = asyncio.new_event_loop()
        self._async_exits = contextlib.AsyncExitStack()
        self._uploading: list[tuple[int, bytes, int]] = []  # stream id, head, size

    def _run(self, work: Any) -> Any:
        return self._loop.run_until_complete(work)

    def __enter__(self) -> WtFrameSender:
        session = open_session(self.host, self.port, self.origin, cadata=self.cadata)
        where = inside(self.namespace) if self.namespace else contextlib.nullcontext()
        with where:  # the UDP socket is made here, and keeps this namespace
            client = self._run(self._async_exits.enter_async_context(session))
        assert isinstance(client, WtClient)
        self.client = client
        # one inbox, in arrival order, as the page's onmessage hears both
        client.answers = client.controls
        self._run(self._handshake(client))
        return self

    async def _handshake(self, client: WtClient) -> None:
        status = await asyncio.wait_for(client.status, self.timeout_s)
        assert status == 200, f"expected the node to accept the session, got :status {status}"
        client.open_control(Ping(1, 0.0).serialize())  # the page speaks first on QUIC
        for message in self.stream.data_to_send():
            client.send_control(message)
        while True:
            events = self.stream.receive(await client.control(self.timeout_s), now_ms())
            for message in self.stream.data_to_send():  # AUTH after the HELLO
                client.send_control(message)
            ready = [event for event in events if isinstance(event, Ready)]
            if ready:
                if ready[0].welcome is not None:
                    self.welcome_encodings = ready[0].welcome.encodings
                return

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._run(self._async_exits.aclose())
        finally:
            self._loop.close()

    def _bytes_sent(self, stream_id: int) -> int | None:
        """How far a frame's stream has been sent (each byte once), or None once its
        stream is gone (all of it acknowledged)."""
        assert self.client is not None
        # aioquic keeps a stream's sender state in its connection (no public accessor)
        stream = self.client._quic._streams.get(stream_id)
        return None if stream is None else stream.sender.highest_offset

    def _transmit(self, message: bytes) -> None:
        client = self.client
        assert client is not None, "use WtFrameSender as a context manager"
        if not rides_own_stream(message):
            client.send_control(message)
            return
        uploading = []
        for stream_id, head, size in self._uploading:
            sent = self._bytes_sent(stream_id)
            if sent is not None and sent < size:
                uploading.append((sent, stream_id, head, size))
        kept = []
        if self.rule == "page" and uploading:
            kept = [max(uploading)]
        for entry in uploading:
            if entry not in kept:
                _, stream_id, head, _ = entry
                client.reset_frame(stream_id)
                self.stream.abandon(head, now_ms())
                self.frames_reset += 1
        self.sent_ids.append(frame_id(message))
        stream_id = client.send_frame(message)
        self._uploading = [(stream_id, head, size) for _, stream_id, head, size in kept]
        self._uploading.append((stream_id, message[:HEAD_BYTES], len(message)))

    def _receive(self, timeout_s: float) -> bytes:
        client = self.client
        assert client is not None, "use WtFrameSender as a context manager"
        data: bytes = self._run(asyncio.wait_for(client.controls.get(), timeout_s))
        answer = parse(data)
        if isinstance(answer, Result | Dropped):  # that frame is answered
            self.answered_ids.add(answer.frame_id)
        return data

    def send_back_to_back(self, count: int) -> list[int]:
        """``count`` frames back to back (the window must allow them); returns their ids
        once the last one is answered. Frames that have not left when a newer one goes are
        reset by the rule (then they leave the window unanswered)."""
        for _ in range(count):
            self._send(now_ms())
        ids = self.sent_ids[-count:]
        while ids[-1] not in self.answered_ids:
            self._answers(self.timeout_s)
        return ids


def frame_id(message: bytes) -> int:
    """The frame id of a FRAME or IMAGE message (right after the header)."""
    (value,) = FRAME_ID.unpack_from(message, HEADER_SIZE)
    return int(value)
