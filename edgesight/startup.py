"""What start-up binds and prints: listening sockets bound before any server starts, so a
port in use is one line naming its setting (not uvicorn's 80-line traceback after the
other server already started), and a log filter for the lines two uvicorn servers in one
process would print twice."""

from __future__ import annotations

import errno
import logging
import socket

__all__ = ["PortInUse", "bind_listener", "quiet_uvicorn"]


class PortInUse(ValueError):
    """The port a server should listen on is taken or not allowed."""


def bind_listener(host: str, port: int, what: str, setting: str) -> socket.socket:
    """A bound TCP socket for uvicorn's ``serve(sockets=...)``. ``what`` names the server
    and ``setting`` the flag and variable that choose its port, for the message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets whose protocol says TCP, and an accepted connection takes the listener's.
    # With protocol 0 a node held result n until the client's ACK came with frame n+1
    # (issue 16: two frames in flight at 50 ms RTT gave p50 103 ms instead of 53).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{what} cannot listen on {host}:{port}: the port is already in use "
                f"(choose another with {setting}, or stop what is using it)"
            ) from None
        reason = exc.strerror or str(exc)
        raise PortInUse(f"{what} cannot listen on {host}:{port}: {reason} ({setting})") from None
    sock.set_inheritable(True)
    return sock


class _Once(logging.Filter):
    """Drops uvicorn's per-server start-up chatter: edgesight logs its own 'ready' lines,
    and with a node and a web app in one process each of these came twice."""

    DROPPED = ("Waiting for application startup.", "Application startup complete.")

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.DROPPED:
            return False
        if message.startswith("Started server process"):
            if message in self._seen:
                return False
            self._seen.add(message)
        return True


def quiet_uvicorn() -> None:
    logging.getLogger("uvicorn.error").addFilter(_Once())
