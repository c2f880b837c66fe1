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
             [| f32 decode_ms]   only in the answer to an IMAGE: the node's decode time
             boxes are in the frame tensor's pixel space (the letterboxed model input)
    ERROR    (either way)
             u16 code | u8 has_frame | u32 frame_id | str message
    PING     (client -> node) u32 nonce | f64 sent_ms
    PONG     (node -> client) u32 nonce | f64 sent_ms (echoed from the ping)
    DROPPED  (node -> client) u32 frame_id | u8 reason
             a frame that will never get a RESULT, and why (see DropReason)
    AUTH     (client -> node) u8 auth_version | str token | u32 encodings
             the first message of a client that knows this step (issue 8), and again
             while streaming to refresh the token before it expires. ``token`` is the
             web app's signed stream token, empty for anonymous use; ``encodings`` is a
             bitmask of the FrameEncoding values the client can send (1 << encoding).
    WELCOME  (node -> client) u32 encodings | u32 token_expires_in_ms | str identity
             the node's answer to each accepted AUTH: the encodings it accepts (bitmask,
             as above), how long until the presented token expires (0: never, anonymous),
             and who the node takes the client to be. A refused AUTH is answered with an
             ERROR (AUTH_REQUIRED, AUTH_FAILED) and the connection closes.

    IMAGE    (client -> node) u32 frame_id | f64 capture_ms | u8 image_version
             | u8 encoding | u16 width_px | u16 height_px | u16 left_px | u16 top_px
             | payload (the encoded picture, to the end of the message)
             a compressed frame (issue 9): only the letterboxed picture travels, a JPEG or
             WebP (FrameEncoding) of exactly width x height pixels that sits at (left, top)
             in the model input the HELLO announced; the node pads the rest with
             the letterbox pad value (114, pyodide_client/preprocess.py). A client sends
             IMAGE only in an encoding the node's WELCOME accepts; RAW frames stay FRAMEs.
             The answer is a RESULT with the decode_ms tail, which a client that never
             sends IMAGE never sees.
    TRACE    (client -> node) u8 trace_version | 16 bytes trace_id | 8 bytes span_id
             | u8 trace_flags | u32 frame_id
             W3C trace context (a ``traceparent``, version 00) for the frame ``frame_id``,
             sent right before that sampled FRAME or IMAGE (issue 12): the node records its
             spans (queue, batch, decode, inference, post-processing) as children of
             ``span_id`` in trace ``trace_id``. Sent only to a node whose WELCOME has the
             TRACE bit in ``features``; an unsampled frame has none. No answer.

Handshake. The node speaks first (HELLO), as in the first revision, so a client that
predates AUTH keeps working where the node allows anonymous use. A current client sends
AUTH right after the HELLO and sends frames only after WELCOME. PINGs need no AUTH (probes
measure round trips without a token), but an unauthenticated connection is closed after a
short deadline and never takes a stream slot.

Evolution. AUTH, WELCOME and TRACE may gain fields at their end in later
revisions: a reader ignores bytes after the fields it knows. WELCOME's first such field is
``u32 features`` (issue 12; bit 0: the node takes TRACE), written only when non-zero,
so a WELCOME without features keeps its first revision's bytes. The second (issue 16) is
the node's WebTransport offer, ``u16 wt_port | u8 size | size bytes`` (size 0, or 32 for
the SHA-256 of a self-signed certificate a page pins with serverCertificateHashes),
written only when the node serves WebTransport (``features`` then always precedes it).
A reader also keeps error codes and drop reasons it does not know as plain integers
rather than refusing the message, so a node can add one without breaking older pages.

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
    "AUTH_VERSION",
    "CLOSE_TRY_AGAIN_LATER",
    "HEADER_SIZE",
    "IMAGE_VERSION",
    "MAGIC",
    "PROTOCOL_VERSION",
    "TRACE_FEATURE",
    "Auth",
    "Detection",
    "DropReason",
    "Dropped",
    "Dtype",
    "Error",
    "ErrorCode",
    "Frame",
    "FrameEncoding",
    "Hello",
    "Image",
    "Message",
    "MessageType",
    "Ping",
    "Pong",
    "ProtocolError",
    "Result",
    "Trace",
    "Welcome",
    "encodings_mask",
    "mask_encodings",
    "parse",
    "peek_type",
]

