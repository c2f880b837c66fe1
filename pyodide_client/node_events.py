"""What the node links' messages mean for the page, sans-I/O.

``on_node_message`` takes one message from a node socket — the current link, the node a
planned move joins (its HELLO makes it current, ``handover.py``), or one the page moved
away from and lets answer its last frames — and returns the page's events (ready, welcome,
detections, dropped, refused, access_refused, error, fatal, send, promote, leave) while
telling the router, the dashboard, the token keeper and the overlay what happened.
``page_core.PageCore`` owns the state and passes itself in as a ``NodePage``: the
narrow view of the page this module reads and changes (it imports nothing of page_core.py).
"""

from __future__ import annotations

from typing import Any, Protocol

from .dashboard import Dashboard
from .handover import Failed, Handover, Waiting
from .model_card import ModelCard
from .node_link import NodeLink, overload_refusal
from .overlay import Overlay
from .page_api import public_server
from .page_events import Buffer, as_bytes
from .page_origin import PageOrigin
from .protocol import ErrorCode
from .quic_moves import QuicMoves
from .routing import Failure, Router
from .stream import (
    AccessRefused,
    Detections,
    Event,
    FrameDropped,
    ModelMismatch,
    NodeError,
    NodeStream,
    PongReceived,
    Ready,
    StreamError,
    Welcomed,
)
from .token_refresh import TokenKeeper
from .view import refusal_text

__all__ = ["NodePage", "on_node_message"]


class NodePage(Protocol):
    """What a node's messages may read and change on the page (``PageCore``)."""

    refusal: str  # the last node refusal, in words, until a node accepts the page
    route_note: str  # why the page is where it is, in words

    @property
    def handover(self) -> Handover: ...
    @property
    def link(self) -> NodeLink: ...
    @property
    def stream(self) -> NodeStream | None: ...
    @property
    def node_url(self) -> str | None: ...
    @property
    def card(self) -> ModelCard: ...
    @property
    def router(self) -> Router: ...
    @property
    def max_in_flight(self) -> int: ...
    @property
    def quic(self) -> QuicMoves: ...
    @property
    def tokens(self) -> TokenKeeper: ...
    @property
    def dashboard(self) -> Dashboard: ...
    @property
    def overlay(self) -> Overlay: ...
    @property
    def origin(self) -> PageOrigin: ...
    def is_node_ready(self) -> bool: ...
    def node_label(self, url: str) -> str: ...
    def lose_node(
        self, now_ms: float, overloaded: bool, kind: Failure = Failure.UNREACHABLE
    ) -> None: ...
    def drop_stream(self) -> None: ...


def on_node_message(page: NodePage, url: str, data: Buffer, now_ms: float) -> list[dict[str, Any]]:
    if page.handover.is_joining(url):
        return _on_joining_message(page, url, data, now_ms)
    if url in page.handover.draining:
        return _on_draining_message(page, url, data, now_ms)
    if page.stream is None or url != page.node_url:
        return []
    raw = as_bytes(data)
    if not page.is_node_ready():
        # A node at capacity sends ERROR OVERLOADED in place of its HELLO, then closes
        # with 1013 (gpu_backend/endpoint.py); NodeStream would call that a breach.
        refusal = overload_refusal(raw)
        if refusal is not None:
            page.refusal = refusal_text(page.node_label(url), "overloaded")
            page.lose_node(now_ms, overloaded=True)
            return [{"type": "refused", "message": refusal}]
    try:
        events = page.stream.receive(raw, now_ms)
    except ModelMismatch as exc:
        page.refusal = refusal_text(
            page.node_label(url), "model", model=exc.model_name, page_model=page.card.name
        )
        page.lose_node(now_ms, overloaded=False, kind=Failure.REFUSED)
        return [{"type": "fatal", "message": str(exc)}]
    except StreamError as exc:
        page.refusal = refusal_text(page.node_label(url), "broken", detail=str(exc))
        page.lose_node(now_ms, overloaded=False, kind=Failure.BROKEN)
        return [{"type": "fatal", "message": str(exc)}]
    out = [_to_page(page, url, event, now_ms) for event in events]
    return page.link.with_send([item for item in out if item is not None])


