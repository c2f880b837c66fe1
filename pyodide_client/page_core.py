"""The page core: one page's state and the decisions about it, sans-I/O.

``PageCore`` takes what the page reports as typed events (``page_events.py``): ``dispatch``
answers each with the commands it calls for (connect, join or leave a node, drop one,
probe a candidate, ping; or what a node's message means: ready, detections, refused, ...),
and ``handle_event`` also runs the routing decision again at once after the events that
may have changed the page's node (a socket closed, a node list, a token, a probe done, a
refusal), with the time it next wants the timer (``next_tick_ms``): no fixed-rate
polling. Frames go through ``next_action`` (the node, the local engine, or nowhere),
``plan_frame`` and ``encode_frame`` / ``encode_image`` / ``local_encode``.
JavaScript never calls this directly: its three calls go to the JSON edge
(``browser.BrowserClient``, ``page_edge.py``), which speaks in sockets by id and blobs.

Modes: ``node`` while a node connection is ready; ``local`` (onnxruntime-web in a worker)
while none is and the local engine is ready; ``none`` otherwise. Which node, and when to
move, is ``routing.Router``'s decision: a node that closes, refuses or stalls (no result
within a deadline derived from recent round trips) is replaced by the next best at once,
the next frame runs locally meanwhile, and a recovered node is found again by probing.

This module glues the jobs together; each job has its module: the current node link
(``node_link.py``) and what its messages mean (``node_events.py``), planned moves
(``handover.py``), probes (``probes.py``), frame planning and encoding (``frames.py``),
the in-browser engine (``local_path.py``, its steps ``local_steps.py``), which results
are drawn (``overlay.py``), stream tokens (``token_refresh.py``), the node list
(``node_intake.py``) and what the page shows (``page_status.py``, worded by ``view.py``).

Runs unchanged under CPython in tests: JS buffers are accepted through ``to_bytes()``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from typing import Any

from .dashboard import Dashboard
from .encoding import EncodingSettings
from .frames import Frames
from .handover import Handover
from .local import LocalEngine
from .local_path import LocalPath
from .local_steps import LocalSteps
from .model_card import ModelCard
from .node_events import on_node_message
from .node_intake import NodeIntake
from .node_link import (
    STALL_FACTOR,
    STALL_MAX_MS,
    STALL_MIN_MS,
    NodeLink,
    stall_deadline_ms,
)
from .overlay import BOXES_EXPIRE_MS, Overlay
from .page_config import PageConfig
from .page_events import (
    Buffer,
    FrameGrabbed,
    NodeList,
    PageEvent,
    ProbeFailed,
    ProbeMessage,
    Reply,
    SocketClosed,
    SocketMessage,
    SocketOpened,
    TimerFired,
    TokenFetched,
    WorkerResult,
    as_bytes,
)
from .page_source import PageSource
from .page_status import api_state_json, report_json, stats_json, status_json, view_json
from .probes import Probes
from .protocol import CLOSE_TRY_AGAIN_LATER
from .quic_moves import QuicMoves
from .routing import Connect, Failure, Fallback, Router, Switch
from .stream import (
    NodeStream,
    StreamError,
)
from .token_refresh import TokenKeeper, apply_token_response
from .transport import QUIC, WEBSOCKET
from .view import refusal_text

__all__ = [
    "BOXES_EXPIRE_MS",
    "MAX_TICK_GAP_MS",
    "STALL_FACTOR",
    "STALL_MAX_MS",
    "STALL_MIN_MS",
    "PageCore",
    "stall_deadline_ms",
]

# In Pyodide, stderr (where an unconfigured logger's warnings go) is the console's warning.
log = logging.getLogger(__name__)

MAX_TICK_GAP_MS = 1000.0  # tick at least this often (next_tick_ms)


_LINK_CHANGES = ("connect", "switch", "join", "abandon")


# A node's events after which the page's node has changed: routing decides again at once.
_NODE_CHANGED = frozenset({"ready", "promote", "leave", "fatal", "refused", "access_refused"})


def _decides_again(event: PageEvent, commands: list[dict[str, Any]]) -> bool:
    """Whether routing (``tick``) runs again at once after ``event``, which called for
    ``commands``: after a socket closed, a node list, a token answer, a probe done (failed,
    or answered: ``probe_close``), and a node message that changed the page's node."""
    if isinstance(event, SocketClosed | NodeList | TokenFetched | ProbeFailed):
        return True
    if isinstance(event, ProbeMessage):
        return bool(commands) and commands[0].get("do") == "probe_close"
    return any(command.get("type") in _NODE_CHANGED for command in commands)


