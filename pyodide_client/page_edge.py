"""The JSON edge between the page's JavaScript and its Python core (issue 19).

JavaScript makes three calls: ``handle(event_json, data)`` reports what happened and
returns what to do, ``take(blob_id)`` hands over the bytes a command refers to, and
``api_state(now_ms)`` answers the public page API. Every event is a JSON object
``{"event": name, "now_ms": performance.now(), ...}`` with, for some, one binary payload;
every reply is ``{"commands": [...], "next_tick_ms": t}``: the commands in order, and when
to report ``{"event": "timer"}`` if nothing else happens first. The events and commands
are listed in docs/page-core.md.

``PageEdge`` parses each event (an unknown event or a missing field is an error naming
it), hands it to the page core (``page_core.PageCore``), and turns what the core decides
into commands: the sockets by id (``page_sockets.py``), a frame's way through JS
(``page_frames.py``), the periodic jobs (``page_schedule.py``), the in-browser engine's
steps, the frame source and the camera's retries. Bytes never go into JSON: a command
names a blob, which JS takes once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

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
    as_bytes,
)
from .page_frames import FrameCycle, Grab
from .page_schedule import Job, PageSchedule
from .page_sockets import Role, Socket, SocketBook
from .transport import QUIC

__all__ = ["MAX_BLOBS", "Blobs", "PageEdge"]

log = logging.getLogger(__name__)

# Blobs JS has not taken yet; it takes each as it runs the command naming it, so more than
# this means it stopped taking them: the oldest go.
MAX_BLOBS = 256
_REFUSALS = ("NotAllowedError", "SecurityError")  # a camera the user (or a policy) refused

Command = dict[str, Any]


class Blobs:
    """Bytes waiting for JS's ``take``, by id."""

    def __init__(self) -> None:
        self._blobs: dict[int, bytes] = {}
        self._last_id = 0

    def put(self, data: bytes) -> int:
        if len(self._blobs) >= MAX_BLOBS:
            oldest = next(iter(self._blobs))
            log.warning("blob %d was never taken; dropped", oldest)
            del self._blobs[oldest]
        self._last_id += 1
        self._blobs[self._last_id] = data
        return self._last_id

    def take(self, blob_id: int) -> bytes:
        try:
            return self._blobs.pop(blob_id)
        except KeyError:
            raise ValueError(f"expected a blob id a command named, got {blob_id!r}") from None

    def __len__(self) -> int:
        return len(self._blobs)


class _Event:
    """One parsed event: its fields, read with errors that name the missing or wrong one."""

    def __init__(self, event_json: str) -> None:
        data = json.loads(event_json)
        if not isinstance(data, Mapping):
            raise ValueError(f"page event: expected a JSON object, got {type(data).__name__}")
        self._data = data
        self.name = self.text("event")
        self.now_ms = self.number("now_ms")

    def _get(self, key: str) -> object:
        if key not in self._data:
            raise ValueError(f"page event {self._data.get('event')!r}: expected {key!r}")
        return self._data[key]

    def text(self, key: str, default: str | None = None) -> str:
        value = self._get(key) if default is None else self._data.get(key, default)
        if not isinstance(value, str):
            raise ValueError(f"page event field {key!r}: expected a string, got {value!r}")
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"page event field {key!r}: expected a number, got {value!r}")
        return float(value)

    def whole(self, key: str) -> int:
        value = self.number(key)
        if value != int(value):
            raise ValueError(f"page event field {key!r}: expected a whole number, got {value!r}")
        return int(value)

    def flag(self, key: str) -> bool:
        value = self._data.get(key, False)
        if not isinstance(value, bool):
            raise ValueError(f"page event field {key!r}: expected true or false, got {value!r}")
        return value


def _payload(data: Buffer | None, event: _Event) -> bytes | bytearray | memoryview:
    if data is None:
        raise ValueError(f"page event {event.name!r}: expected its bytes as the second argument")
    return as_bytes(data)


