"""Nagle's algorithm is off on the connections both servers accept (issue 16).

asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; a listener made
with protocol 0 served every connection with Nagle on, and a node then held result n back
until the client's ACK came with frame n+1. These tests read TCP_NODELAY on the server's
own end of a live connection, found through uvicorn's connection set."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from edgesight.serving import ServerThread
from edgesight.startup import bind_listener
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings


def server_side_nodelay(server: ServerThread) -> list[int]:
    """TCP_NODELAY of every connection the server holds now, read on its own sockets."""
    values = []
    for protocol in server.server.server_state.connections:
        transport = protocol.transport  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        values.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return values


def http_get_keep_alive(port: int, path: str) -> socket.socket:
    """An HTTP/1.1 request answered on a connection left open (so the server holds it)."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = client.recv(4096)
        assert chunk, f"the server closed the connection; got {received!r}"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:80]
    return client


@pytest.fixture(scope="module")
def node(node_settings: NodeSettings) -> Iterator[ServerThread]:
    app = create_node_app(node_settings)
    with ServerThread(app, max_message_bytes=node_settings.max_message_bytes) as server:
        yield server


def test_the_listener_is_made_for_tcp_so_asyncio_sets_nodelay() -> None:
    sock = bind_listener("127.0.0.1", 0, "the node", "--node-port")
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_a_node_websocket_connection_has_nagle_off(node: ServerThread) -> None:
    with connect(node.ws_url, open_timeout=10) as ws:
        ws.recv(timeout=10)  # the HELLO: the connection is open on both ends
        values = server_side_nodelay(node)
    assert values, "the node held no connection while the client was connected"
    assert all(v != 0 for v in values), f"TCP_NODELAY on the node's connections: {values}"


def test_a_node_http_connection_has_nagle_off(node: ServerThread) -> None:
    with http_get_keep_alive(node.port, "/healthz"):
        values = server_side_nodelay(node)
    assert values, "the server held no connection while the client was connected"
    assert all(v != 0 for v in values), f"TCP_NODELAY: {values}"


def test_a_web_app_connection_has_nagle_off(node: ServerThread) -> None:
    settings = WebappSettings(node_urls=(node.ws_url,))
    with (
        ServerThread(create_webapp(settings)) as webapp,
        http_get_keep_alive(webapp.port, "/healthz"),
    ):
        values = server_side_nodelay(webapp)
    assert values, "the server held no connection while the client was connected"
    assert all(v != 0 for v in values), f"TCP_NODELAY: {values}"
