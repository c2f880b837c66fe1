"""Probes: short-lived sockets that measure a candidate node, sans-I/O.

The page opens a probe socket when the router says a node is due for a ping
(``Router.probes_due``); the node speaks first (HELLO), the probe answers with one PING,
and the node's PONG gives the round trip, reported to the router. Anything else (a
refusal, a broken message, a socket that closes first) is a failure for the router, of its
kind (``routing.Failure``: a node with another model is REFUSED, garbage is BROKEN, a
socket that fails is UNREACHABLE), so that each backs off on its own schedule (issue 18);
an ``ERROR OVERLOADED`` counts as "at capacity", not as a fault. The page's JavaScript moves
the bytes: it hands each message to ``on_message`` and sends what comes back, closing the
probe on an empty answer.
"""

from __future__ import annotations

from .protocol import Error, ErrorCode, Hello, Ping, Pong, ProtocolError, parse
from .routing import Failure, Router

__all__ = ["Probes"]


class Probes:
    def __init__(self, expected_sha256: str = "") -> None:
        self._nonces: dict[str, int] = {}  # url -> nonce of the ping sent to it
        self._next_nonce = 0
        self._expected_sha256 = expected_sha256  # "": any model
        # The last refusal a probe learned, for the page to show (issue 18): (why, the
        # node's name from its HELLO or "", the model it serves); why is "model" or
        # "overloaded".
        self.refusal: tuple[str, str, str] | None = None

    def on_message(
        self, router: Router, url: str, data: bytes | bytearray | memoryview, now_ms: float
    ) -> bytes:
        """After the HELLO, the PING to send; after the PONG (or anything else), b""."""
        try:
            message = parse(data)
        except ProtocolError:
            router.record_failure(url, now_ms, kind=Failure.BROKEN)
            return b""
        if isinstance(message, Hello) and self._expected_sha256 not in ("", message.model_sha256):
            self._nonces.pop(url, None)
            router.record_failure(url, now_ms, kind=Failure.REFUSED)  # another model
            self.refusal = ("model", message.node_name, message.model_name)
            return b""
        if isinstance(message, Hello):
            self._next_nonce += 1
            self._nonces[url] = self._next_nonce
            return Ping(self._next_nonce, now_ms).serialize()
        if isinstance(message, Pong) and self._nonces.get(url) == message.nonce:
            del self._nonces[url]
            router.record_rtt(url, now_ms - message.sent_ms, now_ms)
            return b""
        overloaded = getattr(message, "code", None) is ErrorCode.OVERLOADED
        self._nonces.pop(url, None)
        kind = Failure.REFUSED if isinstance(message, Error) else Failure.BROKEN
        router.record_failure(url, now_ms, overloaded=overloaded, kind=kind)
        if overloaded:
            self.refusal = ("overloaded", "", "")
        return b""

    def on_failed(self, router: Router, url: str, now_ms: float) -> None:
        """The probe socket failed or closed before its PONG."""
        self._nonces.pop(url, None)
        router.record_failure(url, now_ms)
