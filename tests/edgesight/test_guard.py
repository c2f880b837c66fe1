"""The HTTP guard of both servers (``edgesight/guard.py``) against issue 17's request-body
attacks, each on a real uvicorn on 127.0.0.1 port 0 serving the real node app and the
real web app: a malformed chunked body costs one 400 and at most one log line (no
traceback), and a body trickled byte by byte is cut off while other clients are served."""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.applications import Starlette

from edgesight.serving import ServerLimits, ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from pyodide_client.protocol import Hello, Ping, Pong, parse
from tests import raw_ws
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings

# Small, so that the tests finish in about a second; production defaults are 10 s, 512 B/s.
LIMITS = ServerLimits(header_timeout_s=5.0, body_timeout_s=1.0, min_body_rate_bytes_per_s=50.0)
RESET = b"<reset>"  # what trickle() adds to an answer cut by a reset
BODY_PATHS = {"node": ("GET", "/readyz"), "webapp": ("POST", "/api/report")}


@pytest.fixture(scope="module", params=["node", "webapp"])
def served(
    request: pytest.FixtureRequest, node_settings: NodeSettings
) -> Iterator[tuple[str, ServerThread]]:
    app: Starlette
    if request.param == "node":
        app = create_node_app(replace(node_settings, max_streams=1))
    else:
        app = create_webapp(WebappSettings(node_urls=("ws://127.0.0.1:9999/ws",)))
    with ServerThread(app, limits=LIMITS) as server:
        yield request.param, server


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def lines(self) -> list[str]:
        with self._lock_records:
            return [r.getMessage() for r in self.records]

    def tracebacks(self) -> list[logging.LogRecord]:
        with self._lock_records:
            return [r for r in self.records if r.exc_info is not None]


@pytest.fixture
def logs() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket's timeout bounds it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def get_ok(server: ServerThread) -> bool:
    with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=10) as response:
        return bool(response.status == 200)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_malformed_chunked_body_gets_a_400_and_no_traceback(
    served: tuple[str, ServerThread], logs: Records, method: str
) -> None:
    kind, server = served
    _, path = BODY_PATHS[kind]
    requests = 20
    for _ in range(requests):
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(
                f"{method} {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "zz\r\nnot a chunk\r\n".encode()
            )
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert get_ok(server)  # the app's next request is served as usual
    lines = logs.lines()
    assert not logs.tracebacks(), lines
    assert not [line for line in lines if "Exception in ASGI application" in line], lines
    assert not [line for line in lines if "Invalid HTTP request" in line], lines
    # at most one line per such request, sampled (a line a second per server), and
    # nothing else about them
    refused = [line for line in lines if "malformed request" in line]
    assert len(refused) <= requests, lines
    assert len(lines) <= len(refused) + 1, lines  # + the access line of /healthz


def trickle(
    server: ServerThread,
    path: str,
    method: str,
    every_s: float,
    step_bytes: int,
    source: str = "127.0.0.1",
) -> tuple[bytes, int]:
    """Headers at once, then a body of 10,000 bytes, ``step_bytes`` per ``every_s`` (the
    read timeout is the pace), until the server closes; returns what it answered and how
    many body bytes went."""
    sent = 0
    address = (server.host, server.port)
    with socket.create_connection(address, timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 10000\r\n\r\n".encode()
        )
        sock.settimeout(every_s)
        answer = b""
        while sent < 10_000:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                chunk = None
            except ConnectionResetError:
                # closed with our unread bytes in its buffer: the kernel resets, and an
                # answer not yet read is lost with it
                return answer + RESET, sent
            if chunk == b"":
                return answer, sent  # closed by the server
            if chunk:
                answer += chunk
            try:
                sock.sendall(b" " * step_bytes)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += step_bytes
        sock.settimeout(10)
        with_rest = answer
        try:
            with_rest += read_all(sock)
        except ConnectionResetError:
            with_rest += RESET
        return with_rest, sent


