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
- **An answer's datagram copy**: an answer of at most ``DATAGRAM_ANSWER_MAX_BYTES`` (most
  RESULTs, every DROPPED) also goes as an HTTP/3 datagram on the session, in a packet of
  its own ahead of its stream's. An answer is one packet: when that packet is lost, its
  stream waits for the node's probe timeout (the tail of a lossy LAN); the other copy
  usually arrives. The page takes whichever comes first (``AnswerCopies``) and ignores the
  other. Datagrams are never retransmitted, so the stream stays the reliable one.

What may be abandoned: a frame stream, by either end, until the node has its FIN (the
node then answers nothing for it; the page already stopped waiting). Everything else is
reliable: control messages and answers are never abandoned while the session lives.

This module does no I/O and uses the standard library only (the page imports it in
Pyodide, the node and the tests in CPython).
"""

from __future__ import annotations

import struct

from .protocol import MessageType, ProtocolError, peek_type

__all__ = [
    "ANSWER_TYPES",
    "CONTROL_PREFIX_SIZE",
    "DATAGRAM_ANSWER_MAX_BYTES",
    "OWN_STREAM_TYPES",
    "WT_PATH",
    "AnswerCopies",
    "ControlReader",
    "FrameAssembler",
    "FramingError",
    "frame_control",
    "has_datagram_copy",
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
ANSWER_TYPES = frozenset({MessageType.RESULT, MessageType.DROPPED})
# An answer this small also goes as a datagram: it fits one 1200-byte QUIC packet (the
# smallest every QUIC path carries) with its headers (short header, AEAD tag, DATAGRAM frame
# and quarter stream id: under 50 bytes) and an ACK beside it.
DATAGRAM_ANSWER_MAX_BYTES = 1100
_REMEMBERED_ANSWERS = 64  # far more answers than a page keeps frames in flight


class FramingError(Exception):
    """Bytes that break the framing (not the protocol): the session cannot go on."""


def rides_own_stream(message: bytes | bytearray | memoryview) -> bool:
    """True for a frame or an answer (its own stream), False for control messages.
    Raises ``protocol.ProtocolError`` for bytes without a message header."""
    return peek_type(message) in OWN_STREAM_TYPES


def has_datagram_copy(message: bytes | bytearray | memoryview) -> bool:
    """True for an answer the node also sends as a datagram (small enough to)."""
    return len(message) <= DATAGRAM_ANSWER_MAX_BYTES and peek_type(message) in ANSWER_TYPES


class AnswerCopies:
    """Takes each answer once when it may come twice (a datagram and a stream).

    ``is_first`` is True for every message but the second copy of an answer that has a
    datagram copy. Copies are recognised by their bytes: an answer names its frame, so two
    different answers never share them. A copy is forgotten once its twin came, or when
    ``remembered`` newer answers came (a lost datagram's stream copy then needs no
    memory), so memory stays bounded whatever the node sends."""

    def __init__(self, remembered: int = _REMEMBERED_ANSWERS) -> None:
        self.remembered = remembered
        self.duplicates = 0  # second copies ignored
        self._seen: dict[bytes, None] = {}  # insertion order: oldest first

    def is_first(self, message: bytes | bytearray | memoryview) -> bool:
        try:
            if not has_datagram_copy(message):
                return True
        except ProtocolError:
            return True  # not a message at all: the protocol says what is wrong with it
        key = bytes(message)
        if key in self._seen:
            del self._seen[key]
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.remembered:
            del self._seen[next(iter(self._seen))]
        return True


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
