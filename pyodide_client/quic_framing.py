"""How edgesight's protocol messages ride a WebTransport (QUIC) session, sans-I/O (issue 16).

The messages are ``protocol.py``'s, byte for byte; only the framing differs from the
WebSocket's one-message-per-WebSocket-message:

- **Control** (HELLO, AUTH, WELCOME, PING, PONG, TRACE, ERROR): one reliable, ordered,
  client-opened *bidirectional* stream per session, each message prefixed with its length
  (u32, little-endian like the rest of the protocol). It lives as long as the session.
- **Frames** (FRAME, IMAGE): one client-opened *unidirectional* stream per frame, holding
  exactly that message and ended with FIN. A lost packet then delays only its own frame,
  and a frame can be abandoned alone: the page resets a stream whose frame a newer one
  superseded (RESET_STREAM) and the node never decodes or infers what it got of it.
  Unidirectional, because the answer need not share the frame's fate: a frame's stream
  may be reset after its RESULT is on its way.
- **Answers** (RESULT, DROPPED): one node-opened unidirectional stream per message, ended
  with FIN. Reliable (a page counts its frames in flight by their answers), but never
  queued behind another frame's answer.

What may be abandoned: a frame stream, by either end, until the node has its FIN (the
node then answers nothing for it; the page already stopped waiting). Everything else is
reliable: control messages and answers are never abandoned while the session lives.

This module does no I/O and uses the standard library only (the page imports it in
Pyodide, the node and the tests in CPython).
"""

from __future__ import annotations

import struct

from .protocol import MessageType, peek_type

__all__ = [
    "CONTROL_PREFIX_SIZE",
    "OWN_STREAM_TYPES",
    "WT_PATH",
    "ControlReader",
    "FrameAssembler",
    "FramingError",
    "frame_control",
    "rides_own_stream",
]

WT_PATH = "/wt"  # the :path of the extended CONNECT that opens a session
_PREFIX = struct.Struct("<I")
CONTROL_PREFIX_SIZE = _PREFIX.size
# Messages that travel alone on a unidirectional stream; every other one on the control
# stream. A frame and its answer.
OWN_STREAM_TYPES = frozenset(
    {MessageType.FRAME, MessageType.IMAGE, MessageType.RESULT, MessageType.DROPPED}
)


class FramingError(Exception):
    """Bytes that break the framing (not the protocol): the session cannot go on."""


def rides_own_stream(message: bytes | bytearray | memoryview) -> bool:
    """True for a frame or an answer (its own stream), False for control messages.
    Raises ``protocol.ProtocolError`` for bytes without a message header."""
    return peek_type(message) in OWN_STREAM_TYPES


def frame_control(message: bytes) -> bytes:
    """One control message as it goes on the control stream."""
    return _PREFIX.pack(len(message)) + message


class ControlReader:
    """Cuts the control stream's bytes into messages; a message announced larger than
    ``max_message_bytes`` is a ``FramingError`` before any of it is buffered."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while len(self._buffer) >= _PREFIX.size:
            (size,) = _PREFIX.unpack_from(self._buffer)
            if size > self.max_message_bytes:
                raise FramingError(
                    f"expected control messages of at most {self.max_message_bytes} bytes, "
                    f"got one announced at {size}"
                )
            end = _PREFIX.size + size
            if len(self._buffer) < end:
                break
            messages.append(bytes(self._buffer[_PREFIX.size : end]))
            del self._buffer[:end]
        return messages

    def finish(self) -> None:
        """The peer ended the stream: a message cut short is a ``FramingError``."""
        if self._buffer:
            raise FramingError(
                f"the control stream ended inside a message ({len(self._buffer)} bytes "
                "of it arrived)"
            )


class FrameAssembler:
    """The bytes of one frame stream until its FIN, at most ``max_message_bytes``."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._parts: list[bytes] = []
        self.size_bytes = 0

    def feed(self, data: bytes, is_end: bool) -> bytes | None:
        """The whole message once the stream ends, else None."""
        self.size_bytes += len(data)
        if self.size_bytes > self.max_message_bytes:
            raise FramingError(
                f"expected a frame of at most {self.max_message_bytes} bytes, got "
                f"{self.size_bytes} so far"
            )
        if data:
            self._parts.append(data)
        if not is_end:
            return None
        message = b"".join(self._parts)
        self._parts = []
        return message
