"""NodeStream, the client's sans-I/O connection state machine, fed bytes by hand."""

from __future__ import annotations

from typing import Any

import pytest

from pyodide_client import stream as stream_module
from pyodide_client.encoding import EncodingSettings
from pyodide_client.postprocess import FrameBox
from pyodide_client.preprocess import Letterbox
from pyodide_client.protocol import (
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
    Ping,
    Pong,
    ProtocolError,
    Result,
    Welcome,
    parse,
)
from pyodide_client.stream import (
    MAX_INPUT_SIZE_PX,
    AccessRefused,
    Detections,
    FrameDropped,
    FramePlan,
    NodeError,
    NodeStream,
    PongReceived,
    Ready,
    StreamError,
    StreamState,
    Welcomed,
)

SIZE = 8
SHA = "ab" * 32
# A 16x8 frame into an 8x8 input: scale 0.5, scaled 8x4, left 0, top 2.
WIDTH, HEIGHT = 16, 8


def hello(max_in_flight: int = 4, **changes: Any) -> Hello:
    fields: dict[str, Any] = {
        "node_name": "node-a",
        "model_name": "tiny",
        "model_sha256": SHA,
        "dtype": Dtype.UINT8,
        "frame_shape": (3, SIZE, SIZE),
        "class_names": ("cat", "dog"),
        "max_in_flight": max_in_flight,
    }
    fields.update(changes)
    return Hello(**fields)


