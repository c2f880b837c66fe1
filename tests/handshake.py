"""The client's side of a node handshake for tests that drive ``NodeStream`` over a real
(synchronous) websockets connection: HELLO in, AUTH out, WELCOME in."""

from __future__ import annotations

from websockets.sync.client import ClientConnection

from pyodide_client.stream import NodeStream, Ready

__all__ = ["handshake"]


def handshake(conn: ClientConnection, stream: NodeStream, timeout_s: float = 10.0) -> Ready:
    """Until the stream is ready; raises AssertionError with the events if it is not."""
    events = stream.receive(conn.recv(timeout=timeout_s), now_ms=0.0)
    for message in stream.data_to_send():
        conn.send(message)
    while not events:
        events = stream.receive(conn.recv(timeout=timeout_s), now_ms=0.0)
    ready = events[0]
    assert isinstance(ready, Ready), f"expected the node's WELCOME, got {events}"
    return ready
