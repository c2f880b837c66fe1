"""The JSON edge between the page's JavaScript and its Python core (issue 19).

JavaScript makes three calls: ``handle(event_json, data)`` reports what happened and
returns what to do, ``take(blob_id)`` hands over the bytes a command refers to, and
``api_state(now_ms)`` answers the public page API. Every event is a JSON object
``{"event": name, "now_ms": performance.now(), ...}`` with, for some, one binary payload;
every reply is ``{"commands": [...], "next_tick_ms": t}``: the commands in order, and when
to report ``{"event": "timer"}`` if nothing else happens first. The events and commands
are listed in docs/page-core.md.

``PageEdge`` parses each event (``page_json.py``: an unknown event or a missing field is
an error naming it), hands it to the page core (``page_core.PageCore``), and turns what the
core decides into commands: the sockets by id (``page_sockets.py``), a frame's way through
JS (``page_frames.py``), the frame source and the camera's retries (``page_camera.py``),
the periodic jobs (``page_schedule.py``) and the in-browser engine's steps. Bytes never go
into JSON: a command names a blob (``page_json.Blobs``), which JS takes once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .page_camera import SourceEdge
from .page_core import PageCore
from .page_events import (
    Buffer,
    NodeList,
    ProbeFailed,
    ProbeMessage,
    SocketClosed,
    SocketMessage,
    TimerFired,
    TokenFetched,
    WorkerResult,
)
from .page_frames import FramePath
from .page_json import Blobs, JsonEvent, payload
from .page_schedule import Job, PageSchedule
from .page_sockets import Role, Socket, SocketBook
from .transport import QUIC

__all__ = ["PageEdge"]

Command = dict[str, Any]


class PageEdge:
    """Events in, commands out, for one page; ``core`` decides, this keeps the JS's side."""

    def __init__(self, core: PageCore) -> None:
        self.core = core
        self.sockets = SocketBook(core.origin.fill_host)
        self.blobs = Blobs()
        self.schedule = PageSchedule()
        self.frames = FramePath(core, self.sockets)
        self.source = SourceEdge(core, self.schedule, self._render)
        self.is_cross_origin_isolated = False
        self.hardware_concurrency = 1
        self.is_local_started = False
        frames = self.frames
        self._handlers: dict[str, Callable[[JsonEvent, Buffer | None], list[Command]]] = {
            "start": self._start,
            "timer": self._timer,
            "encoders": lambda e, _: self._encoders(e),
            "socket_open": lambda e, _: self._socket_open(e),
            "socket_message": self._socket_message,
            "socket_close": lambda e, _: self._socket_close(e),
            "frame_abandoned": self._frame_abandoned,
            "fetched": lambda e, _: self._fetched(e),
            "frame": lambda e, _: frames.frame(e),
            "pixels": frames.pixels,
            "encoded": frames.encoded,
            "frame_skipped": lambda e, _: frames.skipped(e),
            "sent": lambda e, _: frames.sent(e),
            "drawn": lambda e, _: frames.drawn(e),
            "webgpu": lambda e, _: self._webgpu(e),
            "local_loaded": lambda e, _: self._local_loaded(e),
            "local_failed": lambda e, _: self._local_failed(e),
            "local_next": lambda e, _: self._local_step(core.local_steps.next_step(e.now_ms)),
            "local_lost": lambda e, _: self._local_lost(e),
            "local_run_failed": lambda e, _: self._local_run_failed(e),
            "local_output": self._local_output,
            "model_digest": lambda e, _: self._model_digest(e),
            "digest": self._digest,
            "sample": self._sample,
            "source": lambda e, _: self.source.report(e),
            "camera_wanted": lambda e, _: self.source.wanted(),
        }

    # -- the entry point -------------------------------------------------------------------
    def handle(self, event_json: str, data: Buffer | None = None) -> str:
        event = JsonEvent(event_json)
        handler = self._handlers.get(event.name)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            raise ValueError(f"page event: expected one of {known}, got {event.name!r}")
        commands = handler(event, data)
        commands += self.frames.pump(event.now_ms)
        return json.dumps(
            {"commands": self._sealed(commands), "next_tick_ms": self.next_tick_ms(event.now_ms)}
        )

    def next_tick_ms(self, now_ms: float) -> float:
        due = self.schedule.next_due_ms()
        routing = self.core.next_tick_ms(now_ms)
        return routing if due is None else max(now_ms, min(routing, due))

    def _sealed(self, commands: list[Command]) -> list[Command]:
        """Bytes out of the commands and into blobs."""
        for command in commands:
            data = command.pop("data", None)
            if data is not None:
                command["blob"] = self.blobs.put(bytes(data))
        return commands

    # -- start and the timer -----------------------------------------------------------------
    def _start(self, event: JsonEvent, _: Buffer | None) -> list[Command]:
        """Python is up: what the browser has, and the jobs begin."""
        now = event.now_ms
        self.core.quic.set_webtransport(event.flag("webtransport"))
        self.is_cross_origin_isolated = event.flag("cross_origin_isolated")
        self.hardware_concurrency = max(1, event.whole("hardware_concurrency"))
        self.frames.time_origin_ms = event.number("time_origin_ms")
        timing, config = self.core.config.timing, self.core.config
        self.schedule.at(Job.RENDER, now)
        if config.registry_url:
            self.schedule.at(Job.NODES, now)
        if config.report_url:
            self.schedule.at(Job.REPORT, now + timing.report_period_ms)
        self.schedule.at(Job.LOCAL_CHECK, now + timing.local_start_check_ms)
        return [*self._timer(event, None), {"do": "camera"}]

    def _timer(self, event: JsonEvent, _: Buffer | None) -> list[Command]:
        now = event.now_ms
        commands = self._carry(self.core.handle_event(TimerFired(), now).commands, None, now)
        timing, config = self.core.config.timing, self.core.config
        for job in self.schedule.take_due(now):
            if job is Job.NODES:
                fetch = {
                    "do": "fetch",
                    "what": "nodes",
                    "url": config.registry_url,
                    "method": "GET",
                }
                commands.append(fetch)
                self.schedule.at(job, now + timing.registry_poll_ms)
            elif job is Job.REPORT:
                commands.append(
                    {"do": "post", "url": config.report_url, "body": self.core.report(now)}
                )
                self.schedule.at(job, now + timing.report_period_ms)
            elif job is Job.RENDER:
                commands.append(self._render(now))
                self.schedule.at(job, now + timing.view_poll_ms)
            elif job is Job.LOCAL_CHECK:
                if self.sockets.one(Role.LINK) is None and self.sockets.one(Role.JOINING) is None:
                    commands += self._want_local()
                if not self.is_local_started:
                    self.schedule.at(job, now + timing.local_start_check_ms)
            elif job is Job.CAMERA:
                commands += self.source.camera_due()
        return commands

    def _render(self, now_ms: float) -> Command:
        return {"do": "render", "view": json.loads(self.core.view(now_ms))}

    def _encoders(self, event: JsonEvent) -> list[Command]:
        self.core.set_encoders(event.text("names", ""))
        return []

    # -- what the core decided, as commands ---------------------------------------------------
    def _carry(
        self, decided: tuple[Command, ...] | list[Command], origin: Socket | None, now_ms: float
    ) -> list[Command]:
        """The core's actions (``do``) and node events (``type``), as socket and page
        commands; ``origin``: the socket the event came on (None: the link's)."""
        out: list[Command] = []
        for item in decided:
            if "do" in item:
                out += self._act(item, now_ms)
            else:
                out += self._node_event(item, origin or self.sockets.one(Role.LINK), now_ms)
        return out

    def _act(self, action: Command, now_ms: float) -> list[Command]:
        do = action["do"]
        if do == "fetch_token":
            return [{"do": "fetch", "what": "token", "url": action["url"], "method": "POST"}]
        if do == "ping":
            link = self.sockets.one(Role.LINK)
            if link is None or self.core.stream is None:
                return []  # the same tick left the link: nothing to ping on
            return self.sockets.send(link, self.core.ping(now_ms))
        return self.sockets.act(action)

    def _node_event(self, event: Command, socket: Socket | None, now_ms: float) -> list[Command]:
        kind = event["type"]
        node = socket.url if socket is not None else None
        if kind == "detections":
            drawn = {k: v for k, v in event.items() if k != "type"}
            local = self._want_local() if event["source"] == "node" else []
            return [{"do": "draw", "node": node, **drawn}, *local]
        if kind == "dropped":
            return [{"do": "dropped", "frame_id": event["frame_id"], "node": node}]
        if kind == "ready":
            return [
                {
                    "do": "ready",
                    "node": node,
                    "name": event["node"],
                    "model": event["model"],
                    "api": event["api"],  # the page API's edgesight:server (docs/page-api.md)
                }
            ]
        if kind == "send":
            return self._flush(event.get("url", ""))
        if kind == "send_upgrade":
            up = self.sockets.one(Role.UPGRADING)
            out: list[Command] = []
            while message := self.core.quic.take_upgrade_outgoing():
                out += self.sockets.send(up, message)
            return out
        if kind == "promote":
            self.sockets.promote()
            return []
        if kind == "upgraded":
            return self.sockets.upgraded(event["retired_key"], bool(event["drain"]))
        if kind == "leave_upgrade":
            return self.sockets.close(self.sockets.one(Role.UPGRADING), "leave_upgrade")
        if kind == "leave":
            return self.sockets.leave(event["url"])
        if kind == "token_problem":
            return [{"do": "problem", "slot": "token", "text": event["text"]}]
        if kind in _WARNINGS:
            warning: Command = {
                "do": "warn",
                "type": kind,
                "message": event["message"],
                "node": node,
                "text": f"{_WARNINGS[kind]}: {event['message']}",
            }
            if kind == "fatal":  # the core dropped the link: so does the page
                return [warning, *self.sockets.close(self.sockets.one(Role.LINK), "fatal")]
            return [warning]
        return []  # welcome: nothing for the page to do

    def _flush(self, url: str) -> list[Command]:
        return self.sockets.flush(url, self.core.take_outgoing)

    # -- sockets --------------------------------------------------------------------------------
    def _socket(self, event: JsonEvent) -> Socket | None:
        return self.sockets.get(event.whole("socket"))

    def _socket_open(self, event: JsonEvent) -> list[Command]:
        socket = self._socket(event)
        if socket is None or socket.transport != QUIC:
            return []  # on a WebSocket the node speaks first: its HELLO comes next
        # on QUIC the page does (quic_framing.py): the PING that measures the link
        return self.sockets.send(socket, self.core.quic.opening(socket.url, event.now_ms))

    def _socket_message(self, event: JsonEvent, data: Buffer | None) -> list[Command]:
        socket, now = self._socket(event), event.now_ms
        if socket is None:
            return []  # a socket the page left
        message = payload(data, event)
        if socket.is_copy(message):
            return []  # an answer's datagram copy came first, or its stream copy did
        if socket.role is Role.PROBE:
            first, *rest = self.core.handle_event(ProbeMessage(socket.url, message), now).commands
            if first["do"] == "probe_send":
                out = self.sockets.send(socket, first["data"])
            else:
                out = self.sockets.close(socket, "probe_done")
            return out + self._carry(rest, None, now)
        if socket.role is Role.UPGRADING:
            events = json.loads(self.core.quic.on_upgrade_message(socket.url, message, now))
            return self._carry(events, socket, now)
        reply = self.core.handle_event(SocketMessage(socket.key, message), now)
        return self._carry(reply.commands, socket, now)

    def _socket_close(self, event: JsonEvent) -> list[Command]:
        socket, code, now = self._socket(event), event.whole("code"), event.now_ms
        if socket is None:
            return []
        self.sockets.forget(socket)
        if socket.role is Role.PROBE:
            failed = self.core.handle_event(ProbeFailed(socket.url), now).commands
            return [*self._want_local(), *self._carry(failed, None, now)]
        if socket.role is Role.UPGRADING:
            self.core.quic.on_upgrade_close(socket.url, now)
            return self._carry(self.core.handle_event(TimerFired(), now).commands, None, now)
        closed = SocketClosed(socket.key, code)
        return [
            *self._want_local(),
            *self._carry(self.core.handle_event(closed, now).commands, socket, now),
        ]

    def _frame_abandoned(self, event: JsonEvent, data: Buffer | None) -> list[Command]:
        socket = self._socket(event)
        if socket is not None and socket.role is Role.LINK:
            self.core.quic.frame_abandoned(socket.url, payload(data, event), event.now_ms)
        return []

    # -- fetches ---------------------------------------------------------------------------------
    def _fetched(self, event: JsonEvent) -> list[Command]:
        what, status, now = event.text("what"), event.whole("status"), event.now_ms
        body = event.text("body", "")
        if what == "token":
            return self._carry(
                self.core.handle_event(TokenFetched(status, body), now).commands, None, now
            )
        if what != "nodes":
            raise ValueError(f"page event field 'what': expected nodes or token, got {what!r}")
        if not 200 <= status < 300:
            return []  # the web app is unreachable (a kiosk offline): keep the nodes known
        try:
            reply = self.core.handle_event(NodeList(body), now)
        except ValueError as exc:
            return [
                {"do": "warn", "type": "nodes", "text": f"the node list could not be used: {exc}"}
            ]
        return self._carry(reply.commands, None, now)

    # -- frames ----------------------------------------------------------------------------------
    def _want_local(self) -> list[Command]:
        """Start the in-browser engine now (once): a node result came, a node link closed
        or a probe failed, or no node connection is open or opening (issue 18)."""
        if self.is_local_started:
            return []
        self.is_local_started = True
        self.schedule.cancel(Job.LOCAL_CHECK)
        return [{"do": "check_webgpu"}]

    def _webgpu(self, event: JsonEvent) -> list[Command]:
        step = self.core.local_steps.begin(
            self.is_cross_origin_isolated,
            self.hardware_concurrency,
            event.text("problem", ""),
            event.now_ms,
        )
        return self._local_step(step)

    def _local_step(self, step_json: str) -> list[Command]:
        step = json.loads(step_json)
        return [] if step["do"] == "none" else [{"do": "local_step", "step": step}]

    def _local_loaded(self, event: JsonEvent) -> list[Command]:
        key, warmup_ms = event.text("key"), event.number("warmup_ms")
        return self._local_step(self.core.local_steps.step_loaded(key, warmup_ms, event.now_ms))

    def _local_failed(self, event: JsonEvent) -> list[Command]:
        key, message = event.text("key"), event.text("message")
        step = self.core.local_steps.step_failed(
            key, message, event.flag("timed_out"), event.now_ms
        )
        return self._local_step(step)

    def _local_lost(self, event: JsonEvent) -> list[Command]:
        return self._local_step(
            self.core.local_steps.lost(event.text("key"), event.text("message"), event.now_ms)
        )

    def _local_run_failed(self, event: JsonEvent) -> list[Command]:
        key, frame_id, message = event.text("key"), event.whole("id"), event.text("message")
        return self._local_step(
            self.core.local_steps.run_failed(key, frame_id, message, event.now_ms)
        )

    def _local_output(self, event: JsonEvent, data: Buffer | None) -> list[Command]:
        """The worker's boxes and scores, one after the other in one buffer."""
        both = memoryview(payload(data, event)).cast("B")
        split = event.whole("boxes_bytes")
        if not 0 <= split <= len(both):
            raise ValueError(
                f"page event field 'boxes_bytes': expected 0..{len(both)}, got {split}"
            )
        boxes, scores = bytes(both[:split]), bytes(both[split:])
        result = WorkerResult(event.whole("id"), boxes, scores, event.number("inference_ms"))
        return self._carry(
            self.core.handle_event(result, event.now_ms).commands, None, event.now_ms
        )

    def _model_digest(self, event: JsonEvent) -> list[Command]:
        return [
            {
                "do": "model_check",
                "refusal": self.core.local_steps.check_model(event.text("sha256")),
            }
        ]

    def _digest(self, event: JsonEvent, data: Buffer | None) -> list[Command]:
        return [{"do": "digest", "sha256": self.core.sha256_hex(payload(data, event))}]

    def _sample(self, event: JsonEvent, data: Buffer | None) -> list[Command]:
        sample = self.core.local_steps.sample(
            payload(data, event), event.whole("width"), event.whole("height")
        )
        return [{"do": "sample", "data": sample}]

    # -- the frame source and the camera ---------------------------------------------------------


_WARNINGS = {
    "refused": "node refused the stream",
    "error": "node refused a message",
    "access_refused": "node refused the stream token",
    "fatal": "node sent something this page cannot use",
}
