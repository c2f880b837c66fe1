"""A CPython stand-in for the page: drives ``BrowserClient`` the way static/app.js does,
through the same three calls (issue 19).

Every event goes to ``client.handle(event_json, data)`` and every command of its reply is
carried out, in order: sockets are opened, sent on and closed by the id Python gives them
(node links, joining and draining links, probes), the node list and stream tokens are
fetched when a ``fetch`` command says (the registry with httpx, the token by POST to the
web app), a ``grab`` hands over the camera's pixels, a ``draw`` settles the frame it
answers. One timer, re-armed to each reply's ``next_tick_ms``, reports ``timer``; a
camera reports a ``frame`` at ``fps``. No local engine is loaded (``check_webgpu`` is not
answered), so the mode is "node" or "none". What it sees is recorded: one
``FrameRecord`` per frame sent, the HELLOs, the sockets that closed, the page core's
link actions (connect, switch, join, abandon, probe, fetch_token) and the node's
refusals, timed with ``time.monotonic()`` in ms, the client's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.protocol import State
from websockets.typing import Origin

from pyodide_client.browser import BrowserClient
from pyodide_client.routing import Router, RoutingSettings
from tests.media import rgba_photo

__all__ = ["Driver", "FrameRecord", "now_ms"]

MODEL_CARD = Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416" / "model.json"
HTTP_TIMEOUT_S = 10.0
CLOSE_ABNORMAL = 1006  # what a browser reports for a socket that failed or died
FRAME_ID = struct.Struct("<I")  # right after the 4-byte header (protocol.py: FRAME)
SOCKET_ERRORS = (OSError, TimeoutError, WebSocketException)
Command = dict[str, Any]


def now_ms() -> float:
    return time.monotonic() * 1000


@dataclass
class FrameRecord:
    capture_ms: float
    url: str
    frame_id: int
    outcome: str = "in_flight"  # answered | dropped | superseded | lost
    node: str | None = None  # the answering node's name, from its HELLO
    result_ms: float | None = None
    round_trip_ms: float | None = None


@dataclass
class _Socket:
    """app.js's socket under the id Python gave it (node-link.js)."""

    id: int
    url: str  # the node's URL as listed
    ws_url: str  # as opened
    is_probe: bool
    guard_s: float | None = None
    task: asyncio.Task[None] | None = None
    ws: ClientConnection | None = None
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    in_flight: dict[int, FrameRecord] = field(default_factory=dict)
    node: str | None = None
    is_abandoned: bool = False

    @property
    def is_open(self) -> bool:
        return self.ws is not None and self.ws.state is State.OPEN


