"""A CPython stand-in for the page: drives ``BrowserClient`` the way static/app.js does.

It runs ``tick`` when ``next_tick_ms`` says and whenever something happens (app.js
``tickNow``/``wake``), and carries out its actions (connect, switch, join and leave for
make-before-break moves, abandon, ping, probe); probes are short-lived sockets as in
static/node-link.js; with a ``registry_url`` it fetches the node list at once and every
2 s (``refreshNodes``); a camera delivers frames at ``fps`` and a frame goes to the node
only when ``next_action()`` says "node" (one that finds no free slot waits for the next
message, as ``pump()`` does). No local engine
is loaded, so the mode is "node" or "none". What it sees is recorded: one ``FrameRecord``
per frame sent, the HELLOs, the sockets that closed, the actions and the node's refusals,
timed with ``time.monotonic()`` in ms, the client's clock.
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
from pyodide_client.page_config import PageTiming
from pyodide_client.routing import Router, RoutingSettings
from tests.media import rgba_photo

__all__ = ["Driver", "FrameRecord", "now_ms"]

MODEL_CARD = Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416" / "model.json"
REGISTRY_POLL_S = PageTiming().registry_poll_ms / 1000  # app.js polls the list this often
PROBE_GUARD_S = 10.0  # node-link.js: the probe's leak guard
CLOSE_ABNORMAL = 1006  # what a browser reports for a socket that failed or died
FRAME_ID = struct.Struct("<I")  # right after the 4-byte header (protocol.py: FRAME)
SOCKET_ERRORS = (OSError, TimeoutError, WebSocketException)


def socket_url(url: str) -> str:
    """app.js nodeUrl(): a configured URL may name the page's host as {hostname}."""
    return url.replace("{hostname}", "127.0.0.1")


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
class _Link:
    url: str
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
        page of that origin would; empty: anonymous streams, as a page without token_url."""
        config: dict[str, Any] = {"node_urls": node_urls, "max_in_flight": max_in_flight}
        if web_url:
            config["token_url"] = "/api/token"
        self.web_url = web_url
        self.client = BrowserClient(json.dumps(config), MODEL_CARD.read_text(encoding="utf-8"))
        if routing is not None:
            # BrowserClient builds Router() with the page's defaults; tests shorten some
            # waits (dwell, switch interval) so that a scenario fits in a few seconds.
            self.client.router = Router(routing)
        self.registry_url, self.fps = registry_url, fps
        self.rgba, self.width_px, self.height_px = rgba_photo("astronaut")
        self.records: list[FrameRecord] = []
        self.readies: list[tuple[float, str, str]] = []  # (ms, url, node name)
        self.closes: list[tuple[float, str, int]] = []  # (ms, url, close code)
        self.actions: list[tuple[float, dict[str, str]]] = []
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # refused, fatal, error
        self.probe_failures: list[tuple[float, str]] = []
        self.link: _Link | None = None
        self.joining: _Link | None = None  # a planned move's new node (make before break)
        self.draining: dict[str, _Link] = {}  # old nodes answering their last frames
        self._has_new_frame = False
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()  # app.js wake(): tick now, not at the next deadline
        self._tasks: list[asyncio.Task[None]] = []

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
        for loop in (self._ticks(), self._camera(), self._registry()):
            self._spawn(loop)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.link is not None:
            self._abandon(self.link)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks = [t for t in self._tasks if not t.done()] + [task]
        return task

    # -- app.js: the clocks ---------------------------------------------------------------
    async def _ticks(self) -> None:
        """app.js tickNow(): tick, then sleep until ``next_tick_ms`` or a wake-up."""
        while True:
            self._wake.clear()
            self._act(json.loads(self.client.tick(now_ms())))
            self._changed.set()
            now = now_ms()
            delay_s = max(0.0, self.client.next_tick_ms(now) - now) / 1000
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands as the wake-up fires, and this loop would then never end
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_s):
                    await self._wake.wait()

    async def _camera(self) -> None:
        while True:
            self._has_new_frame = True
            self._pump()
            await asyncio.sleep(1 / self.fps)

    async def _registry(self) -> None:
        if not self.registry_url:
            return
        async with httpx.AsyncClient(timeout=REGISTRY_POLL_S) as http:
            while True:
                # An unreachable web app keeps the nodes already known, as in app.js.
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(self.registry_url)
                    if response.is_success:
                        self.client.update_nodes(response.text, now_ms())
                        self._wake.set()
                await asyncio.sleep(REGISTRY_POLL_S)

    def _act(self, actions: list[dict[str, str]]) -> None:
        for action in actions:
            self.actions.append((now_ms(), action))
            if action["do"] in ("connect", "switch", "abandon") and self.link is not None:
                self._abandon(self.link)
                self.link = None
            if action["do"] in ("connect", "switch"):
                if self.joining is not None:
                    self._abandon(self.joining)
                    self.joining = None
                self.link = _Link(action["url"])
                self.link.task = self._spawn(self._run_link(self.link))
            elif action["do"] == "join":
                if self.joining is not None:
                    self._abandon(self.joining)
                self.joining = _Link(action["url"])
                self.joining.task = self._spawn(self._run_link(self.joining))
            elif action["do"] == "leave":
                self._leave(action["url"])
            elif action["do"] == "abandon":
                self._pump()
            elif action["do"] == "ping" and self.link is not None and self.link.is_open:
                self.link.outbox.put_nowait(self.client.ping(now_ms()))
            elif action["do"] == "probe":
                self._spawn(self._probe(action["url"]))
            elif action["do"] == "fetch_token":
                self._spawn(self._fetch_token(action["url"]))

    async def _fetch_token(self, url: str) -> None:
        """app.js fetchToken(): POST to the web app's token URL, answer to on_token."""
        status, body = 0, ""
        if self.web_url:
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=10.0) as http:
                    response = await http.post(
                        self.web_url.rstrip("/") + url, headers={"Origin": self.web_url}
                    )
                    status, body = response.status_code, response.text
        self._handle_events(None, json.loads(self.client.on_token(status, body, now_ms())))
        self._pump()
        self._changed.set()

    def _flush_link(self, url: str = "") -> None:
        """app.js flushLink(): what Python wants on a node link (its AUTH)."""
        joining = self.joining
        target = joining if url and joining is not None and joining.url == url else self.link
        while message := self.client.take_outgoing(url):
            if target is not None and target.is_open:
                target.outbox.put_nowait(message)

    def _is_live(self, link: _Link) -> bool:
        return link in (self.link, self.joining) or self.draining.get(link.url) is link

    def _leave(self, url: str) -> None:
        """app.js leave(): close a joining or draining socket without reporting it."""
        for link in (self.joining, self.draining.pop(url, None)):
            if link is not None and link.url == url:
                self._abandon(link)
        if self.joining is not None and self.joining.url == url:
            self.joining = None

    # -- node-link.js: NodeLink and probe() -----------------------------------------------
    async def _run_link(self, link: _Link) -> None:
        try:
            async with connect(
                socket_url(link.url),
                compression=None,
                max_size=None,
                open_timeout=10,
                close_timeout=1,
                origin=Origin(self.web_url.rstrip("/")) if self.web_url else None,
            ) as ws:
                link.ws = ws
                sender = asyncio.create_task(self._send_all(link, ws))
                try:
                    async for message in ws:
                        assert isinstance(message, bytes), "nodes send binary messages only"
                        self._on_message(link, message)
                finally:
                    sender.cancel()
        except SOCKET_ERRORS:
            pass
        code = (link.ws.close_code if link.ws else None) or CLOSE_ABNORMAL
        self._forget(link)
        if not link.is_abandoned and self._is_live(link):
            if self.link is link:
                self.link = None
            if self.joining is link:
                self.joining = None
            if self.draining.get(link.url) is link:
                del self.draining[link.url]
            self.closes.append((now_ms(), link.url, code))
            self.client.on_close(link.url, code, now_ms())
            self._act(json.loads(self.client.tick(now_ms())))  # as app.js: fail over now
            self._wake.set()
            self._pump()
        self._changed.set()

    async def _send_all(self, link: _Link, ws: ClientConnection) -> None:
        while True:  # one queue per socket: frames and pings leave in order, like send()
            await ws.send(await link.outbox.get())

    def _abandon(self, link: _Link) -> None:
        """NodeLink.abandon(): no more callbacks from this socket; close it."""
        link.is_abandoned = True
        self._forget(link)
        if link.task is not None:
            link.task.cancel()

    def _forget(self, link: _Link) -> None:
        for record in link.in_flight.values():
            record.outcome = "lost"
        link.in_flight.clear()

    async def _probe(self, url: str) -> None:
        is_done = False
        with contextlib.suppress(*SOCKET_ERRORS):
            async with (
                asyncio.timeout(PROBE_GUARD_S),
                connect(socket_url(url), compression=None, max_size=None, close_timeout=1) as ws,
            ):
                async for message in ws:
                    assert isinstance(message, bytes), "nodes send binary messages only"
                    reply = self.client.on_probe_message(url, message, now_ms())
                    if not reply:
                        self._wake.set()  # as app.js: a probe answered, decide again now
                        is_done = True
                        break
                    await ws.send(reply)
        if not is_done:
            self.probe_failures.append((now_ms(), url))
            self.client.on_probe_failed(url, now_ms())
            self._wake.set()
        self._changed.set()

    # -- app.js: handle() and pump() ------------------------------------------------------
    def _on_message(self, link: _Link, data: bytes) -> None:
        if link.is_abandoned or not self._is_live(link):
            return
        self._handle_events(link, json.loads(self.client.on_message(link.url, data, now_ms())))
        self._pump()
        self._changed.set()

    def _handle_events(self, link: _Link | None, events: list[dict[str, Any]]) -> None:
        now = now_ms()
        link = link or self.link
        for event in events:
            kind = event["type"]
            if kind == "wake":
                self._wake.set()  # as app.js: Python says decide again now
                continue
            if kind == "send":
                self._flush_link(event.get("url", ""))
                continue
            if kind == "promote":
                if self.link is not None:
                    self.draining[self.link.url] = self.link
                self.link, self.joining = self.joining, None
                continue
            if kind == "leave":
                self._leave(event["url"])
                continue
            if link is None:
                self.events.append((now, "", event))
                continue
            if kind == "ready":
                link.node = event["node"]
                self.readies.append((now, link.url, event["node"]))
            elif kind in ("detections", "dropped"):
                outcome = "answered" if kind == "detections" else "dropped"
                self._settle(link, event["frame_id"], outcome, now, event.get("round_trip_ms"))
            else:
                self.events.append((now, link.url, event))
                if kind == "fatal":
                    self._abandon(link)
                    self.link = None

    def _settle(
        self, link: _Link, frame_id: int, outcome: str, now: float, rtt: float | None
    ) -> None:
        record = link.in_flight.pop(frame_id, None)
        if record is None:
            return
        record.outcome, record.node = outcome, link.node
        if outcome == "answered":
            record.result_ms, record.round_trip_ms = now, rtt
            for older in [i for i in link.in_flight if i < frame_id]:  # never to be drawn
                link.in_flight.pop(older).outcome = "superseded"

    def _pump(self) -> None:
        if not self._has_new_frame or self.client.next_action() != "node":
            return  # no local engine here: "local" never comes
        self._has_new_frame = False
        link = self.link
        if link is None or not link.is_open:
            return
        capture = now_ms()
        message = self.client.encode_frame(
            self.rgba, self.width_px, self.height_px, capture, capture
        )
        record = FrameRecord(capture, link.url, FRAME_ID.unpack_from(message, 4)[0])
        link.in_flight[record.frame_id] = record
        self.records.append(record)
        link.outbox.put_nowait(message)
