"""Which transport a node link uses, sans-I/O (issue 16): WebTransport (QUIC) where the
browser has it and the node offers it, else the WebSocket as ever.

A node offers WebTransport in its registry entry (``wt_port``, ``wt_cert_sha256``) and in
the WELCOME of every link (``protocol.Welcome``); the page remembers the offer per node
URL. A link opened while an offer is known goes over QUIC; one that fails before its HELLO
(UDP blocked, the port closed, a certificate the browser refuses) or has no HELLO within
``WT_READY_DEADLINE_MS`` counts against QUIC for that node only (never against the node:
the router does not hear of it), and the page opens the same node over its WebSocket at
once; QUIC is tried again after ``WT_RETRY_AFTER_MS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .quic_framing import CONTROL_PREFIX_SIZE, OWN_STREAM_TYPES, WT_PATH

__all__ = [
    "QUIC",
    "WEBSOCKET",
    "WT_READY_DEADLINE_MS",
    "WT_RETRY_AFTER_MS",
    "TransportChoice",
    "WtOffer",
    "js_constants",
    "offer_url",
]

QUIC = "QUIC"
WEBSOCKET = "WebSocket"
# A node's HELLO over QUIC takes one round trip after the QUIC handshake (the page speaks
# first): a second means UDP does not get through, and the page has no second to lose.
WT_READY_DEADLINE_MS = 1000.0
WT_RETRY_AFTER_MS = 60_000.0


@dataclass(frozen=True)
class WtOffer:
    url: str  # https://host:port/wt
    cert_sha256: str  # hex; "" when the node's certificate is CA-signed

    def action_fields(self) -> dict[str, object]:
        """What a connect/switch/join action tells the JS (static/wt-link.js)."""
        hashes = [self.cert_sha256] if self.cert_sha256 else []
        return {"transport": QUIC, "wt_url": self.url, "wt_hashes": hashes}


def offer_url(node_url: str, wt_port: int) -> str | None:
    """The WebTransport URL of the node at ``node_url`` (its ws[s]:// URL) on UDP
    ``wt_port``: the same host. None for a port of 0 or a URL without a host."""
    if not 0 < wt_port <= 65535:
        return None
    host = urlsplit(node_url).hostname
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{wt_port}{WT_PATH}"


def js_constants() -> dict[str, object]:
    """The framing facts the page's JS needs to move bytes (defined once, here and in
    quic_framing.py): which message types ride a stream of their own and the control
    prefix's size."""
    return {
        "own_stream_types": sorted(int(t) for t in OWN_STREAM_TYPES),
        "control_prefix_bytes": CONTROL_PREFIX_SIZE,
    }


class TransportChoice:
    """Offers learnt per node URL, failures per node URL, and whether this browser has
    WebTransport at all (the JS says so once)."""

    def __init__(self) -> None:
        self.is_available = False
        self._offers: dict[str, WtOffer] = {}
        self._failed_until_ms: dict[str, float] = {}
        self.quic_failures = 0  # QUIC links given up for a WebSocket, for Details and tests

    def learn(self, node_url: str, wt_port: int, cert_sha256: str) -> None:
        url = offer_url(node_url, wt_port)
        if url is None:
            self._offers.pop(node_url, None)  # the node stopped offering it
            return
        self._offers[node_url] = WtOffer(url, cert_sha256)

    def offer(self, node_url: str) -> WtOffer | None:
        return self._offers.get(node_url)

    def choose(self, node_url: str, now_ms: float) -> WtOffer | None:
        """The offer to use for a new link to ``node_url``, or None: WebSocket."""
        if not self.is_available:
            return None
        if now_ms < self._failed_until_ms.get(node_url, 0.0):
            return None
        return self._offers.get(node_url)

    def failed(self, node_url: str, now_ms: float) -> None:
        self._failed_until_ms[node_url] = now_ms + WT_RETRY_AFTER_MS
        self.quic_failures += 1
