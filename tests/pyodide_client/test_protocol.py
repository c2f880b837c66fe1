"""Golden-bytes tests for pyodide_client.protocol, in both directions.

Every expected byte string below is written out by hand from the layout in the module
docstring (little-endian; strings are a u16 byte length then UTF-8), never produced by the
code under test, so any change to the wire format shows up here as a failing diff.
"""

from __future__ import annotations

import math

import pytest

from pyodide_client import protocol
from pyodide_client.protocol import (
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    Auth,
    Detection,
    Dropped,
    DropReason,
    Dtype,
    Error,
    ErrorCode,
    Frame,
    FrameEncoding,
    Hello,
    Image,
    Message,
    MessageType,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Trace,
    Welcome,
    encodings_mask,
    mask_encodings,
    parse,
    peek_type,
)


def h(text: str) -> bytes:
    """Hex with spaces and line breaks allowed, for readable golden bytes."""
    return bytes.fromhex(text)


# --- golden messages ----------------------------------------------------------------------
# Little-endian encodings used below, worked out by hand:
#   f64 1.5  = 0x3FF8000000000000 -> 00 00 00 00 00 00 f8 3f
#   f64 2.0  = 0x4000000000000000 -> 00 00 00 00 00 00 00 40
#   f64 1.0  = 0x3FF0000000000000 -> 00 00 00 00 00 00 f0 3f
#   f64 -0.5 = 0xBFE0000000000000 -> 00 00 00 00 00 00 e0 bf
#   f32 0.5  = 0x3F000000 -> 00 00 00 3f      f32 1.0  = 0x3F800000 -> 00 00 80 3f
#   f32 0.25 = 0x3E800000 -> 00 00 80 3e      f32 2.0  = 0x40000000 -> 00 00 00 40
#   f32 3.0  = 0x40400000 -> 00 00 40 40      f32 4.0  = 0x40800000 -> 00 00 80 40
#   f32 -2.0 = 0xC0000000 -> 00 00 00 c0      f32 0.75 = 0x3F400000 -> 00 00 40 3f

SHA = bytes(range(32))

HELLO = Hello(
    node_name="n1",
    model_name="m",
    model_sha256=SHA.hex(),
    dtype=Dtype.UINT8,
    frame_shape=(3, 4, 4),
    class_names=("a", "bc"),
    max_in_flight=2,
)
HELLO_BYTES = (
    h("4553 01 01")  # "ES", version 1, HELLO
    + h("0200 6e31")  # node_name "n1"
    + h("0100 6d")  # model_name "m"
    + SHA  # 32 raw digest bytes
    + h("01")  # dtype uint8
    + h("03 03000000 04000000 04000000")  # ndim 3, shape (3, 4, 4)
    + h("0200")  # class count 2
    + h("0100 61")  # "a"
    + h("0200 6263")  # "bc"
    + h("0200")  # max_in_flight 2
)

FRAME_U8 = Frame(
    frame_id=7,
    capture_ms=1.5,
    dtype=Dtype.UINT8,
    shape=(3, 2, 2),
    payload=bytes(range(12)),
)
FRAME_U8_HEADER = (
    h("4553 01 02")  # "ES", version 1, FRAME
    + h("07000000")  # frame_id 7
    + h("000000000000f83f")  # capture_ms 1.5
    + h("01")  # dtype uint8
    + h("03 03000000 02000000 02000000")  # ndim 3, shape (3, 2, 2)
)
FRAME_U8_BYTES = FRAME_U8_HEADER + h("00 01 02 03 04 05 06 07 08 09 0a 0b")

FRAME_F32 = Frame(
    frame_id=0xFFFFFFFF,
    capture_ms=-0.5,
    dtype=Dtype.FLOAT32,
    shape=(1, 3),
    payload=h("0000803f 000000c0 0000403f"),  # 1.0, -2.0, 0.75
)
FRAME_F32_BYTES = (
    h("4553 01 02")
    + h("ffffffff")  # frame_id 2**32 - 1
    + h("000000000000e0bf")  # capture_ms -0.5
    + h("02")  # dtype float32
    + h("02 01000000 03000000")  # ndim 2, shape (1, 3)
    + h("0000803f 000000c0 0000403f")
)

RESULT_EMPTY = Result(
    frame_id=9,
    capture_ms=2.0,
    queue_ms=0.5,
    inference_ms=1.0,
    post_ms=0.25,
    batch_size=4,
    detections=(),
)
RESULT_EMPTY_BYTES = (
    h("4553 01 03")  # RESULT
    + h("09000000")  # frame_id 9
    + h("0000000000000040")  # capture_ms 2.0
    + h("0000003f")  # queue_ms 0.5
    + h("0000803f")  # inference_ms 1.0
    + h("0000803e")  # post_ms 0.25
    + h("0400")  # batch_size 4
    + h("0000")  # count 0
)

