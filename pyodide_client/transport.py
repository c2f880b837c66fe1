"""Which transport a node link uses, sans-I/O (issue 16): the WebSocket, or WebTransport
(QUIC) where the browser has it, the node offers it and the link is measured to need it.

The choice is per link and measured (policy ``auto``, the default). QUIC's gain is on a
lossy link: a lost packet stalls only its own frame, and its loss recovery has no 200 ms
floor, where TCP's tail is one retransmission timeout per lost frame tail. It costs the
node about twice the CPU per frame (aioquic is Python), and on a clean link the WebSocket
is as fast or faster (docs/benchmarks.md (r), (u)). So a link starts on the WebSocket,
and moves to QUIC (make before break, ``upgrade.py``) once its frames are measured late
(``inflight.InFlightPolicy.is_lossy``: frames a round trip beyond the fastest, as
retransmissions make them), near or far: the page itself in Chromium, through the lab,
drew 1.2-2.6 x TCP's frame rate over QUIC at every round trip with 1 or 5 % loss (50 ms and
1 %: 25-27 fps against 9; docs/benchmarks.md (u4); until round 6 a distant link stayed
on TCP, from a lab whose QUIC sender was aioquic, and the page's QUIC reset frames the
node already had).
The page remembers a node it moved as lossy for ``LOSSY_MEMORY_MS``, and opens new links
to it over QUIC meanwhile. ``quic`` uses QUIC
whenever offered (the behaviour before measurement), ``websocket`` never.

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
    "LOSSY_MEMORY_MS",
    "POLICIES",
    "QUIC",
    "WEBSOCKET",
    "WT_READY_DEADLINE_MS",
    "WT_RETRY_AFTER_MS",
    "WT_UPGRADE_DEADLINE_MS",
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
# A live WebSocket link moving to QUIC loses nothing while it waits (it streams on), and
# the move is wanted most on a lossy, busy link, where a handshake and three messages can
# take more than a second: its QUIC link has longer to bring its WELCOME.
WT_UPGRADE_DEADLINE_MS = 5000.0
WT_RETRY_AFTER_MS = 60_000.0
# A link measured lossy marks its node for this long: a new link to it goes over QUIC.
LOSSY_MEMORY_MS = 300_000.0
POLICIES = ("auto", "quic", "websocket")  # EDGESIGHT_PAGE_TRANSPORT


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
    """Offers learnt per node URL, failures and lossy measurements per node URL, and
    whether this browser has WebTransport at all (the JS says so once)."""

    def __init__(self, policy: str = "auto") -> None:
        if policy not in POLICIES:
            raise ValueError(f"transport policy: expected one of {POLICIES}, got {policy!r}")
        self.policy = policy
        self.is_available = False
        self._offers: dict[str, WtOffer] = {}
        self._failed_until_ms: dict[str, float] = {}
        self._lossy_until_ms: dict[str, float] = {}
        self.quic_failures = 0  # QUIC links given up for a WebSocket, for Details and tests
        self.lossy_upgrades = 0  # WebSocket links moved to QUIC because they were lossy

    def learn(self, node_url: str, wt_port: int, cert_sha256: str) -> None:
        url = offer_url(node_url, wt_port)
        if url is None:
            self._offers.pop(node_url, None)  # the node stopped offering it
            return
        self._offers[node_url] = WtOffer(url, cert_sha256)

    def offer(self, node_url: str) -> WtOffer | None:
        return self._offers.get(node_url)

    def choose(self, node_url: str, now_ms: float) -> WtOffer | None:
        """The offer to use for a new link to ``node_url``, or None: WebSocket. Under
        ``auto``, only for a node whose link was measured lossy lately."""
        if self.policy == "auto" and now_ms >= self._lossy_until_ms.get(node_url, 0.0):
            return None
        return self._usable(node_url, now_ms)

    def upgrade_offer(self, node_url: str, is_lossy: bool, now_ms: float) -> WtOffer | None:
        """The offer a live WebSocket link to ``node_url`` should move to now, or None.
        ``is_lossy``: the link's own measurement; under ``auto`` only a lossy link moves,
        and its node is remembered as lossy."""
        if self.policy == "auto":
            if not is_lossy:
                return None
            offer = self._usable(node_url, now_ms)
            if offer is not None:
                self._lossy_until_ms[node_url] = now_ms + LOSSY_MEMORY_MS
                self.lossy_upgrades += 1
            return offer
        return self._usable(node_url, now_ms)

    def _usable(self, node_url: str, now_ms: float) -> WtOffer | None:
        if self.policy == "websocket" or not self.is_available:
            return None
        if now_ms < self._failed_until_ms.get(node_url, 0.0):
            return None
        return self._offers.get(node_url)

    def failed(self, node_url: str, now_ms: float) -> None:
        self._failed_until_ms[node_url] = now_ms + WT_RETRY_AFTER_MS
        self.quic_failures += 1