@pytest.mark.parametrize(
    ("every_s", "step_bytes"),
    [
        (0.1, 1),  # 10 B/s at most: under the minimum rate, cut after its first window
        (0.01, 8),  # up to 800 B/s: over the minimum, cut at the body's deadline
    ],
)
def test_a_trickled_body_is_cut_off_and_others_are_served(
    served: tuple[str, ServerThread], logs: Records, every_s: float, step_bytes: int
) -> None:
    kind, server = served
    method, path = BODY_PATHS[kind]
    # A WebSocket opened before: h11 saw its upgrade request as a body not yet read, but
    # the socket is the WebSocket protocol's and no body timer may touch it.
    ws, head = raw_ws.handshake(server.host, server.port, origin=server.http_url)
    answers: list[tuple[bytes, int]] = []
    trickler = threading.Thread(
        target=lambda: answers.append(trickle(server, path, method, every_s, step_bytes)),
        daemon=True,
    )
    trickler.start()
    assert get_ok(server)  # served while the body trickles
    trickler.join(timeout=30)
    assert not trickler.is_alive(), "the server never cut the trickled body off"
    answer, sent = answers[0]
    assert sent < 10_000, "the whole body went through"
    # An app that had not answered yet: 408; one that had (the node's /readyz answers
    # without reading the body): its answer, then the close.
    # (A reset, when the node closed with the client's unread bytes, may take the 408 or
    # the answer with it: closed is what counts.)
    if kind == "webapp":
        assert answer.startswith((b"HTTP/1.1 408 ", RESET)), answer[:80]
    else:
        assert answer.startswith((b"HTTP/1.1 200 ", RESET)), answer[:80]
    lines = logs.lines()
    assert not logs.tracebacks(), lines
    assert get_ok(server)
    with ws:
        if kind == "node":  # the node's socket: still open after the body deadline
            assert head.startswith(b"HTTP/1.1 101"), head
            ws.sendall(raw_ws.message(Ping(5, 1.0).serialize()))
            assert isinstance(parse(raw_ws.read_message(ws)[1]), Hello)
            assert parse(raw_ws.read_message(ws)[1]) == Pong(5, 1.0)


def test_both_servers_read_the_body_limits_from_their_settings() -> None:
    environ = {"EDGESIGHT_BODY_TIMEOUT_S": "2.5", "EDGESIGHT_MIN_BODY_RATE_BYTES_PER_S": "64"}
    node = NodeSettings.from_env(environ)
    web = WebappSettings.from_env(environ)
    assert (node.body_timeout_s, node.min_body_rate_bytes_per_s) == (2.5, 64.0)
    assert (web.body_timeout_s, web.min_body_rate_bytes_per_s) == (2.5, 64.0)
    assert NodeSettings.from_env({"EDGESIGHT_MAX_JPEG_SCANS": "12"}).max_jpeg_scans == 12
    for settings in (NodeSettings, WebappSettings):
        with pytest.raises(ValueError, match="body_timeout_s"):
            settings.from_env({"EDGESIGHT_BODY_TIMEOUT_S": "0"})
        with pytest.raises(ValueError, match="min_body_rate_bytes_per_s"):
            settings.from_env({"EDGESIGHT_MIN_BODY_RATE_BYTES_PER_S": "-1"})


def test_bodies_that_come_in_time_are_served_on_a_kept_alive_connection(
    served: tuple[str, ServerThread], logs: Records
) -> None:
    kind, server = served
    method, path = BODY_PATHS[kind]
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for _ in range(3):  # one connection, several requests with bodies
            connection.request(method, path, body=b"{}" * 2000)
            response = connection.getresponse()
            response.read()
            assert response.status != 408
    finally:
        connection.close()
    assert not [line for line in logs.lines() if "request body came" in line]


def test_an_address_that_keeps_trickling_is_dropped_for_a_while() -> None:
    # a trickler that reconnects at once turned every cut into a new request to serve
    limits = replace(LIMITS, max_slow_requests_per_address=2, slow_request_window_s=600.0)
    app = create_webapp(WebappSettings(node_urls=("ws://127.0.0.1:9999/ws",)))
    with ServerThread(app, limits=limits) as server:
        for _ in range(2):  # cut, whatever the app answered (the second report: 429)
            _, sent = trickle(server, "/api/report", "POST", 0.1, 1, source="127.0.0.3")
            assert sent < 10_000
        # the third connection from that address is dropped at once
        with socket.create_connection(
            (server.host, server.port), timeout=10, source_address=("127.0.0.3", 0)
        ) as sock:
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = read_all(sock)
            except ConnectionResetError:
                answer = b""
        assert answer == b""
        assert get_ok(server)  # everyone else is served