RESULT_TWO = Result(
    frame_id=0x01020304,
    capture_ms=1.0,
    queue_ms=0.0,
    inference_ms=2.0,
    post_ms=0.5,
    batch_size=1,
    detections=(
        Detection(class_id=1, score=0.5, x1=1.0, y1=2.0, x2=3.0, y2=4.0),
        Detection(class_id=0x0102, score=0.75, x1=0.0, y1=0.25, x2=2.0, y2=-2.0),
    ),
)
RESULT_TWO_BYTES = (
    h("4553 01 03")
    + h("04030201")  # frame_id 0x01020304
    + h("000000000000f03f")  # capture_ms 1.0
    + h("00000000")  # queue_ms 0.0
    + h("00000040")  # inference_ms 2.0
    + h("0000003f")  # post_ms 0.5
    + h("0100")  # batch_size 1
    + h("0200")  # count 2
    + h("0100 0000003f 0000803f 00000040 00004040 00008040")
    + h("0201 0000403f 00000000 0000803e 00000040 000000c0")
)

ERROR_WITH_FRAME = Error(code=ErrorCode.WRONG_SHAPE, message="bad", frame_id=5)
ERROR_WITH_FRAME_BYTES = (
    h("4553 01 04")  # ERROR
    + h("0400")  # code 4 (WRONG_SHAPE)
    + h("01")  # has_frame
    + h("05000000")  # frame_id 5
    + h("0300 626164")  # "bad"
)

ERROR_NO_FRAME = Error(code=ErrorCode.OVERLOADED, message="é!")
ERROR_NO_FRAME_BYTES = (
    h("4553 01 04")
    + h("6400")  # code 100 (OVERLOADED)
    + h("00")  # no frame
    + h("00000000")  # frame_id slot, zero
    + h("0300 c3a9 21")  # "é!" is three UTF-8 bytes, two characters
)

PING = Ping(nonce=0x01020304, sent_ms=1.0)
PING_BYTES = h("4553 01 05") + h("04030201") + h("000000000000f03f")

PONG = Pong(nonce=0x01020304, sent_ms=1.0)
PONG_BYTES = h("4553 01 06") + h("04030201") + h("000000000000f03f")

DROPPED = Dropped(frame_id=3, reason=DropReason.SUPERSEDED)
DROPPED_BYTES = h("4553 01 07") + h("03000000") + h("01")

DROPPED_SHUTDOWN = Dropped(frame_id=0x10000, reason=DropReason.SHUTTING_DOWN)
DROPPED_SHUTDOWN_BYTES = h("4553 01 07") + h("00000100") + h("02")

AUTH = Auth(token="abc", encodings=0b011)
AUTH_BYTES = (
    h("4553 01 08")  # "ES", version 1, AUTH
    + h("01")  # auth_version 1
    + h("0300 616263")  # token "abc"
    + h("03000000")  # encodings: raw (bit 0) | jpeg (bit 1)
)

AUTH_ANONYMOUS = Auth(token="")
AUTH_ANONYMOUS_BYTES = h("4553 01 08") + h("01") + h("0000") + h("01000000")  # raw only

WELCOME = Welcome(encodings=0b011, token_expires_in_ms=60000, identity="kiosk-1")
WELCOME_BYTES = (
    h("4553 01 09")  # WELCOME
    + h("03000000")  # encodings raw | jpeg
    + h("60ea0000")  # token_expires_in_ms 60000
    + h("0700 6b696f736b2d31")  # identity "kiosk-1"
)

WELCOME_TRACING = Welcome(encodings=0b001, token_expires_in_ms=0, identity="", features=1)
WELCOME_TRACING_BYTES = (
    h("4553 01 09")  # WELCOME
    + h("01000000")  # encodings raw
    + h("00000000")  # token_expires_in_ms 0
    + h("0000")  # identity ""
    + h("01000000")  # features: TRACE (issue 12)
)

TRACE = Trace(
    trace_id=bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
    span_id=bytes.fromhex("00f067aa0ba902b7"),
    trace_flags=1,
    frame_id=7,
)
TRACE_BYTES = (
    h("4553 01 0b")  # TRACE
    + h("00")  # trace_version 0 (W3C traceparent version 00)
    + h("4bf92f3577b34da6a3ce929d0e0e4736")  # trace_id
    + h("00f067aa0ba902b7")  # parent span_id
    + h("01")  # trace_flags: sampled
    + h("07000000")  # frame_id 7
)

RESULT_DECODED = Result(
    frame_id=9,
    capture_ms=2.0,
    queue_ms=0.5,
    inference_ms=1.0,
    post_ms=0.25,
    batch_size=4,
    detections=(),
    decode_ms=0.75,
)
RESULT_DECODED_BYTES = RESULT_EMPTY_BYTES + h("0000403f")  # the IMAGE tail: decode_ms 0.75

IMAGE_JPEG = Image(
    frame_id=7,
    capture_ms=1.5,
    encoding=FrameEncoding.JPEG,
    width_px=416,
    height_px=312,
    left_px=0,
    top_px=52,
    payload=h("ffd8 ffd9"),
)
IMAGE_JPEG_HEADER = (
    h("4553 01 0a")  # "ES", version 1, IMAGE (10)
    + h("07000000")  # frame_id 7
    + h("000000000000f83f")  # capture_ms 1.5
    + h("01")  # image_version 1
    + h("01")  # encoding 1 (JPEG)
    + h("a001 3801")  # width 416, height 312
    + h("0000 3400")  # left 0, top 52
)
IMAGE_JPEG_BYTES = IMAGE_JPEG_HEADER + h("ffd8 ffd9")

