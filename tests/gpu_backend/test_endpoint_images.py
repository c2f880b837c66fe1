"""Compressed frames (IMAGE, issue 9) at a real node with the real model: the WELCOME
offers them, a JPEG or WebP picture is decoded off the event loop and detected like the raw
frame, its RESULT carries the decode time, and corrupt, wrong-sized or bomb pictures get a
precise ERROR while the connection keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from edgesight.serving import ServerThread
from pyodide_client.encoding import EncodingSettings
from pyodide_client.protocol import (
    Error,
    ErrorCode,
    FrameEncoding,
    Image,
    Ping,
    Pong,
    Result,
    encodings_mask,
    parse,
)
from pyodide_client.stream import Detections, NodeStream
from tests.gpu_backend.test_decode import jpeg_bomb, webp_bomb
from tests.handshake import handshake
from tests.jpeg_scans import scan_bomb
from tests.parity import encode_picture, raw_input

ALL = encodings_mask([FrameEncoding.RAW, FrameEncoding.JPEG, FrameEncoding.WEBP])


@pytest.fixture
def ws(node_server: ServerThread) -> Iterator[tuple[ClientConnection, NodeStream]]:
    with connect(node_server.ws_url, compression=None, max_size=None, open_timeout=10) as conn:
        stream = NodeStream(encoding=EncodingSettings(mode="jpeg"))
        ready = handshake(conn, stream)
        assert ready.welcome is not None
        assert ready.welcome.encodings == ALL
        yield conn, stream


def picture(encoding: FrameEncoding, frame_id: int = 7) -> Image:
    tensor, letterbox = raw_input("chelsea")
    image = encode_picture(tensor, letterbox, encoding, 0.75)
    return Image(
        frame_id,
        1.0,
        encoding,
        image.width_px,
        image.height_px,
        image.left_px,
        image.top_px,
        image.payload,
    )


def answer(conn: ClientConnection) -> object:
    return parse(conn.recv(timeout=30))


def still_serves(conn: ClientConnection) -> None:
    conn.send(Ping(9, 2.5).serialize())
    assert answer(conn) == Pong(9, 2.5)


@pytest.mark.parametrize("encoding", [FrameEncoding.JPEG, FrameEncoding.WEBP])
def test_a_compressed_picture_is_detected_and_its_decode_time_reported(
    ws: tuple[ClientConnection, NodeStream], encoding: FrameEncoding
) -> None:
    conn, _ = ws
    conn.send(picture(encoding).serialize())
    result = answer(conn)
    assert isinstance(result, Result), result
    assert result.frame_id == 7
    assert result.decode_ms is not None
    assert result.decode_ms > 0
    assert 15 in {d.class_id for d in result.detections}  # the cat


def test_the_stream_s_own_path_maps_boxes_back_to_the_frame(
    ws: tuple[ClientConnection, NodeStream],
) -> None:
    conn, stream = ws
    image = picture(FrameEncoding.JPEG)
    plan = stream.plan_frame(451, 300, now_ms=1.0)
    assert (plan.encoding, plan.width_px, plan.height_px) == ("jpeg", 416, 277)
    conn.send(stream.encode_image(image.payload, 451, 300, capture_ms=1.0, now_ms=1.0))
    (event,) = stream.receive(conn.recv(timeout=30), now_ms=40.0)
    assert isinstance(event, Detections)
    assert event.encoding == "jpeg"
    cat = next(box for box in event.boxes if box.label == "cat")
    assert 0 <= cat.x1 < cat.x2 <= 451  # frame pixels, not model-input pixels
    assert 0 <= cat.y1 < cat.y2 <= 300


def bad(image: Image, **changes: object) -> bytes:
    fields = {**image.__dict__, **changes}
    return Image(**fields).serialize()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"payload": b"\xff\xd8 not really a JPEG"}, ErrorCode.IMAGE_INVALID, "not a valid JPEG"),
        ({"height_px": 200}, ErrorCode.IMAGE_INVALID, "declared 416x200, but the JPEG is"),
        ({"top_px": 300}, ErrorCode.IMAGE_TOO_LARGE, "must fit the 416x416 model input"),
        (
            {"payload": jpeg_bomb(), "width_px": 8, "height_px": 8, "top_px": 0},
            ErrorCode.IMAGE_TOO_LARGE,
            "the JPEG says it is 60000x50000 pixels",
        ),
        (
            {
                "payload": webp_bomb(),
                "encoding": FrameEncoding.WEBP,
                "width_px": 8,
                "height_px": 8,
                "top_px": 0,
            },
            ErrorCode.IMAGE_TOO_LARGE,
            "the WebP says it is 5000x5000 pixels",
        ),
        (  # issue 17: a valid progressive JPEG of 20,000 tiny scans (263 KB)
            {"payload": scan_bomb(20_000), "width_px": 416, "height_px": 416, "top_px": 0},
            ErrorCode.IMAGE_INVALID,
            "the JPEG has more than 32 scans (SOS markers)",
        ),
    ],
    ids=["corrupt", "wrong-size", "outside-the-input", "jpeg-bomb", "webp-bomb", "scan-bomb"],
)
def test_bad_pictures_get_a_precise_error_and_the_node_keeps_serving(
    ws: tuple[ClientConnection, NodeStream],
    change: dict[str, object],
    code: ErrorCode,
    words: str,
) -> None:
    conn, _ = ws
    conn.send(bad(picture(FrameEncoding.JPEG, frame_id=11), **change))
    error = answer(conn)
    assert isinstance(error, Error), error
    assert (error.code, error.frame_id) == (code, 11)
    assert words in error.message
    still_serves(conn)
    conn.send(picture(FrameEncoding.JPEG, frame_id=12).serialize())
    result = answer(conn)
    assert isinstance(result, Result)
    assert result.frame_id == 12


def test_frames_reach_the_batcher_in_order_when_two_are_in_flight(
    ws: tuple[ClientConnection, NodeStream],
) -> None:
    # a slow WebP then a fast JPEG: the JPEG may finish decoding first, but must not
    # overtake (the batcher would answer the WebP's frame as superseded by an older one)
    conn, _ = ws
    conn.send(picture(FrameEncoding.WEBP, frame_id=21).serialize())
    conn.send(picture(FrameEncoding.JPEG, frame_id=22).serialize())
    answers = [answer(conn), answer(conn)]
    ids = [getattr(a, "frame_id", None) for a in answers]
    assert sorted(ids) == [21, 22]
    newest = next(a for a in answers if getattr(a, "frame_id", None) == 22)
    assert isinstance(newest, Result)