class Driver:
    """``async with Driver(node_urls) as driver: await driver.wait_for(lambda: ...)``"""

    def __init__(
        self,
        node_urls: list[str] = [],  # noqa: B006 - never mutated
        *,
        registry_url: str = "",
        fps: float = 10.0,
        max_in_flight: int = 1,  # K pinned at 1 (the web app default, 0, adapts K per link)
        routing: RoutingSettings | None = None,
        web_url: str = "",
    ) -> None:
        """``web_url``: the web app to fetch stream tokens from (its POST /api/token), as a
        page of that origin would; empty: anonymous streams, as a page without token_url.
        ``registry_url``: the node list's URL, fetched when Python says."""
        config: dict[str, Any] = {"node_urls": node_urls, "max_in_flight": max_in_flight}
        if web_url:
            config["token_url"] = "/api/token"
        if registry_url:
            config["registry_url"] = registry_url
        # A page served by 127.0.0.1: a listed ws://{hostname}:PORT/ws opens there.
        config["page"] = {"protocol": "http:", "hostname": "127.0.0.1", "port": ""}
        self.web_url = web_url
        self.client = BrowserClient(json.dumps(config), MODEL_CARD.read_text(encoding="utf-8"))
        if routing is not None:
            # BrowserClient builds Router() with the page's defaults; tests shorten some
            # waits (dwell, switch interval) so that a scenario fits in a few seconds.
            self.client.router = Router(routing)
        self.fps = fps
        self.rgba, self.width_px, self.height_px = rgba_photo("astronaut")
        self.records: list[FrameRecord] = []
        self.readies: list[tuple[float, str, str]] = []  # (ms, url, node name)
        self.closes: list[tuple[float, str, int]] = []  # (ms, url, close code)
        self.actions: list[tuple[float, dict[str, str]]] = []
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # refused, fatal, error
        self.probe_failures: list[tuple[float, str]] = []
        self.sockets: dict[int, _Socket] = {}  # app.js's Map<id, socket>
        self._next_tick_ms = 0.0
        self._rearm = asyncio.Event()  # a reply came: the timer's deadline moved
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None

    def answered(self, node: str | None = None) -> list[FrameRecord]:
        return [r for r in self.records if r.outcome == "answered" and node in (None, r.node)]

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Until ``condition()`` holds, checked after every change; TimeoutError after
        ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def __aenter__(self) -> Driver:
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        self.handle(
            "start",
            webtransport=False,
            cross_origin_isolated=False,
            hardware_concurrency=1,
            time_origin_ms=0.0,
        )
        self.handle("encoders", names="")  # no image encoder here: raw frames
        for loop in (self._timer(), self._camera()):
            self._spawn(loop)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for socket in list(self.sockets.values()):
            self._abandon(socket)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks = [t for t in self._tasks if not t.done()] + [task]
        return task

    # -- app.js: the one entry point -------------------------------------------------------
    def handle(self, name: str, data: bytes | None = None, **fields: Any) -> None:
        event = json.dumps({"event": name, "now_ms": now_ms(), **fields})
        reply = json.loads(self.client.handle(event, data))
        self._next_tick_ms = reply["next_tick_ms"]
        self._rearm.set()
        for command in reply["commands"]:
            self._carry_out(command)
        self._changed.set()

    async def _timer(self) -> None:
        """app.js's one timer: ``timer`` at each reply's ``next_tick_ms``."""
        while True:
            self._rearm.clear()
            delay_s = max(0.0, self._next_tick_ms - now_ms()) / 1000
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands as the wake-up fires, and this loop would then never end
            try:
                async with asyncio.timeout(delay_s):
                    await self._rearm.wait()
            except TimeoutError:
                self.handle("timer")

    async def _camera(self) -> None:
        while True:
            self.handle("frame", width=self.width_px, height=self.height_px)
            await asyncio.sleep(1 / self.fps)

    def _carry_out(self, c: Command) -> None:
        do, now = c["do"], now_ms()
        if do == "open":
            self.actions.append((now, {"do": c["why"], "url": c["node"]}))
            guard_ms = c.get("guard_ms")
            socket = _Socket(
                c["socket"],
                c["node"],
                c["url"],
                is_probe=c["role"] == "probe",
                guard_s=guard_ms / 1000 if guard_ms else None,
            )
            self.sockets[socket.id] = socket
            socket.task = self._spawn(self._run_socket(socket))
        elif do == "send":
            data = self.client.take(c["blob"])
            target = self.sockets.get(c["socket"])
            if target is not None and target.is_open:
                target.outbox.put_nowait(data)
                if "frame" in c:
                    record = FrameRecord(
                        c["frame"]["capture_ms"], target.url, FRAME_ID.unpack_from(data, 4)[0]
                    )
                    target.in_flight[record.frame_id] = record
                    self.records.append(record)
            if "frame" in c:
                self.handle("sent", preprocess_ms=0.0)
        elif do == "close":
            if c["why"] == "abandon":
                self.actions.append((now, {"do": "abandon", "reason": c.get("reason", "")}))
            closed = self.sockets.pop(c["socket"], None)
            if closed is not None:
                self._abandon(closed)
        elif do == "fetch":
            if c["what"] == "token":
                self.actions.append((now, {"do": "fetch_token", "url": c["url"]}))
            self._spawn(self._fetch(c["what"], c["url"], c["method"]))
        elif do == "grab" and c["to"] == "local":
            self.handle("frame_skipped")  # no worker here (a test may mark the engine ready)
        elif do == "grab":
            assert c["encoding"] == "raw", c  # no image encoder here
            self.handle("pixels", self.rgba, width=self.width_px, height=self.height_px)
        elif do in ("draw", "dropped"):
            outcome = "answered" if do == "draw" else "dropped"
            self._settle(c["node"], c["frame_id"], outcome, now, c.get("round_trip_ms"))
            if do == "draw":
                self.handle("drawn", capture_ms=c["capture_ms"], draw_ms=0.0)
        elif do == "ready":
            for socket in self.sockets.values():
                if socket.url == c["node"] and not socket.is_probe:
                    socket.node = c["name"]
            self.readies.append((now, c["node"], c["name"]))
        elif do == "warn":
            self.events.append(
                (now, c.get("node") or "", {"type": c["type"], "message": c.get("message", "")})
            )
        elif do == "problem":
            self.events.append((now, "", {"type": f"{c['slot']}_problem", "text": c["text"]}))
        # render, post, camera, check_webgpu, clear_overlay: nothing to do without a page

    async def _fetch(self, what: str, url: str, method: str) -> None:
        """app.js's fetch: [status, body] back as ``fetched`` (0: the request failed)."""
        status, body = 0, ""
        if what == "token":
            url = self.web_url.rstrip("/") + url if self.web_url else ""
        if url and self._http is not None:
            headers = {"Origin": self.web_url} if self.web_url else {}
            with contextlib.suppress(httpx.HTTPError):
                response = await self._http.request(method, url, headers=headers)
                status, body = response.status_code, response.text
        self.handle("fetched", what=what, status=status, body=body)

    # -- node-link.js: a socket by id --------------------------------------------------------
    async def _run_socket(self, socket: _Socket) -> None:
        origin = Origin(self.web_url.rstrip("/")) if self.web_url and not socket.is_probe else None
        with contextlib.suppress(*SOCKET_ERRORS):
            async with (
                asyncio.timeout(socket.guard_s),
                connect(
                    socket.ws_url,
                    compression=None,
                    max_size=None,
                    open_timeout=10,
                    close_timeout=1,
                    origin=origin,
                ) as ws,
            ):
                socket.ws = ws
                self.handle("socket_open", socket=socket.id)
                sender = asyncio.create_task(self._send_all(socket, ws))
                try:
                    async for message in ws:
                        assert isinstance(message, bytes), "nodes send binary messages only"
                        if socket.is_abandoned:
                            break
                        self.handle("socket_message", message, socket=socket.id)
                finally:
                    sender.cancel()
        code = (socket.ws.close_code if socket.ws else None) or CLOSE_ABNORMAL
        self._forget(socket)
        if not socket.is_abandoned and self.sockets.get(socket.id) is socket:
            del self.sockets[socket.id]
            if socket.is_probe:
                self.probe_failures.append((now_ms(), socket.url))
            else:
                self.closes.append((now_ms(), socket.url, code))
            self.handle("socket_close", socket=socket.id, code=code)
        self._changed.set()

    async def _send_all(self, socket: _Socket, ws: ClientConnection) -> None:
        while True:  # one queue per socket: frames and pings leave in order, like send()
            await ws.send(await socket.outbox.get())

    def _abandon(self, socket: _Socket) -> None:
        """NodeLink.abandon(): no more callbacks from this socket; close it."""
        socket.is_abandoned = True
        self._forget(socket)
        if socket.task is not None:
            socket.task.cancel()

    def _forget(self, socket: _Socket) -> None:
        for record in socket.in_flight.values():
            record.outcome = "lost"
        socket.in_flight.clear()

    def _settle(
        self, url: str | None, frame_id: int, outcome: str, now: float, rtt: float | None
    ) -> None:
        for socket in self.sockets.values():
            record = socket.in_flight.pop(frame_id, None) if socket.url == url else None
            if record is None:
                continue
            record.outcome, record.node = outcome, socket.node
            if outcome == "answered":
                record.result_ms, record.round_trip_ms = now, rtt
                for older in [i for i in socket.in_flight if i < frame_id]:  # never drawn
                    socket.in_flight.pop(older).outcome = "superseded"
            return
