"""The page's QUIC glue, sans-I/O (issue 16): which transport a new link opens with, a
live WebSocket link's move to QUIC beside it (make before break, ``upgrade.py``), and the
way back to the WebSocket when QUIC does not get through. The choice itself is
``transport.TransportChoice``'s (measured per link); this module applies it to the
page's links. ``page_core.PageCore`` calls it at each tick, for the QUIC link's messages
and closes, and for the frames the page's JS reset on the wire.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from .page_events import Buffer, as_bytes
from .transport import (
    QUIC,
    WEBSOCKET,
    WT_READY_DEADLINE_MS,
    WT_UPGRADE_DEADLINE_MS,
    TransportChoice,
    WtOffer,
)
from .upgrade import RETIRED_SUFFIX, Upgrade

if TYPE_CHECKING:
    from .frames import Frames
    from .handover import Handover
    from .node_link import NodeLink
    from .page_origin import PageOrigin
    from .routing import Router
    from .stream import NodeStream

__all__ = ["QuicMoves", "QuicPage"]


class QuicPage(Protocol):
    """What the QUIC glue needs of the page core."""

    link: NodeLink
    handover: Handover
    router: Router
    frames: Frames
    origin: PageOrigin
    route_note: str

    @property
    def node_url(self) -> str | None: ...
    @property
    def stream(self) -> NodeStream | None: ...
    def is_node_ready(self) -> bool: ...
    def drop_stream(self) -> None: ...
    def new_stream(self, url: str, now_ms: float, transport: str = WEBSOCKET) -> NodeStream: ...
    def open_link(self, do: str, url: str, now_ms: float) -> dict[str, Any]: ...


class QuicMoves:
    """The transport choice, the move to QUIC in progress, and the links to reopen over
    their WebSocket."""

    def __init__(self, page: QuicPage, policy: str) -> None:
        self.page = page
        self.transport = TransportChoice(policy)
        # A live WebSocket link moving to QUIC on the same node, make before break: the
        # QUIC link connects beside it and takes over at its WELCOME (upgrade.py).
        self.upgrade = Upgrade()
        self.ws_again: str | None = None  # a node to reopen over WebSocket at once
        self.join_ws_again: str | None = None  # a move to go on with over WebSocket

    def set_webtransport(self, is_available: bool) -> None:
        """Whether this browser has ``WebTransport`` (the JS says so once, at start)."""
        self.transport.is_available = bool(is_available)

    def offer(self, url: str, now_ms: float, *, is_upgrade: bool = False) -> WtOffer | None:
        """QUIC for a link to ``url`` (a new one, or the live WebSocket link moving:
        ``is_upgrade``, measured on that link; transport.py), unless this page sends raw
        frames only (pinned raw, or a browser with no encoder): those stay on the WebSocket."""
        page = self.page
        if page.frames.settings.mode == "raw" or not page.frames.can_encode:
            return None
        if is_upgrade:
            # a page with K pinned (EDGESIGHT_FRAMES_IN_FLIGHT) measures no loss: it stays
            policy = None if page.stream is None else page.stream.in_flight_policy
            is_lossy = policy is not None and policy.is_lossy
            offer = self.transport.upgrade_offer(url, is_lossy, now_ms)
        else:
            offer = self.transport.choose(url, now_ms)
        # a node listed as wss://{hostname}:PORT/ws: its QUIC URL is on the page's host too
        return None if offer is None else replace(offer, url=page.origin.fill_host(offer.url))

    # -- each tick ---------------------------------------------------------------------------
    def fallback_actions(self, now_ms: float) -> list[dict[str, Any]]:
        """A QUIC link without its HELLO in time is left, and a node whose QUIC link
        failed is reopened over its WebSocket, now; neither counts against the node."""
        page = self.page
        url = page.node_url
        actions: list[dict[str, Any]] = []
        if (
            url is not None
            and page.link.transport == QUIC
            and not page.is_node_ready()
            and now_ms >= page.link.opened_ms + WT_READY_DEADLINE_MS
        ):
            actions.append({"do": "abandon", "reason": "QUIC did not answer"})
            self.transport.failed(url, now_ms)
            page.drop_stream()
            self.ws_again = url
        again, self.ws_again = self.ws_again, None
        if again is not None and page.node_url is None:
            page.route_note = f"{again} over WebSocket: QUIC did not get through"
            actions.append(page.open_link("connect", again, now_ms))
        join, self.join_ws_again = self.join_ws_again, None
        if join is not None and page.router.pending == join and page.handover.joining is None:
            page.handover.begin(join, page.new_stream(join, now_ms), WEBSOCKET)
            actions.append({"do": "join", "url": join})
        return actions

    def upgrade_actions(self, now_ms: float) -> list[dict[str, Any]]:
        """Start moving the live WebSocket link to QUIC when the choice says so; leave a
        move that brought no WELCOME in time (it cost nothing: the WebSocket streams on)."""
        page = self.page
        url = page.node_url
        if self.upgrade.upgrading is not None:
            if now_ms < self.upgrade.upgrading.opened_ms + WT_UPGRADE_DEADLINE_MS:
                return []
            self.transport.failed(self.upgrade.upgrading.url, now_ms)  # silent: UDP blocked
            self.upgrade.give_up()
            return [{"do": "leave_upgrade"}]
        if (
            url is None
            or not page.is_node_ready()
            or page.link.transport != WEBSOCKET
            or page.handover.joining is not None
        ):
            return []
        offer = self.offer(url, now_ms, is_upgrade=True)
        if offer is None:
            return []
        self.upgrade.begin(url, page.new_stream(url, now_ms, QUIC), now_ms)
        return [{"do": "upgrade", "url": url, **offer.action_fields()}]

    def deadlines_ms(self) -> list[float]:
        """When a tick is due for QUIC: the page's QUIC link's HELLO, a move's WELCOME."""
        page = self.page
        times = []
        if page.link.transport == QUIC and page.node_url is not None and not page.is_node_ready():
            times.append(page.link.opened_ms + WT_READY_DEADLINE_MS)
        if self.upgrade.upgrading is not None:
            times.append(self.upgrade.upgrading.opened_ms + WT_UPGRADE_DEADLINE_MS)
        return times

    # -- what the QUIC links do ----------------------------------------------------------------
    def on_closed(self, url: str, now_ms: float) -> bool:
        """A socket to ``url`` closed: True when it was a QUIC link that never got through
        (handled here: the node is not to blame, its WebSocket takes over)."""
        page = self.page
        joining = page.handover.joining
        if joining is not None and joining.url == url and joining.transport == QUIC:
            page.handover.closed(url)  # QUIC did not get through: the node is not to blame
            self.transport.failed(url, now_ms)
            self.join_ws_again = url  # the move goes on over its WebSocket
            return True
        if url == page.node_url and page.link.transport == QUIC and not page.is_node_ready():
            self.transport.failed(url, now_ms)
            page.drop_stream()
            self.ws_again = url  # the next tick (the JS ticks at once) reopens it
            return True
        return False

    def on_upgrade_message(self, url: str, data: Buffer, now_ms: float) -> str:
        """A message on the QUIC link a live WebSocket link is moving to; a JSON list of
        events: ``send_upgrade`` (take_upgrade_outgoing until b""), ``upgraded`` (it is
        the page's link now; the old one drains under ``retired_key`` or is left),
        ``leave_upgrade`` (it failed: the WebSocket link stays)."""
        page = self.page
        up = self.upgrade.upgrading
        if up is None or up.url != url or url != page.node_url:
            return "[]"
        outcome = self.upgrade.on_data(as_bytes(data), now_ms)
        if outcome == "failed":
            self.transport.failed(url, now_ms)
            return json.dumps([{"type": "leave_upgrade"}])
        if outcome == "waiting":
            return json.dumps([{"type": "send_upgrade"}] if up.outbox else [])
        old = page.link.stream
        page.link.adopt(url, up.stream, up.outbox, QUIC)
        key = url + RETIRED_SUFFIX
        is_draining = old is not None and page.handover.drain(key, old)
        events: list[dict[str, Any]] = [
            {"type": "upgraded", "url": url, "retired_key": key, "drain": is_draining}
        ]
        if up.outbox:
            events.append({"type": "send", "url": url})
        return json.dumps(events)

    def on_upgrade_close(self, url: str, now_ms: float) -> None:
        """The QUIC link a move opened closed before it took over."""
        up = self.upgrade.upgrading
        if up is not None and up.url == url:
            self.transport.failed(url, now_ms)
            self.upgrade.give_up()

    def take_upgrade_outgoing(self) -> bytes:
        up = self.upgrade.upgrading
        return up.outbox.pop(0) if up is not None and up.outbox else b""

    def opening(self, url: str, now_ms: float) -> bytes:
        """The first message on a new QUIC link to ``url``, b"" for none: the page speaks
        first there (the node answers with its HELLO, then this PING's PONG, which
        measures the link's round trip), see quic_framing.py."""
        page = self.page
        up = self.upgrade.upgrading
        if up is not None and up.url == url:
            return up.stream.ping(now_ms)
        joining = page.handover.joining
        if joining is not None and joining.url == url:
            return joining.stream.ping(now_ms)
        if url == page.node_url and page.stream is not None:
            return page.stream.ping(now_ms)
        return b""

    def frame_abandoned(self, url: str, head: Buffer, now_ms: float) -> None:
        """The JS reset a frame's QUIC stream: a newer frame superseded it while it was
        still uploading (latest frame wins across the wire). ``head``: the frame
        message's first bytes; the frame will never be answered."""
        page = self.page
        stream = page.stream if url == page.node_url else None
        if stream is not None:
            stream.abandon(as_bytes(head), now_ms)
