"""The node's WebSocket endpoint, served for real by uvicorn with the real model."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from edgesight.serving import ServerThread
from gpu_backend.app import create_app
from gpu_backend.engine import file_sha256
from gpu_backend.log_sampler import LogSampler
from gpu_backend.settings import NodeSettings
from pyodide_client.protocol import (
    Auth,
    Dtype,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Ping,
    Pong,
    Result,
    Welcome,
    parse,
)
from pyodide_client.stream import Detections, NodeStream
from tests.handshake import handshake
from tests.media import rgba_photo


def _open(server: ServerThread) -> ClientConnection:
    return connect(server.ws_url, compression=None, max_size=None, open_timeout=10)


@pytest.fixture
def ws(node_server: ServerThread) -> Iterator[ClientConnection]:
    with _open(node_server) as conn:
        yield conn


def _hello(conn: ClientConnection) -> Hello:
    message = parse(conn.recv(timeout=10))
    assert isinstance(message, Hello)
    return message


def _detect(conn: ClientConnection, stream: NodeStream, photo: str) -> Detections:
    rgba, w, h = rgba_photo(photo)
    conn.send(stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=2.0))
    events = stream.receive(conn.recv(timeout=30), now_ms=3.0)
    assert len(events) == 1
    assert isinstance(events[0], Detections)
    return events[0]


def _expect_error(conn: ClientConnection, code: ErrorCode) -> Error:
    message = parse(conn.recv(timeout=10))
    assert isinstance(message, Error), message
    assert message.code is code, message
    return message


def _still_serves(conn: ClientConnection) -> None:
    conn.send(Ping(7, 1.5).serialize())
    assert parse(conn.recv(timeout=10)) == Pong(7, 1.5)


def test_hello_describes_the_model(ws: ClientConnection, node_settings: NodeSettings) -> None:
    hello = _hello(ws)
    card = json.loads(node_settings.model_path.with_name("model.json").read_text())
    assert hello.node_name == "test-node"
    assert hello.model_name == "nanodet-g-416"
    assert hello.model_sha256 == file_sha256(node_settings.model_path) == card["sha256"]
    assert hello.frame_shape == (3, 416, 416)
    assert hello.dtype is Dtype.UINT8
    assert hello.class_names == tuple(card["classes"])
    assert hello.max_in_flight == node_settings.max_in_flight


@pytest.mark.parametrize(("photo", "label"), [("astronaut", "person"), ("chelsea", "cat")])
def test_real_photos_are_detected(ws: ClientConnection, photo: str, label: str) -> None:
    stream = NodeStream()
    handshake(ws, stream)
    result = _detect(ws, stream, photo)
    best = max(result.boxes, key=lambda box: box.score)
    assert best.label == label
    assert best.score > 0.5
    _, w, h = rgba_photo(photo)
    # boxes come back in the photo's own pixels and cover most of the subject
    assert 0 <= best.x1 < best.x2 <= w
    assert 0 <= best.y1 < best.y2 <= h
    assert (best.x2 - best.x1) * (best.y2 - best.y1) > 0.3 * w * h
    assert result.inference_ms > 0
    assert result.batch_size == 1


def _frame(shape: tuple[int, ...], dtype: Dtype = Dtype.UINT8, frame_id: int = 5) -> bytes:
    size = dtype.itemsize
    for dim in shape:
        size *= dim
    return Frame(frame_id, 0.0, dtype, shape, bytes(size)).serialize()


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        (b"ES\x02\x02", ErrorCode.UNSUPPORTED_VERSION, ["expected 1, got 2"]),
        (b"XY\x01\x02", ErrorCode.MALFORMED, ["magic"]),
        (b"ES", ErrorCode.MALFORMED, ["at least 4", "got 2"]),
        (_frame((3, 416, 416))[:-100], ErrorCode.MALFORMED, ["519168 bytes", "got 519068"]),
        (_frame((3, 320, 320)), ErrorCode.WRONG_SHAPE, ["[3, 416, 416]", "[3, 320, 320]"]),
        (_frame((3, 64, 64), Dtype.FLOAT32), ErrorCode.WRONG_DTYPE, ["uint8", "float32"]),
        (b"ES\x01\x63", ErrorCode.MALFORMED, ["unknown message type 99"]),
        (
            Pong(1, 0.0).serialize(),
            ErrorCode.UNEXPECTED_MESSAGE,
            ["FRAME, IMAGE, PING, AUTH or TRACE", "PONG"],
        ),
    ],
)
def test_bad_messages_get_a_precise_error_and_keep_the_connection(
    ws: ClientConnection, payload: bytes, code: ErrorCode, words: list[str]
) -> None:
    _hello(ws)
    ws.send(payload)
    error = _expect_error(ws, code)
    for word in words:
        assert word in error.message
    _still_serves(ws)


def test_errors_about_a_frame_name_the_frame(ws: ClientConnection) -> None:
    _hello(ws)
    ws.send(_frame((3, 10, 10), frame_id=4242))
    assert _expect_error(ws, ErrorCode.WRONG_SHAPE).frame_id == 4242


def test_text_messages_are_refused_without_closing(ws: ClientConnection) -> None:
    _hello(ws)
    ws.send("hello?")
    assert "binary" in _expect_error(ws, ErrorCode.NOT_BINARY).message
    _still_serves(ws)


def _raw_websocket(server: ServerThread) -> socket.socket:
    """A hand-made WebSocket client: lets a test send a frame header without its payload."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def _read_close_code(sock: socket.socket) -> int:
    """Read server frames until a close frame; return its status code."""
    buffered = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "connection ended without a close frame"
        buffered += chunk
        while len(buffered) >= 2:
            opcode, length = buffered[0] & 0x0F, buffered[1] & 0x7F
            head = 2
            if length == 126:
                head, length = 4, struct.unpack("!H", buffered[2:4])[0]
            elif length == 127:
                head, length = 10, struct.unpack("!Q", buffered[2:10])[0]
            if len(buffered) < head + length:
                break
            body, buffered = buffered[head : head + length], buffered[head + length :]
            if opcode == 0x8:
                return int(struct.unpack("!H", body[:2])[0])