IMAGE_WEBP = Image(
    frame_id=0xFFFFFFFF,
    capture_ms=-0.5,
    encoding=FrameEncoding.WEBP,
    width_px=1,
    height_px=2,
    left_px=3,
    top_px=0x0102,
    payload=b"RIFF",
)
IMAGE_WEBP_BYTES = (
    h("4553 01 0a")
    + h("ffffffff")
    + h("000000000000e0bf")  # capture_ms -0.5
    + h("01 02")  # image_version 1, encoding 2 (WEBP)
    + h("0100 0200 0300 0201")  # width 1, height 2, left 3, top 0x0102
    + b"RIFF"
)

GOLDEN: list[tuple[str, Message, bytes]] = [
    ("hello", HELLO, HELLO_BYTES),
    ("frame-uint8", FRAME_U8, FRAME_U8_BYTES),
    ("frame-float32", FRAME_F32, FRAME_F32_BYTES),
    ("result-empty", RESULT_EMPTY, RESULT_EMPTY_BYTES),
    ("result-two", RESULT_TWO, RESULT_TWO_BYTES),
    ("error-with-frame", ERROR_WITH_FRAME, ERROR_WITH_FRAME_BYTES),
    ("error-no-frame", ERROR_NO_FRAME, ERROR_NO_FRAME_BYTES),
    ("ping", PING, PING_BYTES),
    ("pong", PONG, PONG_BYTES),
    ("dropped", DROPPED, DROPPED_BYTES),
    ("dropped-shutdown", DROPPED_SHUTDOWN, DROPPED_SHUTDOWN_BYTES),
    ("auth", AUTH, AUTH_BYTES),
    ("auth-anonymous", AUTH_ANONYMOUS, AUTH_ANONYMOUS_BYTES),
    ("welcome", WELCOME, WELCOME_BYTES),
    ("welcome-tracing", WELCOME_TRACING, WELCOME_TRACING_BYTES),
    ("trace", TRACE, TRACE_BYTES),
    ("result-decoded", RESULT_DECODED, RESULT_DECODED_BYTES),
    ("image-jpeg", IMAGE_JPEG, IMAGE_JPEG_BYTES),
    ("image-webp", IMAGE_WEBP, IMAGE_WEBP_BYTES),
]
GOLDEN_IDS = [name for name, _, _ in GOLDEN]


@pytest.mark.parametrize(("message", "expected"), [g[1:] for g in GOLDEN], ids=GOLDEN_IDS)
def test_serialize_gives_golden_bytes(message: Message, expected: bytes) -> None:
    assert message.serialize() == expected


@pytest.mark.parametrize(("expected", "data"), [g[1:] for g in GOLDEN], ids=GOLDEN_IDS)
def test_parse_golden_bytes(expected: Message, data: bytes) -> None:
    parsed = parse(data)
    assert type(parsed) is type(expected)
    assert parsed == expected


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda t: t.__name__)
@pytest.mark.parametrize(("expected", "data"), [g[1:] for g in GOLDEN], ids=GOLDEN_IDS)
def test_parse_accepts_any_buffer(expected: Message, data: bytes, wrap: type) -> None:
    assert parse(wrap(data)) == expected


def test_message_type_and_dtype_codes_are_the_documented_ones() -> None:
    assert MAGIC == b"ES"
    assert PROTOCOL_VERSION == 1
    assert HEADER_SIZE == 4
    assert {t.name: t.value for t in MessageType} == {
        "HELLO": 1,
        "FRAME": 2,
        "RESULT": 3,
        "ERROR": 4,
        "PING": 5,
        "PONG": 6,
        "DROPPED": 7,
        "AUTH": 8,
        "WELCOME": 9,
        "IMAGE": 10,
        "TRACE": 11,
    }
    assert (Dtype.UINT8.value, Dtype.UINT8.itemsize, Dtype.UINT8.label) == (1, 1, "uint8")
    assert (Dtype.FLOAT32.value, Dtype.FLOAT32.itemsize, Dtype.FLOAT32.label) == (
        2,
        4,
        "float32",
    )


def test_parsed_types_are_enums_not_plain_ints() -> None:
    hello = parse(HELLO_BYTES)
    assert isinstance(hello, Hello)
    assert hello.dtype is Dtype.UINT8
    error = parse(ERROR_WITH_FRAME_BYTES)
    assert isinstance(error, Error)
    assert error.code is ErrorCode.WRONG_SHAPE
    dropped = parse(DROPPED_SHUTDOWN_BYTES)
    assert isinstance(dropped, Dropped)
    assert dropped.reason is DropReason.SHUTTING_DOWN


# --- frames -------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", [FRAME_U8, FRAME_F32], ids=["uint8", "float32"])
def test_frame_header_bytes_plus_payload_is_serialize(frame: Frame) -> None:
    head = Frame.header_bytes(frame.frame_id, frame.capture_ms, frame.dtype, frame.shape)
    assert head + bytes(frame.payload) == frame.serialize()


def test_frame_header_bytes_golden() -> None:
    assert Frame.header_bytes(7, 1.5, Dtype.UINT8, (3, 2, 2)) == FRAME_U8_HEADER