MAGIC = b"ES"
PROTOCOL_VERSION = 1
HEADER_SIZE = 4
SHA256_SIZE = 32
MAX_NDIM = 8
AUTH_VERSION = 1
IMAGE_VERSION = 1
# WebSocket close code (RFC 6455 registry) of a node refusing a stream at capacity: the
# page then skips that node for a cool-down instead of backing off as from a failure.
CLOSE_TRY_AGAIN_LATER = 1013

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
_WELCOME_HEAD = struct.Struct("<II")
_WT_OFFER = struct.Struct("<HB")  # WELCOME: u16 wt_port | u8 hash size (0 or 32)
_TRACE = struct.Struct("<B16s8sBI")
TRACE_FEATURE = 1  # WELCOME features bit: the node records spans for TRACE
_IMAGE_HEAD = struct.Struct("<BBHHHH")
_F32 = struct.Struct("<f")


class MessageType(enum.IntEnum):
    HELLO = 1
    FRAME = 2
    RESULT = 3
    ERROR = 4
    PING = 5
    PONG = 6
    DROPPED = 7
    AUTH = 8
    WELCOME = 9
    IMAGE = 10
    TRACE = 11


class Dtype(enum.IntEnum):
    UINT8 = 1
    FLOAT32 = 2

    @property
    def itemsize(self) -> int:
        return 1 if self is Dtype.UINT8 else 4

    @property
    def label(self) -> str:
        return self.name.lower()


class FrameEncoding(enum.IntEnum):
    """How a frame's pixels travel. RAW is the FRAME message's uint8 tensor."""

    RAW = 0
    JPEG = 1
    WEBP = 2


def encodings_mask(encodings: tuple[FrameEncoding, ...] | list[FrameEncoding]) -> int:
    """The u32 bitmask AUTH and WELCOME carry: bit ``1 << encoding`` per encoding."""
    mask = 0
    for encoding in encodings:
        mask |= 1 << int(encoding)
    return mask


def mask_encodings(mask: int) -> tuple[FrameEncoding, ...]:
    """The known encodings in a bitmask, in code order; unknown bits are ignored."""
    return tuple(e for e in FrameEncoding if mask & (1 << int(e)))


class ErrorCode(enum.IntEnum):
    """Why a message was refused. Codes below 100 are about one message and leave the
    connection open; codes from 100 describe the connection or the node, and the node
    closes the connection after sending one."""

    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    UNEXPECTED_MESSAGE = 3
    WRONG_SHAPE = 4
    WRONG_DTYPE = 5
    INFERENCE_FAILED = 6
    NOT_BINARY = 7
    IMAGE_INVALID = 8  # a compressed frame that does not decode
    IMAGE_TOO_LARGE = 9  # a compressed frame whose declared size is out of bounds
    TOO_MANY_IN_FLIGHT = 10  # a frame beyond the node's max_in_flight window
    OVERLOADED = 100
    INTERNAL = 101
    AUTH_REQUIRED = 102  # a frame before an accepted AUTH on a node that needs tokens
    AUTH_FAILED = 103  # a token that is forged, expired, or for another audience/origin
    TOKEN_EXPIRED = 104  # the stream's token expired and was not refreshed in time
    TOO_MANY_ERRORS = 105  # the connection used up its budget of refused messages
    IDLE_TIMEOUT = 106  # no AUTH, or no frame, within the node's deadline
    SLOW_READER = 107  # the client does not read what the node sends


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
    decode_ms: float | None = None  # only for an IMAGE: serialized as the optional tail

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
        if self.decode_ms is not None:
            parts.append(_F32.pack(self.decode_ms))
        return b"".join(parts)

    @classmethod
    def _parse(cls, r: _Reader) -> Result:
        frame_id, capture_ms, queue_ms, inference_ms, post_ms, batch_size, count = r.unpack(
            _RESULT_HEAD, "result header"
        )
        detections = tuple(
            Detection(*r.unpack(_DETECTION, f"detection {i}")) for i in range(int(count))
        )
        decode_ms = None
        if len(r.data) - r.pos >= _F32.size:
            (decode_ms,) = r.unpack(_F32, "decode_ms")
        r.end()
        return cls(
            frame_id,
            capture_ms,
            queue_ms,
            inference_ms,
            post_ms,
            batch_size,
            detections,
            decode_ms,
        )