def test_oversized_message_closes_only_that_connection_with_1009(
    node_server: ServerThread, node_settings: NodeSettings
) -> None:
    with _open(node_server) as bystander:
        _hello(bystander)
        sock = _raw_websocket(node_server)
        try:
            # A binary frame header declaring one byte more than the node accepts; the
            # payload is never sent, so the close frame cannot be lost to a TCP reset.
            declared = node_settings.max_message_bytes + 1
            sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", declared) + os.urandom(4))
            assert _read_close_code(sock) == 1009
        finally:
            sock.close()
        _still_serves(bystander)


def test_result_is_answered_per_frame_with_node_timings(ws: ClientConnection) -> None:
    _hello(ws)
    ws.send(_frame((3, 416, 416), frame_id=99))
    result = parse(ws.recv(timeout=30))
    assert isinstance(result, Result)
    assert result.frame_id == 99
    assert result.batch_size == 1
    assert result.inference_ms > 0
    assert result.queue_ms >= 0
    assert result.post_ms >= 0


def _authenticate(conn: ClientConnection) -> Welcome:
    conn.send(Auth("").serialize())
    welcome = parse(conn.recv(timeout=10))
    assert isinstance(welcome, Welcome), welcome
    return welcome


def test_node_at_capacity_refuses_new_streams_at_once(small_node_settings: NodeSettings) -> None:
    with ServerThread(create_app(small_node_settings)) as server, _open(server) as first:
        _hello(first)
        _authenticate(first)  # a stream slot is taken only by an authenticated client
        with _open(server) as second:
            error = _expect_error(second, ErrorCode.OVERLOADED)
            assert "capacity" in error.message
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1013
        _still_serves(first)


def test_health_and_readiness_report_the_engine(node_server: ServerThread) -> None:
    with urllib.request.urlopen(f"{node_server.http_url}/healthz", timeout=10) as response:
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(f"{node_server.http_url}/readyz", timeout=10) as response:
        ready = json.load(response)
    assert ready["status"] == "ready"
    assert ready["provider"] == "CPUExecutionProvider"
    assert ready["model"] == "nanodet-g-416"


def test_an_idle_node_already_reports_an_inference_time(node_server: ServerThread) -> None:
    # what the registry shows before any frame came: clients score nodes with it
    with urllib.request.urlopen(f"{node_server.http_url}/readyz", timeout=10) as response:
        assert json.load(response)["last_inference_ms"] > 0


def test_refusal_logs_are_sampled() -> None:
    sampler = LogSampler(per_s=2.0)
    allowed = [sampler.allow(t / 100) for t in range(100)]  # 100 events in one second
    assert sum(allowed) == 2
    assert sampler.suppressed == 98