def _to_page(page: NodePage, url: str, event: Event, now_ms: float) -> dict[str, Any] | None:
    if isinstance(event, Ready):
        hello = event.hello
        if event.welcome is not None:  # where this node serves WebTransport (issue 16)
            page.quic.transport.learn(url, event.welcome.wt_port, event.welcome.wt_cert_sha256)
        page.router.record_connected(url, now_ms)
        # an adaptive K (0) starts at 1, and stays 1 on a near node (issue 16)
        page.router.pipeline_depth = min(page.max_in_flight or 1, hello.max_in_flight)
        page.link.name = hello.node_name
        page.link.model = hello.model_name
        page.route_note = ""
        page.refusal = ""
        identity = event.welcome.identity if event.welcome else None
        return {
            "type": "ready",
            "node": hello.node_name,
            "model": hello.model_name,
            "identity": identity,
            # the page API's edgesight:server event (docs/page-api.md)
            "api": public_server(
                hello.node_name, page.origin.fill_host(url), page.link.transport, identity, now_ms
            ),
        }
    if isinstance(event, AccessRefused):
        # The node closes the connection after this. An expired token is the page's
        # lapse, not the node's: fetch a new one and come back without blame.
        page.tokens.expire(now_ms)
        if event.is_expired:
            page.drop_stream()
        else:
            why = "sign_in" if event.code == ErrorCode.AUTH_REQUIRED else "token"
            page.refusal = refusal_text(page.node_label(url), why, detail=event.message)
            page.lose_node(now_ms, overloaded=False, kind=Failure.REFUSED)
        return {"type": "access_refused", "code": event.code, "message": event.message}
    if isinstance(event, Detections):
        server_ms = event.decode_ms + event.queue_ms + event.inference_ms + event.post_ms
        page.router.record_result(
            url,
            event.round_trip_ms,
            now_ms,
            server_ms=server_ms,
            inference_ms=event.inference_ms + event.post_ms,
        )
        return _drawn(page, page.node_label(url), event, now_ms)
    if isinstance(event, Welcomed):
        page.quic.transport.learn(url, event.welcome.wt_port, event.welcome.wt_cert_sha256)
        return {"type": "welcome", "encodings": event.welcome.encodings}
    if isinstance(event, NodeError):
        if event.code == ErrorCode.OVERLOADED:
            page.refusal = refusal_text(page.node_label(url), "overloaded")
            page.lose_node(now_ms, overloaded=True)
            return {"type": "refused", "message": event.message}
        return {"type": "error", "code": event.code, "message": event.message}
    if isinstance(event, FrameDropped):
        page.dashboard.dropped_frame()
        return {"type": "dropped", "frame_id": event.frame_id, "reason": event.reason}
    if isinstance(event, PongReceived):
        page.router.record_rtt(url, event.round_trip_ms, now_ms)
        return None
    raise AssertionError(f"unhandled event {event!r}")


def _on_joining_message(
    page: NodePage, url: str, raw: Buffer, now_ms: float
) -> list[dict[str, Any]]:
    """A message from the node the page is moving to; its HELLO makes it current."""
    outcome = page.handover.on_joining_data(as_bytes(raw), now_ms)
    if isinstance(outcome, Failed):
        page.router.record_failure(url, now_ms, overloaded=outcome.is_overloaded)
        return [{"type": "leave", "url": url}]
    if isinstance(outcome, Waiting):
        return [{"type": "send", "url": url}] if outcome.has_outgoing else []
    # Joined: the new node becomes current; the old one answers what it holds, then goes.
    joining = outcome.joining
    out: list[dict[str, Any]] = [{"type": "promote", "url": url}]
    if joining.outbox:
        out.append({"type": "send", "url": url})
    old_url, old_stream = page.node_url, page.stream
    page.link.adopt(url, joining.stream, joining.outbox, joining.transport)
    is_kept = old_stream is None or old_url is None or page.handover.drain(old_url, old_stream)
    if not is_kept:
        out.append({"type": "leave", "url": old_url})
    converted = [_to_page(page, url, event, now_ms) for event in outcome.events]
    out.extend(item for item in converted if item is not None)
    return out


def _on_draining_message(
    page: NodePage, url: str, raw: Buffer, now_ms: float
) -> list[dict[str, Any]]:
    """A message from a node the page moved away from: its last results still count."""
    out: list[dict[str, Any]] = []
    # named by its own HELLO: its key may be a retired WebSocket's (url + "#websocket")
    hello = page.handover.draining[url].hello
    server = hello.node_name if hello is not None else page.node_label(url)

    def drawn(event: Detections) -> None:
        shown = _drawn(page, server, event, now_ms)
        if shown is not None:
            out.append(shown)

    if page.handover.on_draining_data(url, as_bytes(raw), now_ms, drawn):
        out.append({"type": "leave", "url": url})
    return out


def _drawn(page: NodePage, server: str, event: Detections, now_ms: float) -> dict[str, Any] | None:
    """A result from ``server`` (its name), on the current link or one the page left: the
    dashboard's times and what the overlay draws (None: an older frame than the one drawn)."""
    page.dashboard.node_result(
        now_ms,
        event.round_trip_ms,
        event.queue_ms,
        event.inference_ms,
        event.post_ms,
        decode_ms=event.decode_ms,
    )
    return page.overlay.detections(
        "node",
        event.frame_id,
        event.boxes,
        event.capture_ms,
        server=server,
        round_trip_ms=event.round_trip_ms,
        queue_ms=event.queue_ms,
        inference_ms=event.inference_ms,
        post_ms=event.post_ms,
        batch_size=event.batch_size,
        decode_ms=event.decode_ms,
        encoding=event.encoding,
        frame_bytes=event.size_bytes,
    )
