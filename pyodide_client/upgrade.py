"""Moving a live node link from its WebSocket to QUIC, make before break, sans-I/O
(issue 16).

A page learns that a node serves WebTransport from the WELCOME of its WebSocket link (or
the registry). It then opens the same node over QUIC beside the link that streams on; the
QUIC link's own HELLO and WELCOME make it the page's link, and the WebSocket answers the
frames it still holds, under a key of its own (``url + RETIRED_SUFFIX``, through
``handover.Handover``'s draining), before the page leaves it. A QUIC link that fails, or
has no WELCOME within ``transport.WT_UPGRADE_DEADLINE_MS``, costs nothing: the WebSocket
link never stopped. ``PageCore`` wires this to the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .stream import AccessRefused, NodeStream, StreamError, StreamState

__all__ = ["RETIRED_SUFFIX", "Upgrade", "Upgrading"]

RETIRED_SUFFIX = "#websocket"  # the draining WebSocket link's key, beside its QUIC successor


@dataclass
class Upgrading:
    url: str
    stream: NodeStream
    opened_ms: float
    outbox: list[bytes] = field(default_factory=list)  # its AUTH


class Upgrade:
    def __init__(self) -> None:
        self.upgrading: Upgrading | None = None

    def begin(self, url: str, stream: NodeStream, now_ms: float) -> None:
        self.upgrading = Upgrading(url, stream, now_ms)

    def give_up(self) -> None:
        if self.upgrading is not None:
            self.upgrading.stream.connection_lost()
        self.upgrading = None

    def on_data(
        self, data: bytes | bytearray | memoryview, now_ms: float
    ) -> Literal["waiting", "ready", "failed"]:
        """A message on the QUIC link: "ready" once its WELCOME came (it takes over and is
        no longer held here), "failed" when it cannot be used."""
        up = self.upgrading
        assert up is not None, "on_data without an upgrade"
        try:
            events = up.stream.receive(data, now_ms)
        except StreamError:
            self.give_up()
            return "failed"
        if any(isinstance(event, AccessRefused) for event in events):
            self.give_up()
            return "failed"
        up.outbox.extend(up.stream.data_to_send())
        if up.stream.state is StreamState.READY:
            self.upgrading = None
            return "ready"
        return "waiting"