@dataclass(frozen=True)
class Error:
    code: ErrorCode | int  # an int only for a code this revision does not know
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
        known: ErrorCode | int
        try:
            known = ErrorCode(code)
        except ValueError:
            known = int(code)  # a newer node's code: kept, not refused
        return cls(known, message, frame_id if has_frame else None)

    @property
    def closes_connection(self) -> bool:
        """Codes from 100 describe the connection; the node closes it after them."""
        return int(self.code) >= 100


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
    reason: DropReason | int  # an int only for a reason this revision does not know

    @property
    def reason_name(self) -> str:
        if isinstance(self.reason, DropReason):
            return self.reason.name.lower()
        return f"reason {self.reason}"

    def serialize(self) -> bytes:
        return _header(MessageType.DROPPED) + _DROPPED.pack(self.frame_id, self.reason)

    @classmethod
    def _parse(cls, r: _Reader) -> Dropped:
        frame_id, reason = r.unpack(_DROPPED, "dropped body")
        r.end()
        why: DropReason | int
        try:
            why = DropReason(reason)
        except ValueError:
            why = int(reason)  # a newer node's reason: kept, not refused
        return cls(frame_id, why)


@dataclass(frozen=True)
class Auth:
    """The client's credentials and what it can send; see the module docstring."""

    token: str
    encodings: int = 1 << FrameEncoding.RAW  # bitmask, see encodings_mask()
    auth_version: int = AUTH_VERSION

    def serialize(self) -> bytes:
        return (
            _header(MessageType.AUTH)
            + _U8.pack(self.auth_version)
            + _pack_str(self.token)
            + _U32.pack(self.encodings)
        )

    @classmethod
    def _parse(cls, r: _Reader) -> Auth:
        version = r.u8("auth_version")
        if version != AUTH_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"unsupported AUTH version: expected {AUTH_VERSION}, got {version}",
            )
        token = r.string("token")
        (encodings,) = r.unpack(_U32, "encodings")
        # later revisions may append fields: what follows is ignored, not refused
        return cls(token, int(encodings), version)