def rgba(seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    return bytes((seed + 31 * i) % 256 for i in range(width * height * 4))


RAW_ONLY = Welcome(0b001, 0, "anonymous")


def ready_stream(max_in_flight: int = 4, node_max_in_flight: int = 4) -> NodeStream:
    """A stream past HELLO, AUTH and a WELCOME for raw frames."""
    stream = NodeStream(max_in_flight=max_in_flight)
    stream.receive(hello(node_max_in_flight).serialize(), now_ms=0.0)
    stream.data_to_send()
    stream.receive(RAW_ONLY.serialize(), now_ms=0.0)
    return stream


def send(stream: NodeStream, now_ms: float = 100.0, capture_ms: float = 90.0) -> int:
    frame = parse(stream.encode_frame(rgba(), WIDTH, HEIGHT, capture_ms, now_ms))
    assert isinstance(frame, Frame)
    return frame.frame_id


def result(frame_id: int, *detections: Detection, capture_ms: float = 90.0) -> bytes:
    return Result(frame_id, capture_ms, 1.5, 6.25, 0.5, 3, detections).serialize()


# --- before the HELLO ---------------------------------------------------------------------


def test_a_new_stream_waits_for_the_hello() -> None:
    stream = NodeStream()
    assert stream.state is StreamState.CONNECTING
    assert stream.hello is None
    assert not stream.can_send()
    assert stream.in_flight == 0


def test_frames_before_the_hello_raise() -> None:
    stream = NodeStream()
    with pytest.raises(StreamError, match="cannot send a frame in state connecting"):
        stream.encode_frame(rgba(), WIDTH, HEIGHT, 0.0, 0.0)
    with pytest.raises(StreamError, match="no HELLO from the node yet"):
        stream.letterbox_for(WIDTH, HEIGHT)


@pytest.mark.parametrize(
    "message",
    [
        Result(1, 0.0, 0.0, 0.0, 0.0, 1, ()),
        Error(ErrorCode.OVERLOADED, "busy"),
        Dropped(1, DropReason.SUPERSEDED),
        Pong(1, 0.0),
    ],
    ids=lambda m: type(m).__name__,
)
def test_node_messages_before_the_hello_raise(message: Result | Error | Dropped | Pong) -> None:
    stream = NodeStream()
    with pytest.raises(StreamError) as info:
        stream.receive(message.serialize(), now_ms=0.0)
    assert str(info.value) == (
        f"expected HELLO as the node's first message, got {type(message).__name__}"
    )


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight must be at least 1, got 0"):
        NodeStream(max_in_flight=0)


# --- the HELLO ----------------------------------------------------------------------------


def test_hello_is_answered_with_auth_and_welcome_makes_the_stream_ready() -> None:
    stream = NodeStream(token="tok")
    assert stream.receive(hello().serialize(), now_ms=5.0) == []
    assert stream.state is StreamState.AUTHENTICATING
    assert stream.hello == hello()
    assert not stream.can_send()  # no frames before the node's WELCOME
    assert [parse(m) for m in stream.data_to_send()] == [Auth("tok", 0b111)]
    assert stream.data_to_send() == []  # each message once
    welcome = Welcome(0b111, 300_000, "alice")
    assert stream.receive(welcome.serialize(), now_ms=6.0) == [Ready(hello(), welcome)]
    assert stream.state is StreamState.READY
    assert stream.welcome == welcome
    assert stream.can_send()


def test_a_second_hello_raises() -> None:
    stream = ready_stream()
    with pytest.raises(StreamError, match="unexpected second HELLO in state ready"):
        stream.receive(hello().serialize(), now_ms=1.0)


def test_a_hello_after_the_connection_closed_raises() -> None:
    stream = ready_stream()
    stream.connection_lost()
    with pytest.raises(StreamError, match="unexpected second HELLO in state closed"):
        stream.receive(hello().serialize(), now_ms=1.0)


def test_expected_sha256_matches() -> None:
    stream = NodeStream(expected_sha256=SHA)
    assert stream.receive(hello().serialize(), now_ms=0.0) == []
    assert stream.state is StreamState.AUTHENTICATING


def test_sha256_mismatch_raises_naming_both() -> None:
    expected = "cd" * 32
    stream = NodeStream(expected_sha256=expected)
    with pytest.raises(StreamError) as info:
        stream.receive(hello().serialize(), now_ms=0.0)
    message = str(info.value)
    assert f"sha256 {SHA}" in message
    assert f"expected {expected}" in message
    assert stream.state is StreamState.CONNECTING


@pytest.mark.parametrize(
    "changes",
    [
        {"dtype": Dtype.FLOAT32},
        {"frame_shape": (SIZE, SIZE)},
        {"frame_shape": (1, 3, SIZE, SIZE)},
        {"frame_shape": (1, SIZE, SIZE)},  # one channel
        {"frame_shape": (3, 0, 0)},
        {"frame_shape": (3, SIZE, 0)},
    ],
    ids=["float32", "2d", "4d", "1-channel", "empty", "no-width"],
)
def test_hello_for_frames_this_client_cannot_make_raises(changes: dict[str, Any]) -> None:
    stream = NodeStream()
    bad = hello(**changes)
    with pytest.raises(StreamError) as info:
        stream.receive(bad.serialize(), now_ms=0.0)
    message = str(info.value)
    assert f"node wants {bad.dtype.label} frames of shape {list(bad.frame_shape)}" in message
    assert "this client sends uint8 [3, H, W]" in message
    assert stream.state is StreamState.CONNECTING


def test_hello_asking_for_a_huge_input_raises_before_allocating() -> None:
    # given a node (or anything on its URL) announcing 65535 x 65535 frames: 12 GB
    stream = NodeStream()
    huge = hello(frame_shape=(3, 65535, 65535))
    # when / then refused at the HELLO, before a letterbox exists
    with pytest.raises(StreamError, match=r"65535x65535 pixels; this client sends at most"):
        stream.receive(huge.serialize(), now_ms=0.0)
    assert stream.state is StreamState.CONNECTING


def test_hello_at_the_largest_input_is_accepted() -> None:
    stream = NodeStream()
    size = MAX_INPUT_SIZE_PX
    stream.receive(hello(frame_shape=(3, size, size)).serialize(), now_ms=0.0)
    assert stream.state is StreamState.AUTHENTICATING


# --- sending frames -----------------------------------------------------------------------


def test_encode_frame_makes_a_frame_the_node_accepts() -> None:
    # given a ready stream and an RGBA frame
    stream = ready_stream()
    pixels = rgba(seed=3)
    # when it is encoded
    data = stream.encode_frame(pixels, WIDTH, HEIGHT, capture_ms=12.5, now_ms=13.0)
    # then it parses as the letterboxed frame the node's hello asked for
    frame = parse(data)
    assert isinstance(frame, Frame)
    assert frame.frame_id == 1
    assert frame.capture_ms == 12.5
    frame.check(Dtype.UINT8, (3, SIZE, SIZE))
    assert bytes(frame.payload) == bytes(Letterbox.for_frame(WIDTH, HEIGHT, SIZE).fill(pixels))
    assert stream.in_flight == 1


def test_frame_ids_count_up_from_one() -> None:
    stream = ready_stream()
    assert [send(stream) for _ in range(3)] == [1, 2, 3]


def test_encoded_frames_do_not_share_the_letterbox_buffer() -> None:
    stream = ready_stream()
    first = stream.encode_frame(rgba(seed=1), WIDTH, HEIGHT, 0.0, 0.0)
    first_copy = bytes(first)
    stream.encode_frame(rgba(seed=2), WIDTH, HEIGHT, 0.0, 0.0)
    assert first == first_copy


def test_letterbox_is_reused_for_one_size_and_rebuilt_for_another() -> None:
    stream = ready_stream()
    box = stream.letterbox_for(WIDTH, HEIGHT)
    assert stream.letterbox_for(WIDTH, HEIGHT) is box
    other = stream.letterbox_for(HEIGHT, WIDTH)
    assert other is not box
    assert (other.geometry.frame_width_px, other.geometry.frame_height_px) == (HEIGHT, WIDTH)
    assert (other.geometry.input_width_px, other.geometry.input_height_px) == (SIZE, SIZE)


def test_a_non_square_model_input_gets_a_non_square_frame() -> None:
    # given a node whose model takes 3 x H x W with W != H
    stream = NodeStream()
    stream.receive(hello(frame_shape=(3, 6, 10)).serialize(), now_ms=0.0)
    stream.receive(RAW_ONLY.serialize(), now_ms=0.0)
    pixels = rgba(seed=5)
    # when a frame is encoded
    frame = parse(stream.encode_frame(pixels, WIDTH, HEIGHT, capture_ms=1.0, now_ms=1.0))
    # then it has the node's shape, letterboxed into W=10, H=6
    assert isinstance(frame, Frame)
    frame.check(Dtype.UINT8, (3, 6, 10))
    assert bytes(frame.payload) == bytes(Letterbox.for_frame(WIDTH, HEIGHT, 10, 6).fill(pixels))


def test_a_frame_of_the_wrong_size_takes_no_slot_and_no_id() -> None:
    stream = ready_stream()
    with pytest.raises(ValueError, match="needs 512 bytes, got 4"):
        stream.encode_frame(b"\x00" * 4, WIDTH, HEIGHT, 0.0, 0.0)
    assert stream.in_flight == 0
    assert send(stream) == 1


@pytest.mark.parametrize(
    ("client_max", "node_max", "window"),
    [(1, 4, 1), (3, 2, 2), (4, 4, 4), (2, 0, 1), (5, 3, 3)],
)
def test_can_send_respects_the_smaller_window(client_max: int, node_max: int, window: int) -> None:
    # given a stream whose client and node limits differ
    stream = ready_stream(max_in_flight=client_max, node_max_in_flight=node_max)
    # when it sends as long as it may
    for _ in range(window):
        assert stream.can_send()
        send(stream)
    # then the window is full at min(client, node) (and at least one)
    assert not stream.can_send()
    with pytest.raises(StreamError, match=f"with {window} of {window} frames in flight"):
        send(stream)


def test_ping_messages_carry_counting_nonces_and_the_time() -> None:
    stream = ready_stream()
    assert parse(stream.ping(now_ms=10.0)) == Ping(1, 10.0)
    assert parse(stream.ping(now_ms=20.5)) == Ping(2, 20.5)


# --- node messages ------------------------------------------------------------------------


def test_result_becomes_detections_in_frame_pixels() -> None:
    # given a frame sent at 100 ms, captured at 90 ms
    stream = ready_stream()
    frame_id = send(stream, now_ms=100.0, capture_ms=90.0)
    detections = (
        Detection(1, 0.75, 2.0, 3.0, 6.0, 5.0),  # inside the image rows 2..6
        Detection(0, 0.5, 0.0, 0.0, 8.0, 1.0),  # entirely in the top padding
        Detection(5, 0.25, 0.0, 2.0, 8.0, 6.0),  # whole image, unknown class
    )
    # when its result arrives at 130 ms
    events = stream.receive(result(frame_id, *detections, capture_ms=90.0), now_ms=130.0)
    # then the boxes are in the 16x8 frame's pixels, and the timings are filled in
    assert events == [
        Detections(
            frame_id=frame_id,
            boxes=(
                FrameBox("dog", 1, 0.75, 4.0, 2.0, 12.0, 6.0),
                FrameBox("class 5", 5, 0.25, 0.0, 0.0, 16.0, 8.0),
            ),
            capture_ms=90.0,
            round_trip_ms=30.0,
            queue_ms=1.5,
            inference_ms=6.25,
            post_ms=0.5,
            batch_size=3,
            encoding="raw",
            size_bytes=len(Frame.header_bytes(1, 0.0, Dtype.UINT8, (3, SIZE, SIZE)))
            + 3 * SIZE * SIZE,
        )
    ]
    assert stream.in_flight == 0
    assert stream.can_send()


def test_result_uses_the_geometry_of_the_frame_it_answers() -> None:
    # given a wide frame in flight, then the camera turns to portrait
    stream = ready_stream()
    wide_id = send(stream)
    stream.encode_frame(rgba(width=HEIGHT, height=WIDTH), HEIGHT, WIDTH, 0.0, 0.0)
    # when the wide frame's result arrives
    [event] = stream.receive(result(wide_id, Detection(0, 0.75, 0.0, 2.0, 8.0, 6.0)), 1.0)
    # then it is mapped with the wide frame's letterbox
    assert isinstance(event, Detections)
    assert event.boxes == (FrameBox("cat", 0, 0.75, 0.0, 0.0, 16.0, 8.0),)


def test_result_for_a_frame_not_in_flight_raises() -> None:
    stream = ready_stream()
    send(stream)
    with pytest.raises(StreamError, match="node answered frame 99, which is not in flight"):
        stream.receive(result(99), now_ms=1.0)


def test_a_second_result_for_one_frame_raises() -> None:
    stream = ready_stream()
    frame_id = send(stream)
    stream.receive(result(frame_id), now_ms=1.0)
    with pytest.raises(StreamError, match=f"frame {frame_id}, which is not in flight"):
        stream.receive(result(frame_id), now_ms=2.0)


def test_a_result_older_than_the_one_shown_is_discarded_but_frees_its_slot() -> None:
    # given two frames in flight
    stream = ready_stream(max_in_flight=2)
    first, second = send(stream), send(stream)
    assert not stream.can_send()
    # when the newer one is answered first
    [shown] = stream.receive(result(second), now_ms=1.0)
    assert isinstance(shown, Detections)
    assert shown.frame_id == second
    # then the older one's result gives no event, and its slot is free again
    assert stream.receive(result(first), now_ms=2.0) == []
    assert stream.in_flight == 0
    assert stream.can_send()


def test_results_in_order_are_all_shown() -> None:
    stream = ready_stream(max_in_flight=3)
    ids = [send(stream) for _ in range(3)]
    events = [event for i in ids for event in stream.receive(result(i), 1.0)]
    assert [(type(e), getattr(e, "frame_id", None)) for e in events] == [
        (Detections, i) for i in ids
    ]


def test_error_with_a_frame_id_frees_its_slot() -> None:
    stream = ready_stream(max_in_flight=1)
    frame_id = send(stream)
    events = stream.receive(Error(ErrorCode.WRONG_SHAPE, "no", frame_id).serialize(), 1.0)
    assert events == [NodeError(int(ErrorCode.WRONG_SHAPE), "no", frame_id)]
    assert stream.in_flight == 0
    assert stream.can_send()


def test_error_without_a_frame_id_keeps_the_frames_in_flight() -> None:
    stream = ready_stream(max_in_flight=1)
    send(stream)
    events = stream.receive(Error(ErrorCode.OVERLOADED, "busy").serialize(), 1.0)
    assert events == [NodeError(100, "busy", None)]
    assert stream.in_flight == 1
    assert not stream.can_send()


@pytest.mark.parametrize(
    ("reason", "label"),
    [(DropReason.SUPERSEDED, "superseded"), (DropReason.SHUTTING_DOWN, "shutting_down")],
)
def test_dropped_frees_the_slot(reason: DropReason, label: str) -> None:
    stream = ready_stream(max_in_flight=1)
    frame_id = send(stream)
    events = stream.receive(Dropped(frame_id, reason).serialize(), 1.0)
    assert events == [FrameDropped(frame_id, label)]
    assert stream.in_flight == 0
    assert stream.can_send()


def test_a_superseded_frames_slot_reopens_only_after_the_next_result() -> None:
    # K=2: frame 2 replaced frame 1 in the node's queue. Sending at once would upload a
    # frame that is likely to be replaced too; the slot waits for frame 2's RESULT.
    stream = ready_stream(max_in_flight=2)
    first, second = send(stream), send(stream)
    stream.receive(Dropped(first, DropReason.SUPERSEDED).serialize(), 1.0)
    assert stream.in_flight == 1
    assert not stream.can_send()
    stream.receive(result(second), 2.0)
    assert stream.can_send()


def test_a_held_slot_never_blocks_a_stream_with_nothing_in_flight() -> None:
    stream = ready_stream(max_in_flight=2)
    first, second = send(stream), send(stream)
    stream.receive(Dropped(first, DropReason.SUPERSEDED).serialize(), 1.0)
    stream.receive(Error(ErrorCode.INFERENCE_FAILED, "x", second).serialize(), 2.0)
    assert stream.in_flight == 0
    assert stream.can_send()


def test_pong_reports_the_round_trip() -> None:
    stream = ready_stream()
    ping = parse(stream.ping(now_ms=1000.0))
    assert isinstance(ping, Ping)
    assert stream.receive(ping.answer().serialize(), now_ms=1012.5) == [PongReceived(12.5)]


def test_a_frame_from_the_node_raises() -> None:
    stream = ready_stream()
    frame = Frame(1, 0.0, Dtype.UINT8, (1,), b"\x00").serialize()
    with pytest.raises(StreamError, match="a node does not send Frame messages"):
        stream.receive(frame, now_ms=0.0)


def test_invalid_bytes_raise_stream_error_with_the_protocol_reason() -> None:
    stream = ready_stream()
    with pytest.raises(StreamError) as info:
        stream.receive(b"XX\x01\x05", now_ms=0.0)
    assert str(info.value) == "node sent an invalid message: bad magic: expected b'ES', got b'XX'"
    assert isinstance(info.value.__cause__, ProtocolError)


def test_connection_lost_returns_the_frames_in_flight() -> None:
    # given three frames of which one was answered
    stream = ready_stream()
    ids = [send(stream) for _ in range(3)]
    stream.receive(result(ids[1]), now_ms=1.0)
    # when the socket closes
    lost = stream.connection_lost()
    # then the other two are reported lost and nothing more can be sent
    assert lost == [ids[0], ids[2]]
    assert stream.state is StreamState.CLOSED
    assert stream.in_flight == 0
    assert not stream.can_send()
    with pytest.raises(StreamError, match="state closed"):
        send(stream)


# --- frame ids wrap at 2**32 --------------------------------------------------------------
# Reaching the wrap by sending four billion frames is not practical, so these tests set the
# next frame id directly.


def test_frame_ids_wrap_to_one_skipping_zero() -> None:
    stream = ready_stream()
    stream._next_frame_id = 0xFFFFFFFE
    assert [send(stream) for _ in range(3)] == [0xFFFFFFFE, 0xFFFFFFFF, 1]


def test_results_across_the_wrap_compare_as_serial_numbers() -> None:
    # given frames 2**32 - 2, 2**32 - 1 and then 1 in flight
    stream = ready_stream(max_in_flight=3)
    stream._next_frame_id = 0xFFFFFFFE
    old, older_than_wrap, wrapped = send(stream), send(stream), send(stream)
    # when the frame after the wrap is answered first
    assert len(stream.receive(result(wrapped), 1.0)) == 1
    # then the two before the wrap are older, and discarded
    assert stream.receive(result(older_than_wrap), 2.0) == []
    assert stream.receive(result(old), 3.0) == []


def is_shown_after(shown_id: int, next_id: int) -> bool:
    """Whether a result for ``next_id`` is shown once ``shown_id``'s result was."""
    stream = ready_stream(max_in_flight=1)
    stream._next_frame_id = shown_id
    send(stream)
    assert len(stream.receive(result(shown_id), 1.0)) == 1
    stream._next_frame_id = next_id
    send(stream)
    return bool(stream.receive(result(next_id), 2.0))


@pytest.mark.parametrize(
    ("shown_id", "next_id", "expected"),
    [
        (5, 6, True),
        (5, 4, False),
        (5, 5, False),  # the same id again is not newer
        (0xFFFFFFFF, 1, True),
        (1, 0xFFFFFFFF, False),
        (5, 5 + 0x7FFFFFFF, True),  # just under half the id space ahead
        (5, 5 + 0x80000000, False),  # half or more ahead reads as behind
        (0x80000000, 0xFFFFFFFF, True),
    ],
)
def test_newer_frame_id_comparison(shown_id: int, next_id: int, expected: bool) -> None:
    assert is_shown_after(shown_id, next_id) is expected


def test_all_names_exist() -> None:
    for name in stream_module.__all__:
        assert hasattr(stream_module, name), name


# --- compressed frames (issue 9) ----------------------------------------------------------


def welcomed_stream(encodings: int = 0b111, **settings: Any) -> NodeStream:
    stream = NodeStream(max_in_flight=2, encoding=EncodingSettings(**settings))
    stream.receive(hello().serialize(), now_ms=0.0)
    events = stream.receive(Welcome(encodings, 0, "anonymous").serialize(), now_ms=0.0)
    assert events == [Ready(hello(), Welcome(encodings, 0, "anonymous"))]
    return stream


def test_auth_names_the_encodings_this_client_can_send() -> None:
    assert parse(NodeStream().auth("tok")) == Auth("tok", 0b111)
    jpeg_only = NodeStream(can_encode=(FrameEncoding.JPEG,))
    assert parse(jpeg_only.auth()) == Auth("", 0b011)


def test_a_node_from_before_auth_gets_raw_frames() -> None:
    stream = NodeStream()
    stream.receive(hello().serialize(), now_ms=0.0)
    refusal = Error(ErrorCode.UNEXPECTED_MESSAGE, "expected a FRAME or PING, got AUTH")
    assert stream.receive(refusal.serialize(), now_ms=0.0) == [Ready(hello())]
    assert stream.welcome is None
    plan = stream.plan_frame(WIDTH, HEIGHT, now_ms=1.0)
    assert plan == FramePlan("raw", 0.6, 8, 4)
    assert isinstance(parse(stream.encode_frame(rgba(), WIDTH, HEIGHT, 1.0, 1.0)), Frame)


def test_after_a_welcome_auto_sends_a_jpeg_of_the_picture_only() -> None:
    stream = welcomed_stream()
    plan = stream.plan_frame(WIDTH, HEIGHT, now_ms=1.0)
    assert plan == FramePlan("jpeg", 0.6, 8, 4)  # 16x8 into 8x8: the 8x4 picture
    message = parse(stream.encode_image(b"\xff\xd8jpeg", WIDTH, HEIGHT, 0.5, 1.0))
    assert message == Image(1, 0.5, FrameEncoding.JPEG, 8, 4, 0, 2, b"\xff\xd8jpeg")
    assert stream.in_flight == 1


def test_a_welcome_without_jpeg_or_webp_keeps_raw_frames() -> None:
    stream = welcomed_stream(encodings=0b001)
    assert stream.plan_frame(WIDTH, HEIGHT, now_ms=1.0).encoding == "raw"


def test_the_result_of_an_image_carries_its_decode_time_encoding_and_size() -> None:
    stream = welcomed_stream()
    stream.plan_frame(WIDTH, HEIGHT, now_ms=100.0)
    stream.encode_image(b"12345", WIDTH, HEIGHT, 90.0, 100.0)
    result = Result(1, 90.0, 1.0, 5.0, 0.5, 1, (), decode_ms=0.25)
    (event,) = stream.receive(result.serialize(), now_ms=130.0)
    assert isinstance(event, Detections)
    assert (event.decode_ms, event.encoding) == (0.25, "jpeg")
    assert event.size_bytes == 26 + 5  # the IMAGE header, then the payload


def test_encode_image_needs_a_lossy_plan() -> None:
    stream = welcomed_stream(mode="raw")
    stream.plan_frame(WIDTH, HEIGHT, now_ms=1.0)
    with pytest.raises(StreamError, match="encode_image needs a plan_frame"):
        stream.encode_image(b"x", WIDTH, HEIGHT, 0.0, 1.0)


def test_a_probe_is_a_raw_frame_and_a_fast_link_switches_to_raw() -> None:
    stream = welcomed_stream(probe_interval_ms=10.0)
    assert stream.ping_due(0.0)
    stream.receive(Pong(1, 0.0).serialize(), now_ms=1.0)  # base round trip 1 ms
    assert stream.plan_frame(WIDTH, HEIGHT, now_ms=1.0).encoding == "jpeg"
    stream.encode_image(b"x", WIDTH, HEIGHT, 1.0, 1.0)
    stream.receive(Result(1, 1.0, 0.0, 1.0, 0.0, 1, ()).serialize(), now_ms=3.0)
    probe = stream.plan_frame(WIDTH, HEIGHT, now_ms=20.0)
    assert probe.encoding == "raw"
    stream.encode_frame(rgba(), WIDTH, HEIGHT, 20.0, 20.0)
    stream.receive(Result(2, 20.0, 0.0, 1.0, 0.0, 1, ()).serialize(), now_ms=22.0)
    # a 192-byte tensor at 30 fps needs next to nothing: the link carries raw frames
    assert stream.plan_frame(WIDTH, HEIGHT, now_ms=30.0).encoding == "raw"
    assert stream.encoding.encoding is FrameEncoding.RAW


def test_a_refused_probe_is_retried_later() -> None:
    stream = welcomed_stream(probe_interval_ms=10.0)
    stream.plan_frame(WIDTH, HEIGHT, now_ms=1.0)
    stream.encode_image(b"x", WIDTH, HEIGHT, 1.0, 1.0)
    stream.receive(Result(1, 1.0, 0.0, 1.0, 0.0, 1, ()).serialize(), now_ms=3.0)
    assert stream.plan_frame(WIDTH, HEIGHT, now_ms=20.0).encoding == "raw"
    stream.encode_frame(rgba(), WIDTH, HEIGHT, 20.0, 20.0)
    stream.receive(Error(ErrorCode.WRONG_SHAPE, "no", 2).serialize(), now_ms=22.0)
    assert stream.plan_frame(WIDTH, HEIGHT, now_ms=25.0).encoding == "jpeg"
    stream.encode_image(b"x", WIDTH, HEIGHT, 25.0, 25.0)
    stream.receive(Result(3, 25.0, 0.0, 1.0, 0.0, 1, ()).serialize(), now_ms=27.0)
    assert stream.plan_frame(WIDTH, HEIGHT, now_ms=33.0).encoding == "raw"


# --- authentication (issue 8) -------------------------------------------------------------


def test_a_stream_without_its_token_yet_holds_the_auth_until_set_token() -> None:
    stream = NodeStream(token=None)
    stream.receive(hello().serialize(), now_ms=0.0)
    assert stream.data_to_send() == []
    stream.set_token("late")
    assert [parse(m) for m in stream.data_to_send()] == [Auth("late", 0b111)]
    stream.set_token("later")  # before the WELCOME: one AUTH is enough, the node answers it
    assert stream.data_to_send() == []


def test_a_token_given_before_the_hello_goes_with_the_auth() -> None:
    stream = NodeStream(token=None)
    stream.set_token("early")
    assert stream.data_to_send() == []  # nothing before the HELLO
    stream.receive(hello().serialize(), now_ms=0.0)
    assert [parse(m) for m in stream.data_to_send()] == [Auth("early", 0b111)]


def test_pongs_are_fine_before_the_welcome() -> None:
    stream = NodeStream()
    stream.receive(hello().serialize(), now_ms=0.0)
    assert stream.receive(Pong(1, 10.0).serialize(), now_ms=25.0) == [PongReceived(15.0)]


def test_anything_else_before_the_welcome_is_a_breach() -> None:
    stream = NodeStream()
    stream.receive(hello().serialize(), now_ms=0.0)
    with pytest.raises(StreamError, match="expected WELCOME in answer to AUTH, got Result"):
        stream.receive(result(1), now_ms=0.0)


@pytest.mark.parametrize(
    "code", [ErrorCode.AUTH_REQUIRED, ErrorCode.AUTH_FAILED, ErrorCode.TOKEN_EXPIRED]
)
def test_a_refused_token_is_an_access_refused_event(code: ErrorCode) -> None:
    stream = NodeStream(token="forged")
    stream.receive(hello().serialize(), now_ms=0.0)
    refusal = Error(code, "token signature does not verify")
    events = stream.receive(refusal.serialize(), now_ms=1.0)
    assert events == [AccessRefused(int(code), "token signature does not verify")]
    assert not stream.can_send()


def test_a_token_expiring_mid_stream_is_an_access_refused_event() -> None:
    stream = ready_stream()
    send(stream)
    expired = Error(ErrorCode.TOKEN_EXPIRED, "token expired 3 s ago")
    (event,) = stream.receive(expired.serialize(), now_ms=5.0)
    assert isinstance(event, AccessRefused)
    assert event.is_expired


def test_a_refresh_sends_a_new_auth_while_frames_keep_flowing() -> None:
    # given a stream with a frame in flight
    stream = ready_stream(max_in_flight=2)
    first = send(stream, now_ms=10.0)
    # when the page hands it a fresh token
    stream.set_token("fresh")
    # then an AUTH goes at once, and the window stays open meanwhile
    assert [parse(m) for m in stream.data_to_send()] == [Auth("fresh", 0b111)]
    assert stream.can_send()
    second = send(stream, now_ms=20.0)
    assert len(stream.receive(result(first), now_ms=30.0)) == 1
    # the node's answer is a Welcomed event; the results keep coming
    welcome = Welcome(0b001, 300_000, "alice")
    assert stream.receive(welcome.serialize(), now_ms=31.0) == [Welcomed(welcome)]
    assert stream.welcome == welcome
    assert len(stream.receive(result(second), now_ms=40.0)) == 1
    assert stream.state is StreamState.READY


def test_a_frame_s_round_trip_counts_from_when_it_was_really_sent() -> None:
    stream = ready_stream()
    frame_id = send(stream, now_ms=100.0)
    stream.mark_sent(125.0)  # the caller's letterbox took 25 ms
    stream.mark_sent(110.0)  # never back in time
    (event,) = stream.receive(result(frame_id), now_ms=140.0)
    assert isinstance(event, Detections)
    assert event.round_trip_ms == 15.0
