"""The page's Python side: what JavaScript calls inside Pyodide.

JavaScript only moves bytes and pixels. It asks ``tick`` what to do (connect, join or leave a
node, drop one, probe a candidate) when ``next_tick_ms`` says and whenever something happens
(a socket closes, a probe answers, a node list or token arrives) — no fixed-rate polling;
for each camera frame it asks ``next_action``
whether the frame goes to the node, to the local engine, or nowhere; it hands over pixels,
sends or posts the bytes it gets back, feeds in what nodes, probes and the local worker
return, and draws what it is told to draw. Every value crossing to JavaScript is ``bytes``
or a JSON string, so no Python object leaks into the page.

Modes: ``node`` while a node connection is ready; ``local`` (onnxruntime-web in a worker)
while none is and the local engine is ready; ``none`` otherwise. Which node, and when to
move, is ``routing.Router``'s decision: a node that closes, refuses or stalls (no result
within a deadline derived from recent round trips) is replaced by the next best at once,
the next frame runs locally meanwhile, and a recovered node is found again by probing.

Runs unchanged under CPython in tests: JS buffers are accepted through ``to_bytes()``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import asdict
from typing import Any, Protocol

from .dashboard import Dashboard
from .encoding import EncodingSettings
from .handover import Failed, Handover, Waiting
from .local import LocalEngine, LocalError
from .model_card import ModelCard
from .page_origin import PageOrigin
from .postprocess import FrameBox, PostprocessSettings
from .probes import Probes
from .protocol import (
    CLOSE_TRY_AGAIN_LATER,
    Error,
    ErrorCode,
    FrameEncoding,
    ProtocolError,
    parse,
)
from .routing import Connect, Fallback, NodeInfo, Router, Switch, usable_nodes
from .stream import (
    AccessRefused,
    Detections,
    Event,
    FrameDropped,
    NodeError,
    NodeStream,
    PongReceived,
    Ready,
    StreamError,
    StreamState,
    Welcomed,
)
from .token_refresh import TokenKeeper
from .tracing import PageTraces
from .view import Snapshot, badge, details, in_view, status_line, timing_rows

__all__ = ["BrowserClient", "stall_deadline_ms"]

# In Pyodide, stderr (where an unconfigured logger's warnings go) is the console's warning.
log = logging.getLogger(__name__)
_FRAME_ID = struct.Struct("<I")  # right after the header in FRAME and IMAGE

STALL_MIN_MS = 750.0
STALL_MAX_MS = 3000.0
STALL_FACTOR = 4.0
MAX_TICK_GAP_MS = 1000.0  # tick at least this often (next_tick_ms)
BOXES_EXPIRE_MS = 1000.0  # boxes not replaced by a newer result within this are cleared


class _JsBuffer(Protocol):
    def to_bytes(self) -> bytes: ...


Buffer = bytes | bytearray | memoryview | _JsBuffer


def _as_bytes(data: Buffer) -> bytes | bytearray | memoryview:
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    return data.to_bytes()  # a Pyodide JsBuffer (Uint8Array, ...): one copy


def stall_deadline_ms(recent_round_trip_p95_ms: float | None) -> float:
    """How long a frame may wait for its result before the node counts as stalled."""
    if recent_round_trip_p95_ms is None or recent_round_trip_p95_ms <= 0:
        return STALL_MAX_MS
    return min(STALL_MAX_MS, max(STALL_MIN_MS, STALL_FACTOR * recent_round_trip_p95_ms))


def _overload_refusal(data: bytes | bytearray | memoryview) -> str | None:
    """The message of an ERROR OVERLOADED, else None."""
    try:
        message = parse(data)
    except ProtocolError:
        return None
    if isinstance(message, Error) and message.code is ErrorCode.OVERLOADED:
        return message.message
    return None


def _postprocess_settings(given: object) -> PostprocessSettings:
    """The page config's ``postprocess`` object; missing keys keep their defaults."""
    if given is None:
        return PostprocessSettings()
    if not isinstance(given, dict):
        raise ValueError(f"config postprocess: expected an object, got {given!r}")
    known = {"score_threshold", "iou_threshold", "max_detections", "multi_label"}
    return PostprocessSettings(**{key: value for key, value in given.items() if key in known})