def test_parsed_frame_payload_is_a_view_into_the_message() -> None:
    # given a frame received into a mutable buffer
    data = bytearray(FRAME_U8_BYTES)
    # when it is parsed
    frame = parse(data)
    assert isinstance(frame, Frame)
    # then the payload is a zero-copy view: changing the buffer changes the payload
    assert isinstance(frame.payload, memoryview)
    data[-1] = 0xEE
    assert bytes(frame.payload)[-1] == 0xEE


@pytest.mark.parametrize(
    ("dtype", "shape", "expected"),
    [
        (Dtype.UINT8, (3, 2, 2), 12),
        (Dtype.FLOAT32, (3, 2, 2), 48),
        (Dtype.FLOAT32, (5,), 20),
        (Dtype.UINT8, (3, 0, 4), 0),
    ],
)
def test_expected_payload_bytes(dtype: Dtype, shape: tuple[int, ...], expected: int) -> None:
    assert Frame(1, 0.0, dtype, shape, b"").expected_payload_bytes == expected


def test_frame_check_accepts_matching_dtype_and_shape() -> None:
    FRAME_U8.check(Dtype.UINT8, (3, 2, 2))  # no exception


def test_frame_check_wrong_dtype() -> None:
    with pytest.raises(ProtocolError) as info:
        FRAME_U8.check(Dtype.FLOAT32, (3, 2, 2))
    err = info.value
    assert err.code is ErrorCode.WRONG_DTYPE
    assert err.frame_id == 7
    assert "expected dtype float32" in err.message
    assert "got uint8" in err.message


def test_frame_check_wrong_shape() -> None:
    with pytest.raises(ProtocolError) as info:
        FRAME_U8.check(Dtype.UINT8, (3, 4, 4))
    err = info.value
    assert err.code is ErrorCode.WRONG_SHAPE
    assert err.frame_id == 7
    assert "expected shape [3, 4, 4]" in err.message
    assert "got [3, 2, 2]" in err.message


def test_frame_check_checks_dtype_before_shape() -> None:
    with pytest.raises(ProtocolError) as info:
        FRAME_U8.check(Dtype.FLOAT32, (1,))
    assert info.value.code is ErrorCode.WRONG_DTYPE


# --- round trips --------------------------------------------------------------------------

ROUND_TRIP: list[Message] = [
    Hello("", "", "ff" * 32, Dtype.FLOAT32, (7,), (), 0),
    Hello(
        "node-ü",
        "nanodet-g-416",
        "0123456789abcdef" * 4,
        Dtype.UINT8,
        (3, 416, 416),
        ("person", "teddy bear", "日本"),
        0xFFFF,
    ),
    Hello("n", "m", "00" * 32, Dtype.UINT8, (1, 2, 3, 4, 5, 6, 7, 8), ("x",) * 300, 1),
    Frame(0, 0.0, Dtype.UINT8, (1,), b"\x00"),
    Frame(1, 1e300, Dtype.FLOAT32, (2, 1), b"\x00\x00\x80\x7f\x00\x00\x80\xff"),  # +inf, -inf
    Frame(0xFFFFFFFF, -math.inf, Dtype.UINT8, (3, 0, 5), b""),
    Frame(42, 1234567.125, Dtype.UINT8, (3, 5, 7), bytes(range(105))),
    Result(0, 0.0, 0.0, 0.0, 0.0, 0, ()),
    Result(
        0xFFFFFFFF,
        1.7e308,
        65504.0,
        0.125,
        3.0,
        0xFFFF,
        tuple(Detection(i, i / 8, -1.0, 0.5, 415.75, 1e6) for i in range(8)),
    ),
    Error(ErrorCode.MALFORMED, ""),
    Error(ErrorCode.INTERNAL, "x" * 0xFFFF, 0),
    Error(ErrorCode.NOT_BINARY, "text ☃", 0xFFFFFFFF),
    Ping(0, 0.0),
    Ping(0xFFFFFFFF, 1e-300),
    Pong(1, -12.5),
    Dropped(0xFFFFFFFF, DropReason.SHUTTING_DOWN),
]