@dataclass(frozen=True)
class Welcome:
    """The node's answer to an accepted AUTH; see the module docstring."""

    encodings: int  # bitmask of FrameEncoding the node accepts
    token_expires_in_ms: int  # 0: the stream needs no token refresh
    identity: str
    features: int = 0  # bitmask: TRACE_FEATURE; written only when non-zero
    # The node's WebTransport endpoint (issue 16): its UDP port (0: none) and, for a
    # self-signed certificate, the SHA-256 (hex) a page passes as serverCertificateHashes
    # ("": a CA-signed one). Written only with a port, after ``features``.
    wt_port: int = 0
    wt_cert_sha256: str = ""

    @property
    def accepted_encodings(self) -> tuple[FrameEncoding, ...]:
        return mask_encodings(self.encodings)

    def serialize(self) -> bytes:
        tail = b""
        if self.wt_port:
            digest = bytes.fromhex(self.wt_cert_sha256)
            if len(digest) not in (0, SHA256_SIZE):
                raise ValueError(
                    f"wt_cert_sha256 must be 64 hex digits or empty, got {self.wt_cert_sha256!r}"
                )
            tail = _U32.pack(self.features) + _WT_OFFER.pack(self.wt_port, len(digest)) + digest
        elif self.features:
            tail = _U32.pack(self.features)
        return (
            _header(MessageType.WELCOME)
            + _WELCOME_HEAD.pack(self.encodings, self.token_expires_in_ms)
            + _pack_str(self.identity)
            + tail
        )

    @classmethod
    def _parse(cls, r: _Reader) -> Welcome:
        encodings, expires_in_ms = r.unpack(_WELCOME_HEAD, "welcome header")
        identity = r.string("identity")
        # later fields, read when present; shorter trailing bytes are ignored as ever
        features = r.unpack(_U32, "features")[0] if len(r.data) - r.pos >= _U32.size else 0
        wt_port, wt_cert_sha256 = 0, ""
        if len(r.data) - r.pos >= _WT_OFFER.size:
            wt_port, digest_size = r.unpack(_WT_OFFER, "webtransport offer")
            if digest_size not in (0, SHA256_SIZE):
                raise ProtocolError(
                    ErrorCode.MALFORMED,
                    f"WELCOME certificate hash: expected 0 or {SHA256_SIZE} bytes, "
                    f"got {digest_size}",
                )
            wt_cert_sha256 = bytes(r.raw(digest_size, "certificate hash")).hex()
        return cls(
            int(encodings), int(expires_in_ms), identity, int(features), wt_port, wt_cert_sha256
        )

    @property
    def takes_traces(self) -> bool:
        return bool(self.features & TRACE_FEATURE)


