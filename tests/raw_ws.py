"""A hand-made WebSocket client on a plain socket, for tests and benchmarks that must
misbehave in ways a real client library will not: never read, send half a request, send
a message just over the limit, come from another loopback address (127.0.0.2, ...)."""

from __future__ import annotations

import base64
import os
import socket
import struct

__all__ = ["close_code", "handshake", "message", "open_socket", "read_message"]

OP_BINARY = 0x2
OP_CLOSE = 0x8


def open_socket(
    host: str, port: int, source: str | None = None, timeout_s: float = 10.0
) -> socket.socket:
    """A TCP connection, from the loopback address ``source`` when given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    if source is not None:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def handshake(
    host: str,
    port: int,
    origin: str | None = None,
    source: str | None = None,
    timeout_s: float = 10.0,
) -> tuple[socket.socket, bytes]:
    """Open ``/ws``; returns the socket and the HTTP response head (check its status)."""
    sock = open_socket(host, port, source, timeout_s)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = f"Origin: {origin}\r\n" if origin is not None else ""
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n{extra}"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    if rest:  # the first WebSocket frames came with the response: keep them readable
        sock = _Prefixed(sock, rest)  # type: ignore[assignment]
    return sock, head


def message(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """One masked client frame (the mask is zero: the payload goes as it is)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", size)
    return head + b"\0\0\0\0" + payload


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    """The next server frame: (opcode, payload). Raises ConnectionError at EOF."""
    head = _read_exactly(sock, 2)
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        size = struct.unpack("!H", _read_exactly(sock, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", _read_exactly(sock, 8))[0]
    return opcode, _read_exactly(sock, size)


def close_code(sock: socket.socket) -> int:
    """Read server frames until the close frame; its status code."""
    while True:
        opcode, payload = read_message(sock)
        if opcode == OP_CLOSE:
            return int(struct.unpack("!H", payload[:2])[0])


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"connection ended after {len(data)} of {size} bytes")
        data += chunk
    return data


class _Prefixed:
    """A socket whose first reads return bytes already received."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self._sock = sock
        self._prefix = prefix

    def recv(self, size: int) -> bytes:
        if self._prefix:
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            return chunk
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)

    def __enter__(self) -> _Prefixed:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