@pytest.mark.parametrize("message", ROUND_TRIP, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    again = parse(message.serialize())
    assert again == message
    assert again.serialize() == message.serialize()


def test_error_code_round_trips_for_every_code() -> None:
    for code in ErrorCode:
        assert parse(Error(code, code.name, 1).serialize()) == Error(code, code.name, 1)


def test_error_frame_id_zero_is_distinct_from_none() -> None:
    assert parse(Error(ErrorCode.MALFORMED, "m", 0).serialize()) == Error(
        ErrorCode.MALFORMED, "m", 0
    )
    assert parse(Error(ErrorCode.MALFORMED, "m").serialize()) == Error(ErrorCode.MALFORMED, "m")


def test_ping_answer_is_a_pong_with_the_same_nonce_and_time() -> None:
    assert Ping(77, 12.25).answer() == Pong(77, 12.25)


def test_protocol_error_to_error() -> None:
    err = ProtocolError(ErrorCode.WRONG_DTYPE, "expected x, got y", 11)
    assert str(err) == "expected x, got y"
    assert err.to_error() == Error(ErrorCode.WRONG_DTYPE, "expected x, got y", 11)
    assert ProtocolError(ErrorCode.MALFORMED, "m").to_error().frame_id is None


# --- refusing to serialize what cannot be sent --------------------------------------------


def test_hello_with_short_digest_does_not_serialize() -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        Hello("n", "m", "ab" * 31, Dtype.UINT8, (3, 4, 4), (), 1).serialize()


def test_string_longer_than_u16_does_not_serialize() -> None:
    with pytest.raises(ValueError, match="65536 bytes long; at most 65535"):
        Error(ErrorCode.INTERNAL, "x" * 0x10000).serialize()


@pytest.mark.parametrize("shape", [(), tuple(range(1, 10))], ids=["ndim0", "ndim9"])
def test_shape_with_bad_ndim_does_not_serialize(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="1 to 8 dimensions"):
        Frame.header_bytes(1, 0.0, Dtype.UINT8, shape)


# --- parse errors -------------------------------------------------------------------------


def parse_error(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(data)
    return info.value


@pytest.mark.parametrize("data", [b"", b"E", b"ES\x01"], ids=["0", "1", "3"])
def test_too_short(data: bytes) -> None:
    err = parse_error(data)
    assert err.code is ErrorCode.MALFORMED
    assert err.message == f"message too short: expected at least 4 header bytes, got {len(data)}"
    assert err.frame_id is None


def test_bad_magic() -> None:
    err = parse_error(b"EX" + PING_BYTES[2:])
    assert err.code is ErrorCode.MALFORMED
    assert err.message == "bad magic: expected b'ES', got b'EX'"


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version(version: int) -> None:
    err = parse_error(b"ES" + bytes([version]) + PING_BYTES[3:])
    assert err.code is ErrorCode.UNSUPPORTED_VERSION
    assert err.message == f"unsupported protocol version: expected 1, got {version}"


@pytest.mark.parametrize("kind", [0, 12, 255])
def test_unknown_type(kind: int) -> None:
    err = parse_error(b"ES\x01" + bytes([kind]) + PING_BYTES[4:])
    assert err.code is ErrorCode.MALFORMED
    assert f"unknown message type {kind}" in err.message
    for name, value in [("HELLO", 1), ("PING", 5), ("DROPPED", 7)]:
        assert f"{value} ({name})" in err.message


def frame_field_at(offset: int) -> str:
    """Which FRAME field (of FRAME_U8_BYTES) the byte at ``offset`` belongs to."""
    if offset < 4:
        return "header"
    if offset < 16:  # u32 frame_id + f64 capture_ms, read together
        return "frame_id and capture_ms"
    if offset == 16:
        return "dtype"
    if offset == 17:
        return "ndim"
    if offset < 30:  # 3 * u32
        return "shape"
    return "payload"


@pytest.mark.parametrize("length", range(len(FRAME_U8_BYTES)))
def test_frame_truncated_at_every_byte(length: int) -> None:
    # given every proper prefix of a valid FRAME
    data = FRAME_U8_BYTES[:length]
    # when it is parsed, then the error names the field that ran short
    err = parse_error(data)
    assert err.code is ErrorCode.MALFORMED
    field = frame_field_at(length)
    if field == "header":
        assert err.message.startswith("message too short")
        assert err.frame_id is None
    elif field == "frame_id and capture_ms":
        assert err.message == (
            "FRAME message truncated: expected 12 more bytes for frame_id and capture_ms "
            f"at offset 4, got {length - 4}"
        )
        assert err.frame_id is None
    elif field in ("dtype", "ndim"):
        assert err.message == (
            f"FRAME message truncated: expected 1 more bytes for {field} at offset {length}, got 0"
        )
        assert err.frame_id == 7
    elif field == "shape":
        assert err.message == (
            f"FRAME message truncated: expected 12 more bytes for shape at offset 18, "
            f"got {length - 18}"
        )
        assert err.frame_id == 7
    else:
        assert err.message == (
            f"frame 7: shape [3, 2, 2] of uint8 needs a payload of 12 bytes, got {length - 30}"
        )
        assert err.frame_id == 7


def test_frame_payload_too_long() -> None:
    err = parse_error(FRAME_U8_BYTES + b"\x00\x00")
    assert err.code is ErrorCode.MALFORMED
    assert err.frame_id == 7
    assert err.message == "frame 7: shape [3, 2, 2] of uint8 needs a payload of 12 bytes, got 14"


def test_float32_frame_payload_counts_bytes_not_items() -> None:
    err = parse_error(FRAME_F32_BYTES[:-1])
    assert err.code is ErrorCode.MALFORMED
    assert err.frame_id == 0xFFFFFFFF
    assert "shape [1, 3] of float32 needs a payload of 12 bytes, got 11" in err.message


@pytest.mark.parametrize("code", [0, 3, 255])
def test_frame_unknown_dtype(code: int) -> None:
    data = bytearray(FRAME_U8_BYTES)
    data[16] = code
    err = parse_error(bytes(data))
    assert err.code is ErrorCode.WRONG_DTYPE
    assert err.frame_id == 7
    assert err.message == f"unknown dtype code {code}; expected one of 1 (uint8), 2 (float32)"


def test_hello_unknown_dtype_has_no_frame_id() -> None:
    data = bytearray(HELLO_BYTES)
    dtype_offset = 4 + 4 + 3 + 32  # header, "n1", "m", digest
    assert data[dtype_offset] == 1
    data[dtype_offset] = 9
    err = parse_error(bytes(data))
    assert err.code is ErrorCode.WRONG_DTYPE
    assert err.frame_id is None
    assert "unknown dtype code 9" in err.message


@pytest.mark.parametrize("ndim", [0, 9, 255])
def test_frame_bad_ndim(ndim: int) -> None:
    data = FRAME_U8_HEADER[:17] + bytes([ndim]) + b"\x01\x00\x00\x00" * 10
    err = parse_error(data)
    assert err.code is ErrorCode.WRONG_SHAPE
    assert err.frame_id == 7
    assert err.message == f"ndim must be 1 to 8, got {ndim}"


def test_frame_with_eight_dimensions_is_accepted() -> None:
    data = FRAME_U8_HEADER[:17] + b"\x08" + b"\x01\x00\x00\x00" * 8 + b"\xaa"
    frame = parse(data)
    assert isinstance(frame, Frame)
    assert frame.shape == (1,) * 8
    assert bytes(frame.payload) == b"\xaa"


TRAILING = [
    ("hello", HELLO_BYTES, "HELLO", len(HELLO_BYTES)),
    ("result-empty", RESULT_EMPTY_BYTES, "RESULT", 32),
    ("result-two", RESULT_TWO_BYTES, "RESULT", 76),
    ("error", ERROR_WITH_FRAME_BYTES, "ERROR", 16),
    ("ping", PING_BYTES, "PING", 16),
    ("pong", PONG_BYTES, "PONG", 16),
    ("dropped", DROPPED_BYTES, "DROPPED", 9),
]


@pytest.mark.parametrize(
    ("data", "kind", "end"), [t[1:] for t in TRAILING], ids=[t[0] for t in TRAILING]
)
def test_trailing_bytes(data: bytes, kind: str, end: int) -> None:
    assert len(data) == end  # the hand-written sizes agree with the golden bytes
    err = parse_error(data + b"\x00\x00\x00")
    assert err.code is ErrorCode.MALFORMED
    assert err.message == f"{kind} message has 3 unexpected trailing bytes after offset {end}"


TRUNCATED = [
    ("hello-digest", HELLO_BYTES[:20], "HELLO", "model_sha256"),
    ("hello-class-name", HELLO_BYTES[:-4], "HELLO", "class name 1"),
    ("hello-max-in-flight", HELLO_BYTES[:-1], "HELLO", "max_in_flight"),
    ("result-header", RESULT_EMPTY_BYTES[:-1], "RESULT", "result header"),
    ("result-detection", RESULT_TWO_BYTES[:-1], "RESULT", "detection 1"),
    ("error-header", ERROR_WITH_FRAME_BYTES[:8], "ERROR", "error header"),
    ("error-message-length", ERROR_WITH_FRAME_BYTES[:12], "ERROR", "message length"),
    ("error-message", ERROR_WITH_FRAME_BYTES[:-1], "ERROR", "message"),
    ("ping", PING_BYTES[:-1], "PING", "ping body"),
    ("pong", PONG_BYTES[:5], "PONG", "pong body"),
    ("dropped", DROPPED_BYTES[:-1], "DROPPED", "dropped body"),
]


@pytest.mark.parametrize(
    ("data", "kind", "field"), [t[1:] for t in TRUNCATED], ids=[t[0] for t in TRUNCATED]
)
def test_truncated_other_messages(data: bytes, kind: str, field: str) -> None:
    err = parse_error(data)
    assert err.code is ErrorCode.MALFORMED
    assert err.message.startswith(f"{kind} message truncated: expected ")
    assert f" more bytes for {field} at offset " in err.message


def test_result_count_larger_than_body() -> None:
    # given a RESULT whose count says 3 but carries 2 detections
    data = RESULT_TWO_BYTES[:30] + h("0300") + RESULT_TWO_BYTES[32:]
    err = parse_error(data)
    assert err.code is ErrorCode.MALFORMED
    assert err.message == (
        "RESULT message truncated: expected 22 more bytes for detection 2 at offset 76, got 0"
    )


def test_invalid_utf8_in_error_message() -> None:
    data = h("4553 01 04") + h("0100 00 00000000") + h("0200 ff fe")
    err = parse_error(data)
    assert err.code is ErrorCode.MALFORMED
    assert err.message == "ERROR field message is not valid UTF-8"


def test_invalid_utf8_in_hello_class_name() -> None:
    data = HELLO_BYTES.replace(h("0100 61"), h("0100 80"))
    err = parse_error(data)
    assert err.code is ErrorCode.MALFORMED
    assert err.message == "HELLO field class name 0 is not valid UTF-8"


def test_unknown_error_code_is_kept_as_an_int_not_refused() -> None:
    # a newer node may add codes; an older page must not treat that as a broken node
    error = parse(h("4553 01 04") + h("6300 01 05000000") + h("0200 6869"))
    assert error == Error(99, "hi", 5)
    assert not isinstance(error.code, ErrorCode)
    assert not error.closes_connection
    assert parse(h("4553 01 04") + h("c800 00 00000000") + h("0000")).closes_connection  # 200


@pytest.mark.parametrize("reason", [0, 3, 255])
def test_unknown_drop_reason_is_kept_as_an_int_not_refused(reason: int) -> None:
    dropped = parse(h("4553 01 07") + h("03000000") + bytes([reason]))
    assert dropped == Dropped(3, reason)
    assert isinstance(dropped, Dropped)
    assert dropped.reason_name == f"reason {reason}"


def test_known_drop_reason_name() -> None:
    assert DROPPED.reason_name == "superseded"


# --- AUTH and WELCOME (issue 8) -----------------------------------------------------------


def test_auth_and_welcome_ignore_fields_a_later_revision_appends() -> None:
    assert parse(AUTH_BYTES + h("0102 0304")) == AUTH
    assert parse(WELCOME_BYTES + h("ff")) == WELCOME


def test_auth_with_unknown_version_is_refused() -> None:
    err = parse_error(h("4553 01 08") + h("02") + h("0000") + h("01000000"))
    assert err.code is ErrorCode.UNSUPPORTED_VERSION
    assert err.message == "unsupported AUTH version: expected 1, got 2"


def test_auth_truncated_names_the_field() -> None:
    err = parse_error(h("4553 01 08") + h("01") + h("0300 616263") + h("0100"))
    assert err.code is ErrorCode.MALFORMED
    assert err.message == (
        "AUTH message truncated: expected 4 more bytes for encodings at offset 10, got 2"
    )


def test_encodings_mask_both_ways() -> None:
    mask = encodings_mask([FrameEncoding.RAW, FrameEncoding.WEBP])
    assert mask == 0b101
    assert mask_encodings(mask) == (FrameEncoding.RAW, FrameEncoding.WEBP)
    assert mask_encodings(0xFFFFFFF8) == ()  # unknown bits are ignored
    assert WELCOME.accepted_encodings == (FrameEncoding.RAW, FrameEncoding.JPEG)


def test_frame_encoding_codes_are_the_documented_ones() -> None:
    assert {e.name: e.value for e in FrameEncoding} == {"RAW": 0, "JPEG": 1, "WEBP": 2}


# --- peek_type: the header alone ----------------------------------------------------------


@pytest.mark.parametrize(("expected", "data"), [g[1:] for g in GOLDEN], ids=GOLDEN_IDS)
def test_peek_type_reads_the_header_only(expected: Message, data: bytes) -> None:
    assert peek_type(data[:HEADER_SIZE]) is MessageType[type(expected).__name__.upper()]


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (h("4553 01"), ErrorCode.MALFORMED, "message too short"),
        (h("4554 01 01"), ErrorCode.MALFORMED, "bad magic"),
        (h("4553 02 01"), ErrorCode.UNSUPPORTED_VERSION, "unsupported protocol version"),
        (h("4553 01 63"), ErrorCode.MALFORMED, "unknown message type 99"),
    ],
)
def test_peek_type_refuses_a_bad_header(data: bytes, code: ErrorCode, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        peek_type(data)
    assert info.value.code is code
    assert message in info.value.message


# --- the public surface -------------------------------------------------------------------


def test_all_names_exist() -> None:
    assert len(set(protocol.__all__)) == len(protocol.__all__)
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_every_message_type_has_a_golden_test() -> None:
    covered = {type(message) for _, message, _ in GOLDEN}
    assert covered == {
        Hello, Frame, Result, Error, Ping, Pong, Dropped, Auth, Welcome, Image, Trace,
    }  # fmt: skip


# --- IMAGE and the RESULT decode tail (issue 9) -------------------------------------------


def test_image_header_bytes_plus_payload_is_serialize() -> None:
    head = Image.header_bytes(7, 1.5, FrameEncoding.JPEG, 416, 312, 0, 52)
    assert head == IMAGE_JPEG_HEADER
    assert head + h("ffd8 ffd9") == IMAGE_JPEG.serialize()


def test_parsed_image_payload_is_a_view_into_the_message() -> None:
    data = bytearray(IMAGE_JPEG_BYTES)
    image = parse(data)
    assert isinstance(image, Image)
    assert isinstance(image.payload, memoryview)
    data[-1] = 0
    assert bytes(image.payload) == h("ffd8 ff00")


def test_result_without_tail_has_no_decode_time() -> None:
    result = parse(RESULT_EMPTY_BYTES)
    assert isinstance(result, Result)
    assert result.decode_ms is None


def test_result_tail_shorter_than_decode_ms_is_trailing_bytes() -> None:
    err = parse_error(RESULT_EMPTY_BYTES + h("0000"))
    assert err.message == "RESULT message has 2 unexpected trailing bytes after offset 32"
    err = parse_error(RESULT_DECODED_BYTES + h("00"))
    assert err.message == "RESULT message has 1 unexpected trailing bytes after offset 36"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            h("02 01 a001 3801 0000 3400 ffd8"),
            ErrorCode.UNSUPPORTED_VERSION,
            "frame 7: unsupported IMAGE version: expected 1, got 2",
        ),
        (
            h("01 00 a001 3801 0000 3400 ffd8"),
            ErrorCode.IMAGE_INVALID,
            "frame 7: IMAGE encoding must be 1 (JPEG) or 2 (WEBP), got 0 "
            "(RAW frames travel as FRAME messages)",
        ),
        (
            h("01 09 a001 3801 0000 3400 ffd8"),
            ErrorCode.IMAGE_INVALID,
            "frame 7: IMAGE encoding must be 1 (JPEG) or 2 (WEBP), got 9",
        ),
        (
            h("01 01 0000 3801 0000 3400 ffd8"),
            ErrorCode.IMAGE_INVALID,
            "frame 7: picture size must be positive, got 0x312",
        ),
        (
            h("01 01 a001 3801 0000 3400"),
            ErrorCode.IMAGE_INVALID,
            "frame 7: expected an encoded picture after the IMAGE header, got no bytes",
        ),
    ],
    ids=["version", "raw", "unknown-encoding", "zero-size", "no-payload"],
)
def test_image_refusals_name_the_frame(body: bytes, code: ErrorCode, message: str) -> None:
    err = parse_error(IMAGE_JPEG_HEADER[:16] + body)
    assert err.code is code
    assert err.message == message
    assert err.frame_id == 7