@dataclass(frozen=True)
class Trace:
    """W3C trace context for one sampled frame; see the module docstring."""

    trace_id: bytes  # 16 bytes, not all zero
    span_id: bytes  # 8 bytes, not all zero: the page's span the node's spans hang under
    trace_flags: int  # bit 0: sampled
    frame_id: int
    trace_version: int = 0

    def __post_init__(self) -> None:
        if len(self.trace_id) != 16 or not any(self.trace_id):
            raise ProtocolError(
                ErrorCode.MALFORMED, "TRACE trace_id: expected 16 bytes, not all zero"
            )
        if len(self.span_id) != 8 or not any(self.span_id):
            raise ProtocolError(
                ErrorCode.MALFORMED, "TRACE span_id: expected 8 bytes, not all zero"
            )

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` header value."""
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{self.trace_flags:02x}"

    def serialize(self) -> bytes:
        return _header(MessageType.TRACE) + _TRACE.pack(
            self.trace_version, self.trace_id, self.span_id, self.trace_flags, self.frame_id
        )

    @classmethod
    def _parse(cls, r: _Reader) -> Trace:
        version, trace_id, span_id, flags, frame_id = r.unpack(_TRACE, "trace context")
        # later revisions may add fields at the end: ignored here
        return cls(bytes(trace_id), bytes(span_id), int(flags), int(frame_id), int(version))


@dataclass(frozen=True)
class Image:
    """A compressed frame: the letterboxed picture only; see the module docstring."""

    frame_id: int
    capture_ms: float
    encoding: FrameEncoding
    width_px: int
    height_px: int
    left_px: int
    top_px: int
    payload: bytes | bytearray | memoryview
    image_version: int = IMAGE_VERSION

    @staticmethod
    def header_bytes(
        frame_id: int,
        capture_ms: float,
        encoding: FrameEncoding,
        width_px: int,
        height_px: int,
        left_px: int,
        top_px: int,
    ) -> bytes:
        """Everything before the payload (see Frame.header_bytes)."""
        return (
            _header(MessageType.IMAGE)
            + _FRAME_ID_TIME.pack(frame_id, capture_ms)
            + _IMAGE_HEAD.pack(IMAGE_VERSION, encoding, width_px, height_px, left_px, top_px)
        )

    def serialize(self) -> bytes:
        head = self.header_bytes(
            self.frame_id,
            self.capture_ms,
            self.encoding,
            self.width_px,
            self.height_px,
            self.left_px,
            self.top_px,
        )
        return head + bytes(self.payload)

    def check(self, input_width_px: int, input_height_px: int | None = None) -> None:
        """Raise IMAGE_TOO_LARGE unless the picture fits the model input (W x H; a
        square one when the height is omitted)."""
        in_h = input_width_px if input_height_px is None else input_height_px
        right = self.left_px + self.width_px
        bottom = self.top_px + self.height_px
        if right > input_width_px or bottom > in_h:
            raise ProtocolError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"frame {self.frame_id}: a {self.width_px}x{self.height_px} picture at "
                f"({self.left_px}, {self.top_px}) must fit the {input_width_px}x{in_h} "
                f"model input, but reaches ({right}, {bottom})",
                self.frame_id,
            )

    @classmethod
    def _parse(cls, r: _Reader) -> Image:
        frame_id, capture_ms = r.unpack(_FRAME_ID_TIME, "frame_id and capture_ms")
        assert isinstance(frame_id, int)
        assert isinstance(capture_ms, float)
        try:
            version, code, width, height, left, top = r.unpack(_IMAGE_HEAD, "image header")
        except ProtocolError as exc:
            exc.frame_id = frame_id
            raise
        if version != IMAGE_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"frame {frame_id}: unsupported IMAGE version: expected {IMAGE_VERSION}, "
                f"got {version}",
                frame_id,
            )
        if code not in (FrameEncoding.JPEG, FrameEncoding.WEBP):
            raise ProtocolError(
                ErrorCode.IMAGE_INVALID,
                f"frame {frame_id}: IMAGE encoding must be {FrameEncoding.JPEG.value} (JPEG) "
                f"or {FrameEncoding.WEBP.value} (WEBP), got {code}"
                + (" (RAW frames travel as FRAME messages)" if code == FrameEncoding.RAW else ""),
                frame_id,
            )
        if width == 0 or height == 0:
            raise ProtocolError(
                ErrorCode.IMAGE_INVALID,
                f"frame {frame_id}: picture size must be positive, got {width}x{height}",
                frame_id,
            )
        payload = r.rest()
        if not payload:
            raise ProtocolError(
                ErrorCode.IMAGE_INVALID,
                f"frame {frame_id}: expected an encoded picture after the IMAGE header, got "
                "no bytes",
                frame_id,
            )
        return cls(
            frame_id, capture_ms, FrameEncoding(code), width, height, left, top, payload, version
        )


Message = Hello | Frame | Result | Error | Ping | Pong | Dropped | Auth | Welcome | Image | Trace

_PARSERS: dict[MessageType, Callable[[_Reader], Message]] = {
    MessageType.HELLO: Hello._parse,
    MessageType.FRAME: Frame._parse,
    MessageType.RESULT: Result._parse,
    MessageType.ERROR: Error._parse,
    MessageType.PING: Ping._parse,
    MessageType.PONG: Pong._parse,
    MessageType.DROPPED: Dropped._parse,
    MessageType.AUTH: Auth._parse,
    MessageType.WELCOME: Welcome._parse,
    MessageType.IMAGE: Image._parse,
    MessageType.TRACE: Trace._parse,
}


def peek_type(data: bytes | bytearray | memoryview) -> MessageType:
    """The message type from the header alone, without parsing the body: lets a server
    refuse a message type it never accepts (a megabyte RESULT sent by a client) at the
    cost of four bytes. Raises ProtocolError for a bad header, like ``parse``."""
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
        return MessageType(kind)
    except ValueError:
        known = ", ".join(f"{t.value} ({t.name})" for t in MessageType)
        raise ProtocolError(
            ErrorCode.MALFORMED, f"unknown message type {kind}; expected one of {known}"
        ) from None


def parse(data: bytes | bytearray | memoryview) -> Message:
    """Parse one whole message. A FRAME's or IMAGE's payload is a view into ``data`` (no copy)."""
    message_type = peek_type(data)
    return _PARSERS[message_type](_Reader(memoryview(data).cast("B"), message_type))