def _boxes(boxes: tuple[FrameBox, ...]) -> list[dict[str, Any]]:
    return [asdict(box) for box in boxes]


class BrowserClient:
    """One page's detection logic: node choice and connection, local fallback, what to
    draw, and the numbers shown in the status line and stats panel."""

    def __init__(self, config_json: str, model_card_json: str) -> None:
        config = json.loads(config_json)
        # Where the page runs (the JS adds "page": location and isSecureContext): an https
        # page cannot open ws:// nodes, an insecure one has no camera (page_origin.py).
        self.origin = PageOrigin.from_mapping(config.get("page"))
        static, problems = usable_nodes(config.get("node_urls", []))
        static, self._static_refusals = self._reachable(static)
        self._registry_refusals: list[str] = []  # why listed nodes cannot be used here
        self.static_urls: list[str] = [info.url for info in static]
        self._warned: set[str] = set()  # each skipped entry is reported once, not every 2 s
        self._warn(problems)
        self.max_in_flight = int(config.get("max_in_flight", 2))
        self.local_threads = int(config.get("local_threads", 0))  # 0: decide from the page
        # How frames travel (issue 9): EDGESIGHT_FRAME_ENCODING, decided per link by
        # encoding.EncodingPolicy; what this browser can encode is set_encoders()'s to say.
        self.encoding = EncodingSettings(
            mode=str(config.get("frame_encoding", "auto")),
            target_fps=float(config.get("target_fps", 30.0)),
        )
        self.can_encode: tuple[FrameEncoding, ...] = (FrameEncoding.JPEG,)
        self._last_frame_sent_ms = float("-inf")
        self.card = ModelCard.from_json(model_card_json)
        # An INT8 variant the web app offers for local detection: (its sha256, the sha256 of
        # the model it was quantised from); webapp/model_files.py decides.
        local = config.get("model", {}).get("local") or {}
        self.local_variant: tuple[str, str] | None = (
            (str(local["sha256"]), str(local["variant_of"])) if local.get("variant_of") else None
        )
        # The operator's thresholds (EDGESIGHT_SCORE_THRESHOLD, ...), so that the boxes
        # drawn do not depend on where detection runs.
        self.local = LocalEngine(self.card, _postprocess_settings(config.get("postprocess")))
        self.router = Router()
        self.dashboard = Dashboard()
        self.traces = PageTraces.from_config(config.get("trace"))  # issue 12; None: off
        self.stream: NodeStream | None = None
        self.node_url: str | None = None
        self.node_name: str | None = None
        self.node_model: str | None = None  # the model name the current node announced
        self.route_note = ""  # why the page is where it is, in words
        self._registry: list[NodeInfo] = []
        self._is_started = False
        self._newest_drawn_capture_ms = float("-inf")
        self._source_since_ms = float("-inf")  # frames grabbed before it are another source's
        self._local_tensor = bytearray()
        self.probes = Probes()  # short-lived sockets measuring candidates
        # Stream tokens (issue 8): fetched from the web app's token_url, presented in AUTH
        # and refreshed while streaming; none without a token_url (anonymous streams).
        self.tokens = TokenKeeper(config.get("token_url"))
        self._outbox: list[bytes] = []  # AUTH messages for the current link
        # Planned moves are make-before-break (issue 10): the page keeps streaming to its
        # node while the one it moves to connects, and lets the old one answer the frames
        # it holds before leaving it.
        self.handover = Handover()

    # -- node choice -------------------------------------------------------------------------
    def update_nodes(self, nodes_json: str, now_ms: float) -> None:
        """The registry's list (``GET /api/nodes``); static URLs always stay candidates."""
        entries = json.loads(nodes_json)
        nodes = entries.get("nodes", entries) if isinstance(entries, dict) else entries
        if not isinstance(nodes, list):
            raise ValueError(f"expected a list of nodes, got {type(nodes).__name__}")
        registry, problems = usable_nodes(nodes)
        self._registry, self._registry_refusals = self._reachable(registry)
        self._warn(problems)
        self._update_candidates(now_ms)

    def _reachable(self, nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[str]]:
        """The nodes this page's origin may open, and why each other one is not used."""
        usable: list[NodeInfo] = []
        refusals: list[str] = []
        for info in nodes:
            problem = self.origin.node_url_problem(info.url)
            if problem is None:
                usable.append(info)
            else:
                refusals.append(problem)
        return usable, refusals

    def security_problem(self) -> str:
        """What the page's origin keeps it from doing, in words; '' when nothing does."""
        insecure = self.origin.insecure_context_problem()
        refusals = list(dict.fromkeys([*self._static_refusals, *self._registry_refusals]))
        shown = refusals[:3]  # a few say it all; a list of a thousand would not
        if len(refusals) > len(shown):
            shown.append(f"({len(refusals) - len(shown)} more ws:// nodes not used.)")
        return " ".join([*([insecure] if insecure else []), *shown])

    def sha256_hex(self, data: Buffer) -> str:
        """SHA-256 of the downloaded model, for pages where ``crypto.subtle`` is missing
        (any insecure context): the local engine still checks what it runs."""
        return hashlib.sha256(_as_bytes(data)).hexdigest()

    def _warn(self, problems: list[str]) -> None:
        for problem in problems:
            if problem not in self._warned and len(self._warned) < 1000:
                self._warned.add(problem)
                log.warning("%s", problem)

    def _update_candidates(self, now_ms: float) -> None:
        listed = {info.url for info in self._registry}
        extra = [url for url in self.static_urls if url not in listed]
        self.router.update_candidates([*self._registry, *extra], now_ms)

    def tick(self, now_ms: float) -> str:
        """What the page should do now, as a JSON list of actions:
        ``{"do": "connect" | "switch", "url"}``, ``{"do": "abandon", "reason"}``,
        ``{"do": "probe", "url"}`` (open a probe socket), ``{"do": "ping"}`` (on the
        current link), ``{"do": "fetch_token", "url"}`` (POST there, hand the answer to
        ``on_token``)."""
        if not self._is_started:
            self._is_started = True
            self._update_candidates(now_ms)
        actions: list[dict[str, str]] = []
        if self.tokens.fetch_due(now_ms) and self.tokens.token_url:
            self.tokens.fetching(now_ms)
            actions.append({"do": "fetch_token", "url": self.tokens.token_url})
        if self.node_url is not None and self._is_stalled(now_ms):
            actions.append({"do": "abandon", "reason": "stalled"})
            self._lose_node(now_ms, overloaded=False)
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
            self._drop_stream()
        if self.node_url is None and self.router.current is not None:
            # A switch failed before its HELLO. The page left the old node's socket at once
            # (no make-before-break), but the router still counts it as current: go back.
            url = self.router.current
            self._open_stream(url, now_ms)
            self.route_note = f"back to {url}: the node switched to did not answer"
            actions.append({"do": "connect", "url": url})
            return json.dumps(actions)
        decision = self.router.decide(now_ms)
        if isinstance(decision, Connect):
            self._open_stream(decision.url, now_ms)
            self.route_note = decision.reason
            actions.append({"do": "connect", "url": decision.url})
        elif isinstance(decision, Switch) and self.is_node_ready():
            # Make before break: the current link keeps streaming until the new HELLO.
            self.handover.begin(decision.to_url, self._new_stream(now_ms))
            self.route_note = decision.reason
            actions.append({"do": "join", "url": decision.to_url})
        elif isinstance(decision, Switch):  # nothing to keep: the current link is not ready
            self._open_stream(decision.to_url, now_ms)
            self.route_note = decision.reason
            actions.append({"do": "switch", "url": decision.to_url})
        elif isinstance(decision, Fallback):
            self.route_note = decision.reason
        return json.dumps(actions)

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
        return max(now_ms, min(times))

    def _open_stream(self, url: str, now_ms: float) -> None:
        if self.stream is not None:
            self.stream.connection_lost()
        self.node_url = url
        self.node_name = self.node_model = None
        self._outbox.clear()
        self.stream = self._new_stream(now_ms)

    def _new_stream(self, now_ms: float) -> NodeStream:
        # A node serving another model than the page's is refused at its HELLO: its class
        # list and boxes would not mean what the page shows (and the local fallback runs).
        return NodeStream(
            max_in_flight=self.max_in_flight,
            expected_sha256=self.card.sha256,
            encoding=self.encoding,
            can_encode=self.can_encode,
            token=self.tokens.token_for_auth(now_ms),  # None: AUTH waits for the token
        )

    def _lose_node(self, now_ms: float, overloaded: bool) -> None:
        if self.node_url is not None:
            self.router.record_failure(self.node_url, now_ms, overloaded=overloaded)
        self._drop_stream()

    def _drop_stream(self) -> None:
        if self.stream is not None:
            self.stream.connection_lost()
        self._outbox.clear()
        self.stream = None
        self.node_url = None
        self.node_name = self.node_model = None

    # -- planned moves: make before break ----------------------------------------------------
    def _handover_actions(self, now_ms: float) -> list[dict[str, str]]:
        """Leave a joining node the router gave up on (no HELLO in time), and old nodes
        whose last frames are answered or overdue (``handover.py``)."""
        stall_ms = stall_deadline_ms(self.dashboard.recent_round_trip_p95_ms(now_ms))
        leave = self.handover.expire(self.router.pending, now_ms, stall_ms)
        return [{"do": "leave", "url": url} for url in leave]

    def _on_joining_message(self, url: str, raw: Buffer, now_ms: float) -> str:
        """A message from the node the page is moving to; its HELLO makes it current."""
        outcome = self.handover.on_joining_data(_as_bytes(raw), now_ms)
        if isinstance(outcome, Failed):
            self.router.record_failure(url, now_ms, overloaded=outcome.is_overloaded)
            return json.dumps([{"type": "leave", "url": url}])
        if isinstance(outcome, Waiting):
            return json.dumps([{"type": "send", "url": url}] if outcome.has_outgoing else [])
        # Joined: the new node becomes current; the old one answers what it holds, then goes.
        joining = outcome.joining
        out: list[dict[str, Any]] = [{"type": "promote", "url": url}]
        if joining.outbox:
            out.append({"type": "send", "url": url})
        old_url, old_stream = self.node_url, self.stream
        self.stream, self.node_url, self._outbox = joining.stream, url, joining.outbox
        is_kept = old_stream is None or old_url is None or self.handover.drain(old_url, old_stream)
        if not is_kept:
            out.append({"type": "leave", "url": old_url})
        converted = [self._to_js(url, event, now_ms) for event in outcome.events]
        out.extend(item for item in converted if item is not None)
        return json.dumps(out)

    def _on_draining_message(self, url: str, raw: Buffer, now_ms: float) -> str:
        """A message from a node the page moved away from: its last results still count."""
        out: list[dict[str, Any]] = []

        def drawn(event: Detections) -> None:
            self.dashboard.node_result(
                now_ms, event.round_trip_ms, event.queue_ms, event.inference_ms, event.post_ms
            )
            shown = self._detections(
                "node",
                event.frame_id,
                event.boxes,
                event.capture_ms,
                round_trip_ms=event.round_trip_ms,
                queue_ms=event.queue_ms,
                inference_ms=event.inference_ms,
                post_ms=event.post_ms,
                batch_size=event.batch_size,
            )
            if shown is not None:
                out.append(shown)

        if self.handover.on_draining_data(url, _as_bytes(raw), now_ms, drawn):
            out.append({"type": "leave", "url": url})
        return json.dumps(out)

    def on_close(self, url: str, code: int, now_ms: float) -> None:
        """The page's node socket for ``url`` closed or failed to open."""
        left = self.handover.closed(url)
        if left == "joining":  # the move failed; the page stays where it is
            self.router.record_failure(url, now_ms, overloaded=code == CLOSE_TRY_AGAIN_LATER)
            return
        if left == "draining":
            return
        if url != self.node_url:
            return  # a socket the page already left (a switch, a stall)
        overloaded = code == CLOSE_TRY_AGAIN_LATER
        self._lose_node(now_ms, overloaded=overloaded)

    def is_node_ready(self) -> bool:
        return self.stream is not None and self.stream.state is StreamState.READY

    # -- stream tokens (issue 8) ---------------------------------------------------------------
    def on_token(self, status: int, body: str, now_ms: float) -> str:
        """The answer to a ``fetch_token`` action (status 0: the request failed); returns
        a JSON list of events like ``on_message``."""
        events: list[dict[str, Any]] = []
        if self.tokens.on_response(status, body, now_ms):
            if self.stream is not None:
                self.stream.set_token(self.tokens.token)  # a refresh while streaming, too
        else:
            problem = self.tokens.problem
            if self.stream is not None and self.stream.state is StreamState.AUTHENTICATING:
                fallback = self.tokens.token_for_auth(now_ms)
                if fallback is not None:  # no token to be had: try without one
                    self.stream.set_token(fallback)
            if problem is not None:
                events.append(
                    {
                        "type": "token_problem",
                        "message": problem.message,
                        "needs_sign_in": problem.needs_sign_in,
                    }
                )
        return json.dumps(self._with_send(events))

    def _with_send(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Adds {"type": "send"} when the stream has messages for the link (AUTH): the page
        then sends what ``take_outgoing`` returns until it returns b""."""
        if self.stream is not None:
            self._outbox.extend(self.stream.data_to_send())
        return [*events, {"type": "send"}] if self._outbox else events

    def take_outgoing(self, url: str = "") -> bytes:
        """The next message for the node link of ``url`` (default: the current one), b""
        when there is none."""
        outbox = self.handover.outbox(url)
        if outbox is None:
            outbox = self._outbox
        return outbox.pop(0) if outbox else b""

    def _is_stalled(self, now_ms: float) -> bool:
        if self.stream is None or not self.is_node_ready():
            return False
        oldest = self.stream.oldest_in_flight_ms()
        if oldest is None:
            return False
        deadline = stall_deadline_ms(self.dashboard.recent_round_trip_p95_ms(now_ms))
        return now_ms - oldest > deadline

    # -- probes: short-lived sockets to candidates ------------------------------------------
    def on_probe_message(self, url: str, data: Buffer, now_ms: float) -> bytes:
        """A message on a probe socket (``probes.py``): after the HELLO, the PING to send;
        after the PONG, b"" (close the probe)."""
        return self.probes.on_message(self.router, url, _as_bytes(data), now_ms)

    def on_probe_failed(self, url: str, now_ms: float) -> None:
        """The probe socket failed or closed before its PONG."""
        self.probes.on_failed(self.router, url, now_ms)

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
            pace_ms = self.stream.encoding.min_interval_ms
            if now_ms is not None and now_ms - self._last_frame_sent_ms < pace_ms:
                return "wait"
            return "node" if self.stream.can_send() else "wait"
        if mode == "local" and self.local.can_run():
            return "local"
        return "wait"

    # -- node frames -------------------------------------------------------------------------
    def encode_frame(
        self, rgba: Buffer, width_px: int, height_px: int, capture_ms: float, now_ms: float
    ) -> bytes:
        if self.stream is None:
            raise StreamError("no node connection: wait for next_action() to say 'node'")
        message = self.stream.encode_frame(_as_bytes(rgba), width_px, height_px, capture_ms, now_ms)
        self._frame_sent("raw", len(message), now_ms)
        self._trace(message, capture_ms, now_ms)
        return message

    # -- compressed frames (issue 9): Python decides, the browser's encoder does the pixels
    def set_encoders(self, names: str) -> None:
        """What this browser's canvas can encode: a comma-separated list of 'jpeg' and
        'webp'. Streams opened from now on offer them to their nodes."""
        known = {"jpeg": FrameEncoding.JPEG, "webp": FrameEncoding.WEBP}
        self.can_encode = tuple(known[n] for n in names.split(",") if n.strip() in known)

    def plan_frame(self, width_px: int, height_px: int, now_ms: float) -> str:
        """How the next frame goes, as JSON ``{"encoding": "raw" | "jpeg" | "webp",
        "quality", "width", "height"}``. For raw, call ``encode_frame`` with its pixels;
        otherwise draw the frame at width x height, encode it at quality (0..1) and call
        ``encode_image`` with the bytes."""
        if self.stream is None:
            raise StreamError("no node connection: wait for next_action() to say 'node'")
        plan = self.stream.plan_frame(width_px, height_px, now_ms)
        return json.dumps(
            {
                "encoding": plan.encoding,
                "quality": plan.quality,
                "width": plan.width_px,
                "height": plan.height_px,
            }
        )

    def encode_image(
        self, data: Buffer, width_px: int, height_px: int, capture_ms: float, now_ms: float
    ) -> bytes:
        """The IMAGE message for a picture encoded as ``plan_frame`` said; ``width_px`` and
        ``height_px`` are the camera frame's size."""
        if self.stream is None:
            raise StreamError("no node connection: wait for next_action() to say 'node'")
        message = self.stream.encode_image(_as_bytes(data), width_px, height_px, capture_ms, now_ms)
        self._frame_sent(self.stream.encoding.encoding.name.lower(), len(message), now_ms)
        self._trace(message, capture_ms, now_ms)
        return message

    def frame_sent(self, now_ms: float) -> None:
        """The page handed the last node frame to its socket at ``now_ms``: round trips
        count from then, not from before the page's own preprocessing."""
        if self.stream is not None:
            self.stream.mark_sent(now_ms)

    def _trace(self, message: bytes, capture_ms: float, now_ms: float) -> None:
        """A sampled frame's TRACE goes to the outbox, which the page sends before the frame
        (issue 12); only to a node whose WELCOME says it takes traces."""
        welcome = self.stream.welcome if self.stream is not None else None
        if self.traces is None or welcome is None or not welcome.takes_traces:
            return
        trace = self.traces.frame_sent(_FRAME_ID.unpack_from(message, 4)[0], capture_ms, now_ms)
        if trace is not None:
            self._outbox.append(trace)

    def take_trace_report(self, time_origin_ms: float) -> str:
        """A drawn sampled frame's report for the config's ``trace.url`` (JSON), or ""."""
        return self.traces.take_report(time_origin_ms) if self.traces is not None else ""

    def _frame_sent(self, encoding: str, size_bytes: int, now_ms: float) -> None:
        self._last_frame_sent_ms = now_ms
        self.dashboard.frame_sent(now_ms, encoding, size_bytes)

    def ping(self, now_ms: float) -> bytes:
        if self.stream is None:
            raise StreamError("no node connection to ping")
        return self.stream.ping(now_ms)

    def on_message(self, url: str, data: Buffer, now_ms: float) -> str:
        """Feed one message from the node at ``url``; returns a JSON list of events."""
        if self.handover.is_joining(url):
            return self._on_joining_message(url, data, now_ms)
        if url in self.handover.draining:
            return self._on_draining_message(url, data, now_ms)
        if self.stream is None or url != self.node_url:
            return "[]"
        raw = _as_bytes(data)
        if not self.is_node_ready():
            # A node at capacity sends ERROR OVERLOADED in place of its HELLO, then closes
            # with 1013 (gpu_backend/endpoint.py); NodeStream would call that a breach.
            refusal = _overload_refusal(raw)
            if refusal is not None:
                self._lose_node(now_ms, overloaded=True)
                return json.dumps([{"type": "refused", "message": refusal}])
        try:
            events = self.stream.receive(raw, now_ms)
        except StreamError as exc:
            self._lose_node(now_ms, overloaded=False)
            return json.dumps([{"type": "fatal", "message": str(exc)}])
        out = [self._to_js(url, event, now_ms) for event in events]
        return json.dumps(self._with_send([item for item in out if item is not None]))

    def _to_js(self, url: str, event: Event, now_ms: float) -> dict[str, Any] | None:
        if isinstance(event, Ready):
            hello = event.hello
            self.router.record_connected(url, now_ms)
            self.router.pipeline_depth = min(self.max_in_flight, hello.max_in_flight)
            self.node_name = hello.node_name
            self.node_model = hello.model_name
            self.route_note = ""
            return {
                "type": "ready",
                "node": hello.node_name,
                "model": hello.model_name,
                "identity": event.welcome.identity if event.welcome else None,
            }
        if isinstance(event, AccessRefused):
            # The node closes the connection after this. An expired token is the page's
            # lapse, not the node's: fetch a new one and come back without blame.
            self.tokens.expire(now_ms)
            if event.is_expired:
                self._drop_stream()
            else:
                self._lose_node(now_ms, overloaded=False)
            return {"type": "access_refused", "code": event.code, "message": event.message}
        if isinstance(event, Detections):
            self.dashboard.node_result(
                now_ms,
                event.round_trip_ms,
                event.queue_ms,
                event.inference_ms,
                event.post_ms,
                decode_ms=event.decode_ms,
            )
            server_ms = event.decode_ms + event.queue_ms + event.inference_ms + event.post_ms
            self.router.record_result(
                url,
                event.round_trip_ms,
                now_ms,
                server_ms=server_ms,
                inference_ms=event.inference_ms + event.post_ms,
            )
            return self._detections(
                "node",
                event.frame_id,
                event.boxes,
                event.capture_ms,
                round_trip_ms=event.round_trip_ms,
                queue_ms=event.queue_ms,
                inference_ms=event.inference_ms,
                post_ms=event.post_ms,
                batch_size=event.batch_size,
                decode_ms=event.decode_ms,
                encoding=event.encoding,
                frame_bytes=event.size_bytes,
            )
        if isinstance(event, Welcomed):
            return {"type": "welcome", "encodings": event.welcome.encodings}
        if isinstance(event, NodeError):
            if event.code == ErrorCode.OVERLOADED:
                self._lose_node(now_ms, overloaded=True)
                return {"type": "refused", "message": event.message}
            return {"type": "error", "code": event.code, "message": event.message}
        if isinstance(event, FrameDropped):
            self.dashboard.dropped_frame()
            return {"type": "dropped", "frame_id": event.frame_id, "reason": event.reason}
        if isinstance(event, PongReceived):
            self.router.record_rtt(url, event.round_trip_ms, now_ms)
            return None
        raise AssertionError(f"unhandled event {event!r}")

    def _detections(
        self,
        source: str,
        frame_id: int,
        boxes: tuple[FrameBox, ...],
        capture_ms: float,
        **timings: float | str,
    ) -> dict[str, Any] | None:
        # Draw only over the frame a result belongs to or a newer one, whichever path it
        # came from: a late answer never moves the overlay back in time.
        if capture_ms < max(self._newest_drawn_capture_ms, self._source_since_ms):
            return None
        self._newest_drawn_capture_ms = capture_ms
        return {
            "type": "detections",
            "source": source,
            # Boxes are cleared if no newer result replaces them by then (issue 10: a bad
            # file or a stalled node left boxes frozen over the picture).
            "expires_ms": BOXES_EXPIRE_MS,
            "in_view": in_view(boxes),
            "frame_id": frame_id,
            "capture_ms": capture_ms,
            "boxes": _boxes(boxes),
            **timings,
        }

    # -- local frames ------------------------------------------------------------------------
    def local_start(self, is_cross_origin_isolated: bool, hardware_concurrency: int) -> int:
        """The page starts loading the local engine; returns the Wasm thread count."""
        threads = self.local.start_loading(is_cross_origin_isolated, hardware_concurrency)
        if self.local_threads and (is_cross_origin_isolated or self.local_threads == 1):
            threads = self.local.threads = self.local_threads
        return threads

    def local_check_model(self, actual_sha256: str) -> str:
        """'' when the downloaded model may run, else a message for the page. The model
        must be the one the web app describes (nodes must serve it too)."""
        try:
            self.local.check_model(actual_sha256, self.card.sha256, self.local_variant)
        except LocalError as exc:
            return str(exc)
        return ""

    def local_loaded(self) -> None:
        self.local.loaded()

    def local_failed(self, reason: str) -> None:
        self.local.failed(reason)

    def local_encode(
        self, rgba: Buffer, width_px: int, height_px: int, capture_ms: float, now_ms: float
    ) -> int:
        """Letterbox a frame for the worker; returns its id. ``local_tensor()`` holds it."""
        frame_id, self._local_tensor = self.local.encode(
            _as_bytes(rgba), width_px, height_px, capture_ms, now_ms
        )
        return frame_id

    def local_tensor(self) -> bytearray:
        """The tensor of the last ``local_encode`` (reused by the next one: copy it out)."""
        return self._local_tensor

    def local_forget(self, frame_id: int) -> None:
        self.local.forget(frame_id)

    def on_local_output(
        self, frame_id: int, boxes: Buffer, scores: Buffer, inference_ms: float, now_ms: float
    ) -> str:
        result = self.local.on_output(
            frame_id, _as_bytes(boxes), _as_bytes(scores), inference_ms, now_ms
        )
        if result is None:
            return "[]"
        self.dashboard.local_result(now_ms, result.inference_ms)
        event = self._detections(
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
        return json.dumps([event] if event else [])

    # -- what the page shows -----------------------------------------------------------------
    def note_preprocess(self, duration_ms: float, now_ms: float) -> None:
        self.dashboard.preprocessed(now_ms, duration_ms)
        if self.traces is not None:
            self.traces.preprocessed(duration_ms, now_ms)

    def note_drawn(self, capture_ms: float, draw_ms: float, now_ms: float) -> None:
        self.dashboard.drawn_frame(now_ms, capture_ms, draw_ms)
        if self.traces is not None:
            self.traces.drawn(capture_ms, draw_ms, now_ms, self.node_url)

    def source_changed(self, now_ms: float) -> None:
        """The page switched camera/file: results for frames of the old source, still on
        their way, are never drawn over the new one."""
        self._source_since_ms = now_ms

    def _snapshot(self, now_ms: float) -> Snapshot:
        mode = self.mode
        summary = self.dashboard.summary(now_ms)
        return Snapshot(
            mode=mode,
            node=self.node_name if mode == "node" else None,
            node_url=self.node_url,
            model=(self.node_model if mode == "node" else None) or self.card.name,
            threads=self.local.threads,
            local_state=self.local.state.value,
            route=self.route_note,
            fps=summary["fps"],
            latency_ms=summary["latency_ms"],
            round_trip_ms=summary["round_trip_ms"],
            wire=self._wire(now_ms),
        )

    def view(self, now_ms: float) -> str:
        """Everything the page shows in words (``view.py``), as JSON: the badge, the
        status line, the details lines and the Timings rows of the current mode."""
        snapshot = self._snapshot(now_ms)
        return json.dumps(
            {
                "mode": snapshot.mode,
                "badge": badge(snapshot),
                "line": status_line(snapshot),
                "details": details(snapshot),
                "timings": timing_rows(snapshot.mode, self.dashboard.stage_table(now_ms)),
                "security": self.security_problem(),
            }
        )

    def status(self, now_ms: float) -> str:
        """The raw facts behind ``view`` (tests and benchmarks read them)."""
        mode = self.mode
        return json.dumps(
            {
                "mode": mode,
                "node": self.node_name if mode == "node" else None,
                "node_url": self.node_url,
                "model": (self.node_model if mode == "node" else None) or self.card.name,
                "threads": self.local.threads,
                "local_state": self.local.state.value,
                "local_problem": self.local.problem,
                "route": self.route_note,
                "security": self.security_problem(),
                "identity": self.tokens.identity or None,
                "token_problem": self.tokens.problem.message if self.tokens.problem else None,
                **self.dashboard.summary(now_ms),
                "wire": self._wire(now_ms),
            }
        )

    def _wire(self, now_ms: float) -> dict[str, object]:
        """Frames on the wire: the link's current encoding (not a probe's), bytes per frame,
        Mbit/s and why (issue 9)."""
        wire: dict[str, object] = {**self.dashboard.wire(now_ms), "note": ""}
        if self.stream is not None and self.is_node_ready():
            wire["encoding"] = self.stream.encoding.encoding.name.lower()
            wire["note"] = self.stream.encoding.note
        return wire

    def report(self, now_ms: float) -> str:
        """The summary the page POSTs to the web app's report_url (JSON)."""
        return json.dumps(self.dashboard.report(now_ms, self.mode, self.node_url))

    def stats(self, now_ms: float) -> str:
        """p50/p95 per stage over the last seconds, for the stats panel."""
        return json.dumps(self.dashboard.stage_table(now_ms))