def test_image_truncated_header_names_the_frame() -> None:
    err = parse_error(IMAGE_JPEG_HEADER[:20])
    assert err.code is ErrorCode.MALFORMED
    assert err.message == (
        "IMAGE message truncated: expected 10 more bytes for image header at offset 16, got 4"
    )
    assert err.frame_id == 7


@pytest.mark.parametrize(
    ("left", "top", "fits"), [(0, 52, True), (0, 104, True), (1, 52, False), (0, 105, False)]
)
def test_image_check_fits_the_model_input(left: int, top: int, fits: bool) -> None:
    image = Image(7, 1.5, FrameEncoding.JPEG, 416, 312, left, top, b"x")
    if fits:
        image.check(416)
        return
    with pytest.raises(ProtocolError) as info:
        image.check(416)
    assert info.value.code is ErrorCode.IMAGE_TOO_LARGE
    assert info.value.frame_id == 7
    assert info.value.message == (
        f"frame 7: a 416x312 picture at ({left}, {top}) must fit the 416x416 model input, "
        f"but reaches ({left + 416}, {top + 312})"
    )


# --- TRACE and WELCOME's features (issue 12) --------------------------------------------------


def test_trace_carries_a_w3c_traceparent() -> None:
    assert TRACE.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_trace_ignores_fields_a_later_revision_appends() -> None:
    assert parse(TRACE_BYTES + h("0102")) == TRACE


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (h("4553 01 0b 00") + bytes(16) + h("00f067aa0ba902b7 01 07000000"), "trace_id"),
        (h("4553 01 0b 00 4bf92f3577b34da6a3ce929d0e0e4736") + bytes(8) + h("01 07000000"),
         "span_id"),
    ],
)  # fmt: skip
def test_an_all_zero_trace_or_span_id_is_malformed(data: bytes, field: str) -> None:
    err = parse_error(data)
    assert err.code is ErrorCode.MALFORMED
    assert field in err.message