class PageEdge:
    """Events in, commands out, for one page; ``core`` decides, this keeps the JS's side."""

    def __init__(self, core: PageCore) -> None:
        self.core = core
        self.sockets = SocketBook(core.origin.fill_host)
        self.blobs = Blobs()
        self.frames = FrameCycle()
        self.schedule = PageSchedule()
        self.is_cross_origin_isolated = False
        self.hardware_concurrency = 1
        self.time_origin_ms = 0.0
        self.is_local_started = False
        self.wants_camera = True  # until the user picks a file
        self._handlers: dict[str, Callable[[_Event, Buffer | None], list[Command]]] = {
            "start": self._start,
            "timer": self._timer,
            "encoders": lambda e, _: self._encoders(e),
            "socket_open": lambda e, _: self._socket_open(e),
            "socket_message": self._socket_message,
            "socket_close": lambda e, _: self._socket_close(e),
            "frame_abandoned": self._frame_abandoned,
            "fetched": lambda e, _: self._fetched(e),
            "frame": lambda e, _: self._frame(e),
            "pixels": self._pixels,
            "encoded": self._encoded,
            "frame_skipped": lambda e, _: self._frame_skipped(e),
            "sent": lambda e, _: self._sent(e),
            "drawn": lambda e, _: self._drawn(e),
            "webgpu": lambda e, _: self._webgpu(e),
            "local_loaded": lambda e, _: self._local_loaded(e),
            "local_failed": lambda e, _: self._local_failed(e),
            "local_next": lambda e, _: self._local_step(core.local_next(e.now_ms)),
            "local_lost": lambda e, _: self._local_lost(e),
            "local_run_failed": lambda e, _: self._local_run_failed(e),
            "local_output": self._local_output,
            "model_digest": lambda e, _: self._model_digest(e),
            "digest": self._digest,
            "sample": self._sample,
            "source": lambda e, _: self._source(e),
            "camera_wanted": lambda e, _: self._camera_wanted(),
        }

    # -- the entry point -------------------------------------------------------------------
    def handle(self, event_json: str, data: Buffer | None = None) -> str:
        event = _Event(event_json)
        handler = self._handlers.get(event.name)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            raise ValueError(f"page event: expected one of {known}, got {event.name!r}")
        commands = handler(event, data)
        commands += self._pump(event.now_ms)
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
    def _start(self, event: _Event, _: Buffer | None) -> list[Command]:
        """Python is up: what the browser has, and the jobs begin."""
        now = event.now_ms
        self.core.set_webtransport(event.flag("webtransport"))
        self.is_cross_origin_isolated = event.flag("cross_origin_isolated")
        self.hardware_concurrency = max(1, event.whole("hardware_concurrency"))
        self.time_origin_ms = event.number("time_origin_ms")
        timing, config = self.core.config.timing, self.core.config
        self.schedule.at(Job.RENDER, now)
        if config.registry_url:
            self.schedule.at(Job.NODES, now)
        if config.report_url:
            self.schedule.at(Job.REPORT, now + timing.report_period_ms)
        self.schedule.at(Job.LOCAL_CHECK, now + timing.local_start_check_ms)
        return [*self._timer(event, None), {"do": "camera"}]

    def _timer(self, event: _Event, _: Buffer | None) -> list[Command]:
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
            elif job is Job.CAMERA and self.wants_camera:
                commands.append({"do": "camera"})
        return commands

    def _render(self, now_ms: float) -> Command:
        return {"do": "render", "view": json.loads(self.core.view(now_ms))}

    def _encoders(self, event: _Event) -> list[Command]:
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
            return [{"do": "ready", "node": node, "name": event["node"], "model": event["model"]}]
        if kind == "send":
            return self._flush(event.get("url", ""))
        if kind == "send_upgrade":
            up = self.sockets.one(Role.UPGRADING)
            out: list[Command] = []
            while message := self.core.take_upgrade_outgoing():
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
        """The messages the core wants on a node link (AUTH, TRACE): the joining one's for
        its URL, else the link's."""
        joining = self.sockets.one(Role.JOINING)
        target = joining if url and joining is not None and joining.url == url else None
        target = target or self.sockets.one(Role.LINK)
        out: list[Command] = []
        while message := self.core.take_outgoing(url):
            out += self.sockets.send(target, message)
        return out

    # -- sockets --------------------------------------------------------------------------------
    def _socket(self, event: _Event) -> Socket | None:
        return self.sockets.get(event.whole("socket"))

    def _socket_open(self, event: _Event) -> list[Command]:
        socket = self._socket(event)
        if socket is None or socket.transport != QUIC:
            return []  # on a WebSocket the node speaks first: its HELLO comes next
        # on QUIC the page does (quic_framing.py): the PING that measures the link
        return self.sockets.send(socket, self.core.quic_opening(socket.url, event.now_ms))

    def _socket_message(self, event: _Event, data: Buffer | None) -> list[Command]:
        socket, now = self._socket(event), event.now_ms
        if socket is None:
            return []  # a socket the page left
        payload = _payload(data, event)
        if socket.role is Role.PROBE:
            first, *rest = self.core.handle_event(ProbeMessage(socket.url, payload), now).commands
            if first["do"] == "probe_send":
                out = self.sockets.send(socket, first["data"])
            else:
                out = self.sockets.close(socket, "probe_done")
            return out + self._carry(rest, None, now)
        if socket.role is Role.UPGRADING:
            events = json.loads(self.core.on_upgrade_message(socket.url, payload, now))
            return self._carry(events, socket, now)
        reply = self.core.handle_event(SocketMessage(socket.key, payload), now)
        return self._carry(reply.commands, socket, now)

    def _socket_close(self, event: _Event) -> list[Command]:
        socket, code, now = self._socket(event), event.whole("code"), event.now_ms
        if socket is None:
            return []
        self.sockets.forget(socket)
        if socket.role is Role.PROBE:
            failed = self.core.handle_event(ProbeFailed(socket.url), now).commands
            return [*self._want_local(), *self._carry(failed, None, now)]
        if socket.role is Role.UPGRADING:
            self.core.on_upgrade_close(socket.url, code, now)
            return self._carry(self.core.handle_event(TimerFired(), now).commands, None, now)
        closed = SocketClosed(socket.key, code)
        return [
            *self._want_local(),
            *self._carry(self.core.handle_event(closed, now).commands, socket, now),
        ]

    def _frame_abandoned(self, event: _Event, data: Buffer | None) -> list[Command]:
        socket = self._socket(event)
        if socket is not None and socket.role is Role.LINK:
            self.core.frame_abandoned(socket.url, _payload(data, event), event.now_ms)
        return []

    # -- fetches ---------------------------------------------------------------------------------
    def _fetched(self, event: _Event) -> list[Command]:
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
    def _frame(self, event: _Event) -> list[Command]:
        self.frames.arrived(event.whole("width"), event.whole("height"))
        return []

    def _pump(self, now_ms: float) -> list[Command]:
        """A waiting frame, when the core says where it may go now."""
        frames = self.frames
        if not frames.is_waiting:
            return []
        to = self.core.next_action(now_ms)
        if to == "wait":
            return []
        width, height = frames.width_px, frames.height_px
        if to == "local":
            frames.ask(Grab("local", now_ms, width, height))
            return [{"do": "grab", "to": "local", "capture_ms": now_ms}]
        link = self.sockets.one(Role.LINK)
        if link is None:
            frames.has_new_frame = False  # as before: this frame has no socket to go on
            return []
        plan = json.loads(self.core.plan_frame(width, height, now_ms))
        frames.ask(Grab("node", now_ms, width, height, plan["encoding"], link.id))
        return [{"do": "grab", "to": "node", "capture_ms": now_ms, **plan}]

    def _frame_skipped(self, event: _Event) -> list[Command]:
        self.frames.handed_back()
        return []

    def _pixels(self, event: _Event, data: Buffer | None) -> list[Command]:
        grab, now = self.frames.handed_back(), event.now_ms
        width, height = event.whole("width"), event.whole("height")
        if grab is None:
            return []
        rgba = _payload(data, event)
        frame = {"capture_ms": grab.capture_ms, "width": width, "height": height}
        if grab.to == "local":
            frame_id = self.core.local_encode(rgba, width, height, grab.capture_ms, now)
            self.frames.last_sent = grab
            return [
                {
                    "do": "local_run",
                    "id": frame_id,
                    "data": bytes(self.core.local_tensor()),
                    "frame": frame,
                }
            ]
        link = self._link_for(grab)
        if link is None:
            return []
        message = self.core.encode_frame(rgba, width, height, grab.capture_ms, now)
        return self._send_frame(link, message, grab, frame)

    def _encoded(self, event: _Event, data: Buffer | None) -> list[Command]:
        grab = self.frames.handed_back()
        if grab is None:
            return []
        link = self._link_for(grab)  # the node changed while encoding: not sent
        if link is None:
            return []
        width, height = grab.width_px, grab.height_px
        message = self.core.encode_image(
            _payload(data, event), width, height, grab.capture_ms, event.now_ms
        )
        frame = {"capture_ms": grab.capture_ms, "width": width, "height": height}
        return self._send_frame(link, message, grab, frame)

    def _link_for(self, grab: Grab) -> Socket | None:
        link = self.sockets.one(Role.LINK)
        if link is None or link.id != grab.socket_id or self.core.stream is None:
            return None
        return link

    def _send_frame(
        self, link: Socket, message: bytes, grab: Grab, frame: Command
    ) -> list[Command]:
        # a sampled frame's TRACE (in the link's outbox) goes just before it (issue 12)
        out = self._flush("")
        self.frames.last_sent = grab
        return [*out, {"do": "send", "socket": link.id, "data": message, "frame": frame}]

    def _sent(self, event: _Event) -> list[Command]:
        """JS sent (or ran) the last frame; ``preprocess_ms``: its own time on it."""
        grab, now = self.frames.last_sent, event.now_ms
        self.frames.last_sent = None
        if grab is not None and grab.to == "node" and grab.encoding == "raw":
            self.core.frame_sent(now)  # round trips count from now
        self.core.note_preprocess(event.number("preprocess_ms"), now)
        return []

    def _drawn(self, event: _Event) -> list[Command]:
        now = event.now_ms
        self.core.note_drawn(event.number("capture_ms"), event.number("draw_ms"), now)
        trace = self.core.config.trace
        report = self.core.take_trace_report(self.time_origin_ms) if trace is not None else ""
        if trace is None or not report:
            return []
        return [{"do": "post", "url": trace.url, "body": report}]

    # -- the in-browser engine -------------------------------------------------------------------
    def _want_local(self) -> list[Command]:
        """Start the in-browser engine now (once): a node result came, a node link closed
        or a probe failed, or no node connection is open or opening (issue 18)."""
        if self.is_local_started:
            return []
        self.is_local_started = True
        self.schedule.cancel(Job.LOCAL_CHECK)
        return [{"do": "check_webgpu"}]

    def _webgpu(self, event: _Event) -> list[Command]:
        step = self.core.local_begin(
            self.is_cross_origin_isolated,
            self.hardware_concurrency,
            event.text("problem", ""),
            event.now_ms,
        )
        return self._local_step(step)

    def _local_step(self, step_json: str) -> list[Command]:
        step = json.loads(step_json)
        return [] if step["do"] == "none" else [{"do": "local_step", "step": step}]

    def _local_loaded(self, event: _Event) -> list[Command]:
        key, warmup_ms = event.text("key"), event.number("warmup_ms")
        return self._local_step(self.core.local_step_loaded(key, warmup_ms, event.now_ms))

    def _local_failed(self, event: _Event) -> list[Command]:
        key, message = event.text("key"), event.text("message")
        step = self.core.local_step_failed(key, message, event.flag("timed_out"), event.now_ms)
        return self._local_step(step)

    def _local_lost(self, event: _Event) -> list[Command]:
        return self._local_step(
            self.core.local_lost(event.text("key"), event.text("message"), event.now_ms)
        )

    def _local_run_failed(self, event: _Event) -> list[Command]:
        key, frame_id, message = event.text("key"), event.whole("id"), event.text("message")
        return self._local_step(self.core.local_run_failed(key, frame_id, message, event.now_ms))

    def _local_output(self, event: _Event, data: Buffer | None) -> list[Command]:
        """The worker's boxes and scores, one after the other in one buffer."""
        payload = memoryview(_payload(data, event)).cast("B")
        split = event.whole("boxes_bytes")
        if not 0 <= split <= len(payload):
            raise ValueError(
                f"page event field 'boxes_bytes': expected 0..{len(payload)}, got {split}"
            )
        boxes, scores = bytes(payload[:split]), bytes(payload[split:])
        result = WorkerResult(event.whole("id"), boxes, scores, event.number("inference_ms"))
        return self._carry(
            self.core.handle_event(result, event.now_ms).commands, None, event.now_ms
        )

    def _model_digest(self, event: _Event) -> list[Command]:
        return [{"do": "model_check", "refusal": self.core.local_check_model(event.text("sha256"))}]

    def _digest(self, event: _Event, data: Buffer | None) -> list[Command]:
        return [{"do": "digest", "sha256": self.core.sha256_hex(_payload(data, event))}]

    def _sample(self, event: _Event, data: Buffer | None) -> list[Command]:
        sample = self.core.local_sample(
            _payload(data, event), event.whole("width"), event.whole("height")
        )
        return [{"do": "sample", "data": sample}]

    # -- the frame source and the camera ---------------------------------------------------------
    def _source(self, event: _Event) -> list[Command]:
        """What the source did: ``state`` starting | live | failed | ended, ``kind``
        camera | file | url, ``error`` the browser error's name, ``playing`` what the
        source plays now (none, camera, video, image)."""
        now, timing, config = event.now_ms, self.core.config.timing, self.core.config
        state, kind = event.text("state"), event.text("kind")
        error, playing = event.text("error", ""), event.text("playing", "none")
        out: list[Command] = []
        if kind == "camera" and not self.wants_camera:
            return []  # a file was chosen meanwhile
        if kind == "camera" and state == "live":
            self.schedule.cancel(Job.CAMERA)
            out = [*self._source_changed(now), {"do": "camera_button", "is_shown": False}]
        elif kind == "camera" and state == "failed":
            if config.kiosk:  # nobody is there to click: retry even a refusal
                if config.kiosk_source_url and playing == "none":
                    out.append({"do": "play", "url": config.kiosk_source_url})
                self.schedule.at(Job.CAMERA, now + timing.kiosk_camera_retry_ms)
            elif error not in _REFUSALS:
                self.schedule.at(Job.CAMERA, now + timing.camera_retry_ms)
        elif kind == "camera" and state == "ended":
            self.schedule.at(Job.CAMERA, now + timing.camera_ended_retry_ms)
        elif kind == "file":
            if state == "starting":
                self.wants_camera = False
                self.schedule.cancel(Job.CAMERA)
            else:  # drop boxes of frames grabbed while the file was loading
                out.append({"do": "camera_button", "is_shown": True})
            out = [*self._source_changed(now), *out]
        elif kind == "url":
            if state != "live":
                return [
                    {
                        "do": "warn",
                        "type": "source",
                        "text": "kiosk: the configured source cannot be played",
                    }
                ]
            out = self._source_changed(now)
        self._source_reported(state, kind, error, playing)
        return [*out, self._render(now)]

    def _source_reported(self, state: str, kind: str, error: str, playing: str) -> None:
        if kind == "camera" and state in ("starting", "failed") and playing != "none":
            return  # a kiosk's loop keeps playing: the badge stays on it
        self.core.source_update(state, kind, error)

    def _source_changed(self, now_ms: float) -> list[Command]:
        """Results of frames of the old source, still on their way, are never drawn."""
        self.core.source_changed(now_ms)
        return [{"do": "clear_overlay"}]

    def _camera_wanted(self) -> list[Command]:
        """The user asked for the camera again."""
        self.wants_camera = True
        self.schedule.cancel(Job.CAMERA)
        return [{"do": "camera"}]


_WARNINGS = {
    "refused": "node refused the stream",
    "error": "node refused a message",
    "access_refused": "node refused the stream token",
    "fatal": "node sent something this page cannot use",
}
