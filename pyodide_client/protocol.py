"""The edgesight wire protocol, version 1, as a sans-I/O core.

One WebSocket binary message carries exactly one protocol message. Every message starts
with the same four-byte header; the body layout depends on the message type. All numbers
are little-endian; strings are UTF-8 with a u16 byte-length prefix.

    header   magic b"ES" | u8 version | u8 type

    HELLO    (node -> client, first message on a connection)
             str node_name | str model_name | 32 bytes sha256 of the model file
             | u8 dtype | u8 ndim | u32 * ndim frame shape (no batch dimension)
             | u16 class count | str * count class names | u16 max_in_flight
    FRAME    (client -> node)
             u32 frame_id | f64 capture_ms | u8 dtype | u8 ndim | u32 * ndim shape
             | payload (exactly prod(shape) * itemsize bytes, C order)
    RESULT   (node -> client)
             u32 frame_id | f64 capture_ms (echoed) | f32 queue_ms | f32 inference_ms
             | f32 post_ms | u16 batch_size | u16 count
             | count * (u16 class_id | f32 score | f32 x1 | f32 y1 | f32 x2 | f32 y2)
             boxes are in the frame tensor's pixel space (the letterboxed model input)
    ERROR    (either way)
             u16 code | u8 has_frame | u32 frame_id | str message
    PING     (client -> node) u32 nonce | f64 sent_ms
    PONG     (node -> client) u32 nonce | f64 sent_ms (echoed from the ping)
    DROPPED  (node -> client) u32 frame_id | u8 reason
             a frame that will never get a RESULT, and why (see DropReason)

This module does no I/O and uses the standard library only: the browser (Pyodide) and both
servers import it. ``parse`` turns bytes into a message or raises ``ProtocolError`` whose
``code`` and ``message`` are meant to be sent back to the peer as an ``Error``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "PROTOCOL_VERSION",
    "Detection",
    "DropReason",
    "Dropped",
    "Dtype",
    "Error",
    "ErrorCode",
    "Frame",
    "Hello",
    "Message",
    "MessageType",
    "Ping",
    "Pong",
    "ProtocolError",
    "Result",
    "parse",
]

MAGIC = b"ES"
PROTOCOL_VERSION = 1
HEADER_SIZE = 4
SHA256_SIZE = 32
MAX_NDIM = 8

_HEADER = struct.Struct("<2sBB")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_FRAME_HEAD = struct.Struct("<IdB")
_FRAME_ID_TIME = struct.Struct("<Id")
_RESULT_HEAD = struct.Struct("<IdfffHH")
_DETECTION = struct.Struct("<Hfffff")
_ERROR_HEAD = struct.Struct("<HBI")
_PING = struct.Struct("<Id")
_DROPPED = struct.Struct("<IB")


class MessageType(enum.IntEnum):
    HELLO = 1
    FRAME = 2
    RESULT = 3
    ERROR = 4
    PING = 5
    PONG = 6
    DROPPED = 7


class Dtype(enum.IntEnum):
    UINT8 = 1
    FLOAT32 = 2

    @property
    def itemsize(self) -> int:
        return 1 if self is Dtype.UINT8 else 4

    @property
    def label(self) -> str:
        return self.name.lower()


class ErrorCode(enum.IntEnum):
    """Why a message was refused. Codes below 100 are about one message and leave the
    connection open; codes from 100 describe the connection or the node."""

    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    UNEXPECTED_MESSAGE = 3
    WRONG_SHAPE = 4
    WRONG_DTYPE = 5
    INFERENCE_FAILED = 6
    NOT_BINARY = 7
    OVERLOADED = 100
    INTERNAL = 101


class DropReason(enum.IntEnum):
    SUPERSEDED = 1  # a newer frame from the same connection replaced it while it waited
    SHUTTING_DOWN = 2  # the node stopped before running it


class ProtocolError(Exception):
    """A message that does not follow the protocol. ``message`` says what was expected and
    what came; it is safe to send to the peer."""

    def __init__(self, code: ErrorCode, message: str, frame_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id

    def to_error(self) -> Error:
        return Error(code=self.code, message=self.message, frame_id=self.frame_id)


def _header(kind: MessageType) -> bytes:
    return _HEADER.pack(MAGIC, PROTOCOL_VERSION, kind)


def _pack_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"string field is {len(raw)} bytes long; at most 65535 fit")
    return _U16.pack(len(raw)) + raw


def _pack_shape(shape: tuple[int, ...]) -> bytes:
    if not 1 <= len(shape) <= MAX_NDIM:
        raise ValueError(f"shape must have 1 to {MAX_NDIM} dimensions, got {shape!r}")
    return _U8.pack(len(shape)) + struct.pack(f"<{len(shape)}I", *shape)


class _Reader:
    """Reads a body field by field; running short raises a MALFORMED ProtocolError that
    names the field."""

    def __init__(self, data: memoryview, kind: MessageType) -> None:
        self.data = data
        self.pos = HEADER_SIZE
        self.kind = kind

    def _need(self, size: int, field: str) -> None:
        if self.pos + size > len(self.data):
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"{self.kind.name} message truncated: expected {size} more bytes for "
                f"{field} at offset {self.pos}, got {len(self.data) - self.pos}",
            )

    def unpack(self, fmt: struct.Struct, field: str) -> tuple[Any, ...]:
        self._need(fmt.size, field)
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values

    def u8(self, field: str) -> int:
        return int(self.unpack(_U8, field)[0])

    def u16(self, field: str) -> int:
        return int(self.unpack(_U16, field)[0])

    def raw(self, size: int, field: str) -> memoryview:
        self._need(size, field)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def string(self, field: str) -> str:
        size = self.u16(f"{field} length")
        chunk = self.raw(size, field)
        try:
            return str(chunk, "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(
                ErrorCode.MALFORMED, f"{self.kind.name} field {field} is not valid UTF-8"
            ) from exc

    def dtype(self) -> Dtype:
        code = self.u8("dtype")
        try:
            return Dtype(code)
        except ValueError:
            known = ", ".join(f"{d.value} ({d.label})" for d in Dtype)
            raise ProtocolError(
                ErrorCode.WRONG_DTYPE, f"unknown dtype code {code}; expected one of {known}"
            ) from None

    def shape(self) -> tuple[int, ...]:
        ndim = self.u8("ndim")
        if not 1 <= ndim <= MAX_NDIM:
            raise ProtocolError(ErrorCode.WRONG_SHAPE, f"ndim must be 1 to {MAX_NDIM}, got {ndim}")
        return tuple(int(d) for d in self.unpack(struct.Struct(f"<{ndim}I"), "shape"))

    def rest(self) -> memoryview:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        extra = len(self.data) - self.pos
        if extra:
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"{self.kind.name} message has {extra} unexpected trailing bytes "
                f"after offset {self.pos}",
            )


@dataclass(frozen=True)
class Hello:
    node_name: str
    model_name: str
    model_sha256: str  # 64 lowercase hex digits
    dtype: Dtype
    frame_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    max_in_flight: int

    def serialize(self) -> bytes:
        digest = bytes.fromhex(self.model_sha256)
        if len(digest) != SHA256_SIZE:
            raise ValueError(f"model_sha256 must be 64 hex digits, got {self.model_sha256!r}")
        return b"".join(
            [
                _header(MessageType.HELLO),
                _pack_str(self.node_name),
                _pack_str(self.model_name),
                digest,
                _U8.pack(self.dtype),
                _pack_shape(self.frame_shape),
                _U16.pack(len(self.class_names)),
                *(_pack_str(name) for name in self.class_names),
                _U16.pack(self.max_in_flight),
            ]
        )

    @classmethod
    def _parse(cls, r: _Reader) -> Hello:
        node_name = r.string("node_name")
        model_name = r.string("model_name")
        digest = bytes(r.raw(SHA256_SIZE, "model_sha256")).hex()
        dtype = r.dtype()
        shape = r.shape()
        count = r.u16("class count")
        names = tuple(r.string(f"class name {i}") for i in range(count))
        max_in_flight = r.u16("max_in_flight")
        r.end()
        return cls(node_name, model_name, digest, dtype, shape, names, max_in_flight)


@dataclass(frozen=True)
class Frame:
    frame_id: int
    capture_ms: float
    dtype: Dtype
    shape: tuple[int, ...]
    payload: bytes | bytearray | memoryview

    @staticmethod
    def header_bytes(
        frame_id: int, capture_ms: float, dtype: Dtype, shape: tuple[int, ...]
    ) -> bytes:
        """Everything before the payload; lets a sender avoid copying the payload into a
        new buffer when its transport can send two parts."""
        return (
            _header(MessageType.FRAME)
            + _FRAME_HEAD.pack(frame_id, capture_ms, dtype)
            + _pack_shape(shape)
        )

    def serialize(self) -> bytes:
        return self.header_bytes(self.frame_id, self.capture_ms, self.dtype, self.shape) + bytes(
            self.payload
        )

    @property
    def expected_payload_bytes(self) -> int:
        size = self.dtype.itemsize
        for dim in self.shape:
            size *= dim
        return size

    def check(self, dtype: Dtype, shape: tuple[int, ...]) -> None:
        """Raise ProtocolError unless this frame has the dtype and shape a model wants."""
        if self.dtype is not dtype:
            raise ProtocolError(
                ErrorCode.WRONG_DTYPE,
                f"frame {self.frame_id}: expected dtype {dtype.label}, got {self.dtype.label}",
                self.frame_id,
            )
        if self.shape != shape:
            raise ProtocolError(
                ErrorCode.WRONG_SHAPE,
                f"frame {self.frame_id}: expected shape {list(shape)}, got {list(self.shape)}",
                self.frame_id,
            )

    @classmethod
    def _parse(cls, r: _Reader) -> Frame:
        frame_id, capture_ms = r.unpack(_FRAME_ID_TIME, "frame_id and capture_ms")
        assert isinstance(frame_id, int)
        assert isinstance(capture_ms, float)
        try:
            dtype = r.dtype()
            shape = r.shape()
        except ProtocolError as exc:
            exc.frame_id = frame_id
            raise
        payload = r.rest()
        frame = cls(frame_id, capture_ms, dtype, shape, payload)
        expected = frame.expected_payload_bytes
        if len(payload) != expected:
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"frame {frame_id}: shape {list(shape)} of {dtype.label} needs a payload of "
                f"{expected} bytes, got {len(payload)}",
                frame_id,
            )
        return frame


@dataclass(frozen=True)
class Detection:
    class_id: int
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Result:
    frame_id: int
    capture_ms: float
    queue_ms: float
    inference_ms: float
    post_ms: float
    batch_size: int
    detections: tuple[Detection, ...]

    def serialize(self) -> bytes:
        parts = [
            _header(MessageType.RESULT),
            _RESULT_HEAD.pack(
                self.frame_id,
                self.capture_ms,
                self.queue_ms,
                self.inference_ms,
                self.post_ms,
                self.batch_size,
                len(self.detections),
            ),
        ]
        parts.extend(
            _DETECTION.pack(d.class_id, d.score, d.x1, d.y1, d.x2, d.y2) for d in self.detections
        )
        return b"".join(parts)

    @classmethod
    def _parse(cls, r: _Reader) -> Result:
        frame_id, capture_ms, queue_ms, inference_ms, post_ms, batch_size, count = r.unpack(
            _RESULT_HEAD, "result header"
        )
        detections = tuple(
            Detection(*r.unpack(_DETECTION, f"detection {i}")) for i in range(int(count))
        )
        r.end()
        return cls(
            frame_id,
            capture_ms,
            queue_ms,
            inference_ms,
            post_ms,
            batch_size,
            detections,
        )


@dataclass(frozen=True)
class Error:
    code: ErrorCode
    message: str
    frame_id: int | None = None

    def serialize(self) -> bytes:
        has_frame = self.frame_id is not None
        return (
            _header(MessageType.ERROR)
            + _ERROR_HEAD.pack(self.code, has_frame, self.frame_id if has_frame else 0)
            + _pack_str(self.message)
        )

    @classmethod
    def _parse(cls, r: _Reader) -> Error:
        code, has_frame, frame_id = r.unpack(_ERROR_HEAD, "error header")
        message = r.string("message")
        r.end()
        try:
            known = ErrorCode(code)
        except ValueError:
            raise ProtocolError(ErrorCode.MALFORMED, f"unknown error code {code}") from None
        return cls(known, message, frame_id if has_frame else None)


@dataclass(frozen=True)
class Ping:
    nonce: int
    sent_ms: float

    def serialize(self) -> bytes:
        return _header(MessageType.PING) + _PING.pack(self.nonce, self.sent_ms)

    def answer(self) -> Pong:
        return Pong(self.nonce, self.sent_ms)

    @classmethod
    def _parse(cls, r: _Reader) -> Ping:
        nonce, sent_ms = r.unpack(_PING, "ping body")
        r.end()
        return cls(nonce, sent_ms)


@dataclass(frozen=True)
class Pong:
    nonce: int
    sent_ms: float

    def serialize(self) -> bytes:
        return _header(MessageType.PONG) + _PING.pack(self.nonce, self.sent_ms)

    @classmethod
    def _parse(cls, r: _Reader) -> Pong:
        nonce, sent_ms = r.unpack(_PING, "pong body")
        r.end()
        return cls(nonce, sent_ms)


@dataclass(frozen=True)
class Dropped:
    frame_id: int
    reason: DropReason

    def serialize(self) -> bytes:
        return _header(MessageType.DROPPED) + _DROPPED.pack(self.frame_id, self.reason)

    @classmethod
    def _parse(cls, r: _Reader) -> Dropped:
        frame_id, reason = r.unpack(_DROPPED, "dropped body")
        r.end()
        try:
            why = DropReason(reason)
        except ValueError:
            raise ProtocolError(ErrorCode.MALFORMED, f"unknown drop reason {reason}") from None
        return cls(frame_id, why)


Message = Hello | Frame | Result | Error | Ping | Pong | Dropped

_PARSERS: dict[MessageType, Callable[[_Reader], Message]] = {
    MessageType.HELLO: Hello._parse,
    MessageType.FRAME: Frame._parse,
    MessageType.RESULT: Result._parse,
    MessageType.ERROR: Error._parse,
    MessageType.PING: Ping._parse,
    MessageType.PONG: Pong._parse,
    MessageType.DROPPED: Dropped._parse,
}


def parse(data: bytes | bytearray | memoryview) -> Message:
    """Parse one whole message. A FRAME's payload is a view into ``data`` (no copy)."""
    view = memoryview(data).cast("B")
    if len(view) < HEADER_SIZE:
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"message too short: expected at least {HEADER_SIZE} header bytes, got {len(view)}",
        )
    magic, version, kind = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"bad magic: expected {MAGIC!r}, got {bytes(magic)!r}"
        )
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"unsupported protocol version: expected {PROTOCOL_VERSION}, got {version}",
        )
    try:
        message_type = MessageType(kind)
    except ValueError:
        known = ", ".join(f"{t.value} ({t.name})" for t in MessageType)
        raise ProtocolError(
            ErrorCode.MALFORMED, f"unknown message type {kind}; expected one of {known}"
        ) from None
    return _PARSERS[message_type](_Reader(view, message_type))