def test_a_truncated_trace_names_the_field() -> None:
    err = parse_error(TRACE_BYTES[:-2])
    assert err.message == (
        "TRACE message truncated: expected 30 more bytes for trace context at offset 4, got 28"
    )


def test_welcome_features_are_optional_both_ways() -> None:
    assert parse(WELCOME_BYTES).features == 0  # a first-revision WELCOME
    assert not WELCOME.takes_traces
    assert parse(WELCOME_TRACING_BYTES).takes_traces
    assert parse(WELCOME_TRACING_BYTES + h("ff")) == WELCOME_TRACING


# --- WELCOME's WebTransport offer (issue 16) ------------------------------------------------

WT_HASH = "ab" * 32
WELCOME_WT = Welcome(0b001, 0, "", features=0, wt_port=4433, wt_cert_sha256=WT_HASH)
WELCOME_WT_BYTES = (
    h("4553 01 09")  # WELCOME
    + h("01000000")  # encodings raw
    + h("00000000")  # token_expires_in_ms 0
    + h("0000")  # identity ""
    + h("00000000")  # features: none, written because the offer follows
    + h("5111")  # wt_port 4433
    + h("20")  # hash size 32
    + h("ab" * 32)  # SHA-256 of the node's self-signed certificate
)


def test_welcome_webtransport_offer_golden_bytes_both_ways() -> None:
    assert WELCOME_WT.serialize() == WELCOME_WT_BYTES
    assert parse(WELCOME_WT_BYTES) == WELCOME_WT
    ca_signed = Welcome(0b001, 0, "", wt_port=443)
    assert ca_signed.serialize() == WELCOME_WT_BYTES[:18] + h("bb01 00")
    assert parse(ca_signed.serialize()) == ca_signed


def test_a_welcome_without_an_offer_keeps_its_bytes_and_old_readers_ignore_one() -> None:
    assert Welcome(0b001, 0, "", features=1).serialize() == WELCOME_TRACING_BYTES
    assert parse(WELCOME_TRACING_BYTES).wt_port == 0
    # A first-revision reader stops after ``features``: the offer is trailing bytes to it.
    assert WELCOME_WT_BYTES.startswith(Welcome(0b001, 0, "").serialize())


def test_a_welcome_offer_with_a_bad_hash_size_is_malformed() -> None:
    err = parse_error(WELCOME_WT_BYTES[:20] + h("05") + bytes(5))
    assert err.code == ErrorCode.MALFORMED
    assert "expected 0 or 32 bytes, got 5" in err.message
    with pytest.raises(ValueError, match="64 hex digits or empty"):
        Welcome(1, 0, "", wt_port=1, wt_cert_sha256="abcd").serialize()