class PageCore:
    """One page's detection logic: node choice and connection, local fallback, what to
    draw, and the numbers shown in the status line and stats panel."""

    def __init__(self, config_json: str, model_card_json: str) -> None:
        # The web app's settings for this page, typed and checked once (page_config.py).
        self.config = config = PageConfig.parse(json.loads(config_json))
        # Where the page runs (the JS adds "page": location and isSecureContext): an https
        # page cannot open ws:// nodes, an insecure one has no camera (page_origin.py).
        self.origin = config.page
        # The configured and the registered nodes this origin may open (node_intake.py).
        self.nodes = NodeIntake(self.origin, config.node_urls)
        self.max_in_flight = config.max_in_flight
        self.card = ModelCard.from_json(model_card_json)
        self.local_path = LocalPath(self.card, config)
        # The in-browser engine's steps, as the page reports them (local_steps.py).
        self.local_steps = LocalSteps(self)
        self.router = Router()
        self.dashboard = Dashboard()
        self.frames = Frames(config, self.dashboard)
        self.overlay = Overlay()
        self.link = NodeLink()
        self.route_note = ""  # why the page is where it is, in words
        self._is_started = False
        self.probes = Probes(self.card.sha256)  # short-lived sockets measuring candidates
        # What the page shows must be true (issue 18): whether frames come at all, and the
        # last refusal by a node (who and why), until a node accepts the page.
        self.source = PageSource(self.origin.is_secure_context)
        self.is_kiosk = config.kiosk
        self.refusal = ""
        # Stream tokens (issue 8): fetched from the web app's token_url, presented in AUTH
        # and refreshed while streaming; none without a token_url (anonymous streams).
        self.tokens = TokenKeeper(config.token_url)
        # Planned moves are make-before-break (issue 10): the page keeps streaming to its
        # node while the one it moves to connects, and lets the old one answer the frames
        # it holds before leaving it.
        self.handover = Handover()
        # WebTransport (issue 16): the transport each link takes, measured per link, a
        # live link's move to QUIC, and the way back to the WebSocket (quic_moves.py).
        self.quic = QuicMoves(self, config.transport)

    # -- what other modules hold, under the names node_events.py, page_status.py and the
    # project's Playwright tests read (window.edgesight.client) ----------------------------
    @property
    def stream(self) -> NodeStream | None:
        return self.link.stream

    @property
    def node_url(self) -> str | None:
        return self.link.url

    @property
    def node_name(self) -> str | None:
        return self.link.name

    @property
    def local(self) -> LocalEngine:
        return self.local_path.engine

    @property
    def encoding(self) -> EncodingSettings:
        return self.frames.settings

    # -- the event-driven core (page_events.py) ---------------------------------------------
    def handle_event(self, event: PageEvent, now_ms: float) -> Reply:
        """One event from the page -> the commands it calls for, in order, and when the page
        should next send ``TimerFired``. The events after which the situation may have
        changed (``_decides_again``: a socket closed, a node list, a token, a probe done, the
        page's node changed) also run the routing decision (the timer's) at once."""
        commands = self.dispatch(event, now_ms)
        if _decides_again(event, commands):
            commands.extend(self._on_timer(now_ms))
        return Reply(tuple(commands), self.next_tick_ms(now_ms))

    def dispatch(self, event: PageEvent, now_ms: float) -> list[dict[str, Any]]:
        """The one place each event goes in: the commands it calls for, without the
        routing decision ``handle_event`` adds after some."""
        match event:
            case SocketOpened():
                return []  # the node speaks first: its HELLO (or a refusal) comes next
            case SocketClosed(url, code):
                return self._on_socket_closed(url, code, now_ms)
            case SocketMessage(url, data):
                return on_node_message(self, url, data, now_ms)
            case ProbeMessage(url, data):
                return self._on_probe_message(url, data, now_ms)
            case ProbeFailed(url):
                self.probes.on_failed(self.router, url, now_ms)
                self._note_unreachable(url)
                return []
            case FrameGrabbed():
                return [{"do": "frame", "to": self.next_action(now_ms)}]
            case WorkerResult():
                return self._on_worker_result(event, now_ms)
            case TimerFired():
                return self._on_timer(now_ms)
            case TokenFetched(status, body):
                events = apply_token_response(
                    self.tokens, self._streams_with_ids(), status, body, now_ms
                )
                return self.link.with_send(events)
            case NodeList(nodes_json):
                return self._on_node_list(nodes_json, now_ms)
        raise AssertionError(f"unhandled page event {event!r}")

    # -- node choice -------------------------------------------------------------------------
    def _on_node_list(self, nodes_json: str, now_ms: float) -> list[dict[str, Any]]:
        registry = self.nodes.take_listing(nodes_json)
        self.tokens.want(list(self.nodes.node_ids.values()))  # their tokens before a failover
        for info in registry:
            # an entry that knows the node's offer (a registered node announced it); a
            # configured URL's entry does not, and leaves what its WELCOME said
            if info.wt_port is not None:
                self.quic.transport.learn(info.url, info.wt_port, info.wt_cert_sha256)
        self.router.update_candidates(self.nodes.candidates(), now_ms)
        return []

    def security_problem(self) -> str:
        """What the page's origin keeps it from doing, in words; '' when nothing does."""
        return self.nodes.security_problem()

    def sha256_hex(self, data: Buffer) -> str:
        """SHA-256 of the downloaded model, for pages where ``crypto.subtle`` is missing
        (any insecure context): the local engine still checks what it runs."""
        return hashlib.sha256(as_bytes(data)).hexdigest()

    def _on_timer(self, now_ms: float) -> list[dict[str, Any]]:
        if not self._is_started:
            self._is_started = True
            self.router.update_candidates(self.nodes.candidates(), now_ms)
        actions: list[dict[str, Any]] = []
        if self.tokens.fetch_due(now_ms) and self.tokens.token_url:
            url = self.tokens.fetch_url()  # before fetching(): which nodes it asks for
            self.tokens.fetching(now_ms)
            actions.append({"do": "fetch_token", "url": url})
        actions.extend(self.quic.fallback_actions(now_ms))
        if self.node_url is not None and self._is_stalled(now_ms):
            actions.append({"do": "abandon", "reason": "stalled"})
            self.lose_node(now_ms, overloaded=False)
        is_pinging = False
        for url in self.router.probes_due(now_ms):
            if url == self.node_url and self.is_node_ready():
                actions.append({"do": "ping"})
                is_pinging = True
            else:  # a candidate, or the node still connecting: its link cannot ping yet
                actions.append({"do": "probe", "url": url})
        if self.stream is not None and self.stream.ping_due(now_ms) and not is_pinging:
            actions.append({"do": "ping"})  # the encoding policy's base round trip
        actions.extend(self._handover_actions(now_ms))  # after probes_due() expired pings
        if self.node_url is not None and self.node_url not in (
            self.router.current,
            self.router.pending,
        ):
            # The router counts this node as failed (a ping or the connection timed out, a
            # probe failed): leave it too, rather than stream to it until a reconnect.
            actions.append({"do": "abandon", "reason": "timed out"})
            self.drop_stream()
        if self.node_url is None and self.router.current is not None:
            # A switch failed before its HELLO. The page left the old node's socket at once
            # (no make-before-break), but the router still counts it as current: go back.
            url = self.router.current
            self.route_note = f"back to {url}: the node switched to did not answer"
            actions.append(self.open_link("connect", url, now_ms))
            return actions
        self.router.local_ready = self.local.is_ready
        decision = self.router.decide(now_ms)
        if isinstance(decision, Connect):
            self.route_note = decision.reason
            actions.append(self.open_link("connect", decision.url, now_ms))
        elif isinstance(decision, Switch) and self.is_node_ready():
            # Make before break: the current link keeps streaming until the new HELLO.
            offer = self.quic.offer(decision.to_url, now_ms)
            transport = WEBSOCKET if offer is None else QUIC
            stream = self.new_stream(decision.to_url, now_ms, transport)
            self.handover.begin(decision.to_url, stream, transport)
            self.route_note = decision.reason
            join: dict[str, Any] = {"do": "join", "url": decision.to_url}
            actions.append(join if offer is None else {**join, **offer.action_fields()})
        elif isinstance(decision, Switch):  # nothing to keep: the current link is not ready
            self.route_note = decision.reason
            actions.append(self.open_link("switch", decision.to_url, now_ms))
        elif isinstance(decision, Fallback):
            self.route_note = decision.reason
            if self.node_url is not None:  # the router left a degraded node: the browser is faster
                actions = [a for a in actions if a["do"] != "ping"]  # no link left to ping on
                actions.append({"do": "abandon", "reason": "the browser is faster"})
                self.drop_stream()
        if not any(a["do"] in _LINK_CHANGES for a in actions):
            actions.extend(self.quic.upgrade_actions(now_ms))
        return actions

    def next_tick_ms(self, now_ms: float) -> float:
        """When the page should call ``tick`` next if nothing else happens: the router's
        next deadline, the current frame's stall deadline, the draining nodes' ones, and
        at least every ``MAX_TICK_GAP_MS`` for what keeps no deadline of its own (token
        refresh, the encoding policy's pings). Events (a message, a close, a probe's
        answer, a node list) call ``tick`` at once as well; there is no fixed 100 ms tick
        any more (issue 10: that polling was the largest part of the failover gap)."""
        times = [self.router.next_due_ms(now_ms), now_ms + MAX_TICK_GAP_MS]
        stall_ms = stall_deadline_ms(self.dashboard.recent_round_trip_p95_ms(now_ms))
        for stream in (self.stream, *self.handover.streams()):
            oldest = stream.oldest_in_flight_ms() if stream is not None else None
            if oldest is not None:
                times.append(oldest + stall_ms + 1.0)  # _is_stalled: strictly later
        times.extend(self.quic.deadlines_ms())
        token_ms = self.tokens.next_fetch_ms()  # a refresh on time, not up to a gap late
        if token_ms is not None:
            times.append(token_ms)
        return max(now_ms, min(times))

    def _streams_with_ids(self) -> list[tuple[NodeStream, str]]:
        """The streams a token answer may be for: the current one and one joining, each
        with its node's registry id ("" for a static node)."""
        streams = []
        if self.stream is not None and self.node_url is not None:
            streams.append((self.stream, self.nodes.node_ids.get(self.node_url, "")))
        joining = self.handover.joining
        if joining is not None:
            streams.append((joining.stream, self.nodes.node_ids.get(joining.url, "")))
        return streams

    def open_link(self, do: str, url: str, now_ms: float) -> dict[str, Any]:
        """Open the page's link to ``url`` (a connect or a switch), over QUIC when the
        browser has WebTransport and the node offers it: the action for the JS."""
        offer = self.quic.offer(url, now_ms)
        transport = WEBSOCKET if offer is None else QUIC
        self.quic.upgrade.give_up()  # an upgrade belongs to the link this one replaces
        self.link.open(url, self.new_stream(url, now_ms, transport), transport, now_ms)
        action: dict[str, Any] = {"do": do, "url": url}
        return action if offer is None else {**action, **offer.action_fields()}

    def new_stream(self, url: str, now_ms: float, transport: str = WEBSOCKET) -> NodeStream:
        # A node serving another model than the page's is refused at its HELLO: its class
        # list and boxes would not mean what the page shows (and the local fallback runs).
        max_in_flight, in_flight = self.frames.in_flight_for(self.max_in_flight)
        encoding = self.frames.settings
        if transport == QUIC and encoding.mode == "auto":
            # Raw frames stay on WebSockets (docs/benchmarks.md (r): a node's QUIC stack
            # costs more per 519 KB frame than its inference): compressed on QUIC, at the
            # default quality but for a lossy link's frame cap (the measured link rate does
            # not hold on QUIC: followed, it paced 50 ms + 1 % to 10 fps; (u4)).
            encoding = replace(encoding, allow_raw=False, follow_rate=False)
        return NodeStream(
            max_in_flight=max_in_flight,
            in_flight=in_flight,  # None: K pinned; else adapted to the link (issue 16)
            expected_sha256=self.card.sha256,
            encoding=encoding,
            can_encode=self.frames.can_encode,
            # a registered node's own token (issue 17); None: AUTH waits for the token
            token=self.tokens.token_for_auth(now_ms, self.nodes.node_ids.get(url, "")),
        )

    def lose_node(
        self, now_ms: float, overloaded: bool, kind: Failure = Failure.UNREACHABLE
    ) -> None:
        if self.node_url is not None:
            self.router.record_failure(self.node_url, now_ms, overloaded=overloaded, kind=kind)
        self.drop_stream()

    def node_label(self, url: str) -> str:
        """The name the page knows a node by: its HELLO's, the registry's, or its URL."""
        stream = self.link.stream
        if url == self.link.url and stream is not None and stream.hello is not None:
            return stream.hello.node_name
        return self.router.label(url)

    def drop_stream(self) -> None:
        self.link.drop()
        self.quic.upgrade.give_up()  # an upgrade belongs to the link

    # -- planned moves: make before break ----------------------------------------------------
    def _handover_actions(self, now_ms: float) -> list[dict[str, str]]:
        """Leave a joining node the router gave up on (no HELLO in time), and old nodes
        whose last frames are answered or overdue (``handover.py``)."""
        stall_ms = stall_deadline_ms(self.dashboard.recent_round_trip_p95_ms(now_ms))
        leave = self.handover.expire(self.router.pending, now_ms, stall_ms)
        return [{"do": "leave", "url": url} for url in leave]

    def _on_socket_closed(self, url: str, code: int, now_ms: float) -> list[dict[str, Any]]:
        if self.quic.on_closed(url, now_ms):  # a QUIC link that never got through
            return []
        left = self.handover.closed(url)
        if left == "joining":  # the move failed; the page stays where it is
            self.router.record_failure(url, now_ms, overloaded=code == CLOSE_TRY_AGAIN_LATER)
            return []
        if left == "draining":
            return []
        if url != self.node_url:
            return []  # a socket the page already left (a switch, a stall)
        overloaded = code == CLOSE_TRY_AGAIN_LATER
        if not self.is_node_ready() and not overloaded:
            self._note_unreachable(url)
        self.lose_node(now_ms, overloaded=overloaded)
        return []

    def _note_unreachable(self, url: str) -> None:
        """A socket to ``url`` failed before any HELLO. While its heartbeats say it runs,
        and the page has no node, say so: a browser hides a handshake's 403, and a refused
        origin is the likeliest cause (issue 18)."""
        if self.is_node_ready() or not self.router.is_heartbeating(url):
            return
        self.refusal = refusal_text(
            self.node_label(url), "origin", origin=self.origin.origin, url=url
        )

    def is_node_ready(self) -> bool:
        return self.link.is_ready

    # -- stream tokens (issue 8) ---------------------------------------------------------------
    def take_outgoing(self, url: str = "") -> bytes:
        """The next message for the node link of ``url`` (default: the current one), b""
        when there is none."""
        outbox = self.handover.outbox(url)
        if outbox is None:
            outbox = self.link.outbox
        return outbox.pop(0) if outbox else b""

    def _is_stalled(self, now_ms: float) -> bool:
        deadline = stall_deadline_ms(self.dashboard.recent_round_trip_p95_ms(now_ms))
        return self.link.is_stalled(now_ms, deadline)

    # -- probes: short-lived sockets to candidates ------------------------------------------
    def _on_probe_message(self, url: str, data: Buffer, now_ms: float) -> list[dict[str, Any]]:
        reply = self.probes.on_message(self.router, url, as_bytes(data), now_ms)
        refused, self.probes.refusal = self.probes.refusal, None
        if refused is not None and not self.is_node_ready():  # say it while it matters
            why, name, model = refused
            self.refusal = refusal_text(
                name or self.node_label(url), why, model=model, page_model=self.card.name
            )
        if reply:
            return [{"do": "probe_send", "url": url, "data": reply}]
        return [{"do": "probe_close", "url": url}]

    # -- which path the next frame takes ----------------------------------------------------
    @property
    def mode(self) -> str:
        if self.is_node_ready():
            return "node"
        if self.local.is_ready:
            return "local"
        return "none"

    def next_action(self, now_ms: float | None = None) -> str:
        """'node' or 'local' if the next camera frame should go there now, else 'wait'.
        With ``now_ms``, a link at its lowest quality also paces frames (issue 9)."""
        mode = self.mode
        if mode == "node":
            assert self.stream is not None
            if self.frames.is_paced(self.stream, now_ms):
                return "wait"
            if self.stream.can_send():
                return "node"
            if now_ms is not None:  # a frame waits for a slot
                self.stream.note_waiting(now_ms)
            return "wait"
        if mode == "local" and self.local.can_run():
            return "local"
        return "wait"

    # -- node frames (compressed ones: issue 9; Python decides, the browser's encoder does
    # the pixels)
    def _link_stream(self) -> NodeStream:
        if self.stream is None:
            raise StreamError("no node connection: wait for next_action() to say 'node'")
        return self.stream

    def encode_frame(
        self, rgba: Buffer, width_px: int, height_px: int, capture_ms: float, now_ms: float
    ) -> bytes:
        stream = self._link_stream()
        message = stream.encode_frame(as_bytes(rgba), width_px, height_px, capture_ms, now_ms)
        self.frames.sent(stream, message, "raw", capture_ms, now_ms, self.link.outbox)
        return message

    def set_encoders(self, names: str) -> None:
        """What this browser's canvas can encode: a comma-separated list of 'jpeg' and
        'webp'. Streams opened from now on offer them to their nodes."""
        self.frames.set_encoders(names)

    def plan_frame(self, width_px: int, height_px: int, now_ms: float) -> str:
        """How the next frame goes, as JSON ``{"encoding": "raw" | "jpeg" | "webp",
        "quality", "width", "height"}``. For raw, call ``encode_frame`` with its pixels;
        otherwise draw the frame at width x height, encode it at quality (0..1) and call
        ``encode_image`` with the bytes."""
        return self.frames.plan(self._link_stream(), width_px, height_px, now_ms)

    def encode_image(
        self, data: Buffer, width_px: int, height_px: int, capture_ms: float, now_ms: float
    ) -> bytes:
        """The IMAGE message for a picture encoded as ``plan_frame`` said; ``width_px`` and
        ``height_px`` are the camera frame's size."""
        stream = self._link_stream()
        message = stream.encode_image(as_bytes(data), width_px, height_px, capture_ms, now_ms)
        encoding = stream.encoding.encoding.name.lower()
        self.frames.sent(stream, message, encoding, capture_ms, now_ms, self.link.outbox)
        return message

    def frame_sent(self, now_ms: float) -> None:
        """The page handed the last node frame to its socket at ``now_ms``: round trips
        count from then, not from before the page's own preprocessing."""
        if self.stream is not None:
            self.stream.mark_sent(now_ms)

    def take_trace_report(self, time_origin_ms: float) -> str:
        """A drawn sampled frame's report for the config's ``trace.url`` (JSON), or ""."""
        traces = self.frames.traces
        return traces.take_report(time_origin_ms) if traces is not None else ""

    def ping(self, now_ms: float) -> bytes:
        if self.stream is None:
            raise StreamError("no node connection to ping")
        return self.stream.ping(now_ms)

    # -- local frames: the in-browser engine's steps (local_steps.py) ----------------------
    def _on_worker_result(self, output: WorkerResult, now_ms: float) -> list[dict[str, Any]]:
        frame_id = output.frame_id
        result = self.local_path.on_output(
            frame_id, as_bytes(output.boxes), as_bytes(output.scores), output.inference_ms, now_ms
        )
        if result is None:
            return []
        self.dashboard.local_result(now_ms, result.inference_ms)
        self.router.record_local(result.round_trip_ms, now_ms)
        event = self.overlay.detections(
            "local",
            frame_id,
            result.boxes,
            result.capture_ms,
            round_trip_ms=result.round_trip_ms,
            queue_ms=0.0,
            inference_ms=result.inference_ms,
            post_ms=0.0,
            batch_size=1,
        )
        return [event] if event else []

    # -- what the page shows (page_status.py) --------------------------------------------------
    def note_preprocess(self, duration_ms: float, now_ms: float) -> None:
        self.dashboard.preprocessed(now_ms, duration_ms)
        if self.frames.traces is not None:
            self.frames.traces.preprocessed(duration_ms, now_ms)

    def note_drawn(self, capture_ms: float, draw_ms: float, now_ms: float) -> None:
        self.dashboard.drawn_frame(now_ms, capture_ms, draw_ms)
        if self.frames.traces is not None:
            self.frames.traces.drawn(capture_ms, draw_ms, now_ms, self.node_url)

    def source_update(self, event: str, kind: str, error_name: str = "") -> None:
        """What the frame source did: ``event`` "starting" | "live" | "failed" | "ended",
        ``kind`` "camera" | "file" | "url", ``error_name`` the browser error's name."""
        self.source.update(event, kind, error_name)

    def source_changed(self, now_ms: float) -> None:
        """The page switched camera/file: results for frames of the old source, still on
        their way, are never drawn over the new one."""
        self.overlay.source_changed(now_ms)

    def view(self, now_ms: float) -> str:
        """Everything the page shows in words, as JSON (``page_status.view_json``)."""
        return view_json(self, now_ms)

    def api_state(self, now_ms: float) -> str:
        """The public page API's state snapshot, as JSON (docs/page-api.md)."""
        return api_state_json(self, now_ms)

    def status(self, now_ms: float) -> str:
        """The raw facts behind ``view`` (tests and benchmarks read them)."""
        return status_json(self, now_ms)

    def report(self, now_ms: float) -> str:
        """The summary the page POSTs to the web app's report_url (JSON)."""
        return report_json(self, now_ms)

    def stats(self, now_ms: float) -> str:
        """p50/p95 per stage over the last seconds, for the stats panel."""
        return stats_json(self, now_ms)
