"""uvicorn's HTTP and WebSocket protocols, guarded against clients that hold a server's
sockets hostage (issue 8, each reproduced on the unguarded server):

- **Slowloris.** 2000 half-sent HTTP requests stayed open for ever. A connection's request
  headers must now be complete within ``header_timeout_s`` (answered 408 and closed
  otherwise); uvicorn only times out idle keep-alive connections.
- **Slow request bodies** (issue 17). A body trickled a byte at a time was held for ever
  (1,100 such connections from 11 addresses locked every client out). Once its headers are
  in, a request's body must be complete within ``body_timeout_s`` and arrive at
  ``min_body_rate_bytes_per_s`` or more in every second the server is reading it; else 408
  (or, once the app has answered, just a close), and the app handling it is stopped.
- **One malformed request, one log line** (issue 17). h11 answers a malformed body (a bad
  chunk) with 400, but uvicorn let the app run on; its next send failed and logged "Exception
  in ASGI application" with ~45 lines of traceback, 105 MB per 30 s from one client. Here the
  400 ends the request: the app is stopped (cancelled, or never started), its sends and
  receives see a disconnected client, and one sampled line is logged instead of uvicorn's.
- **Per-address caps.** One client address may hold at most
  ``max_connections_per_address`` connections (HTTP and WebSocket alike); more are
  dropped at once. So is every new connection from an address whose request bodies were
  cut for slowness ``max_slow_requests_per_address`` times within
  ``slow_request_window_s``: reconnecting at once would otherwise turn each cut into a
  fresh request to serve.
- **Closing a client that does not read.** uvicorn waits until the socket is writable
  before it sends a close frame, which for a client that never reads is never. Here the
  close frame is written at once and the socket aborted if the client has not answered
  within ``close_timeout_s``.
- **Parsing only what the app takes.** uvicorn parses every WebSocket frame of a read
  (up to 256 KB) before the app sees the first: 12,000 tiny junk messages per read kept
  the event loop from everyone else. Here received bytes are parsed a slice at a time,
  only while the app keeps up (its queue holds fewer than two messages); the rest waits
  with reading paused, and is dropped when the app closes the connection. After the close
  frame the client may finish the message it was sending (up to the message size limit)
  and answer the close; more than ``after_close_messages`` messages, or more bytes than
  the size limit allows, and the socket is aborted.
- **Reliable 1009.** A message over the size limit made uvicorn close the socket with the
  rest of that message unread, so the kernel answered with a reset that could overtake the
  1009 close frame (lost 1 in 4 tries). Now the server half-closes after the close frame and
  reads (and discards) until the client closes, for ``close_timeout_s`` at most.

``protocol_classes(limits)`` returns the two classes for one server; they share its
per-address counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["ServerLimits", "protocol_classes"]

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
# What uvicorn logs (a WARNING) for every request h11 cannot parse; the guard logs a
# sampled line of its own instead (``_MalformedRequestLines``).
_UVICORN_INVALID_REQUEST = "Invalid HTTP request received."
BODY_RATE_WINDOW_S = 1.0  # a body's rate is judged over windows this long


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    max_connections_per_address: int = 128
    close_timeout_s: float = 5.0
    after_close_messages: int = 64
    # A request body, from the end of its headers: whole within this, and never slower
    # than the rate over a window of BODY_RATE_WINDOW_S while the server reads.
    body_timeout_s: float = 10.0
    min_body_rate_bytes_per_s: float = 512.0
    # An address whose request bodies were cut for coming too slowly this many times within
    # slow_request_window_s gets no new connection until the oldest of those cuts is that
    # old: a client that reconnects at once made every cut a fresh request to parse and
    # answer (issue 17's trickled bodies). Header timeouts do not count: a browser's unused
    # preconnected socket ends that way. 0: no such penalty.
    max_slow_requests_per_address: int = 16
    slow_request_window_s: float = 30.0


class _MalformedRequestLines(logging.Filter):
    """Drops uvicorn's own line for a request h11 refused: the guard logs a sampled one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _UVICORN_INVALID_REQUEST


PARSE_SLICE_BYTES = 16 * 1024  # bytes handed to the WebSocket parser at once
MAX_TRACKED_SLOW_ADDRESSES = 4096  # addresses whose slow requests are remembered, newest
QUEUED_MESSAGES = 2  # parse on only while the app has fewer messages waiting


class _Guard:
    """Per-server state: open connections per client address, and sampled logging."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self._by_address: Counter[str] = Counter()
        self._address_of: dict[int, str] = {}  # id(transport) -> address
        self._next_log_s = 0.0
        self._suppressed = 0
        # address -> when its last requests were cut for slowness (at most the maximum)
        self._slow_cuts: OrderedDict[str, deque[float]] = OrderedDict()

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection; False when its address already holds the maximum, or
        was cut for slow requests too often lately. A transport already counted (an HTTP
        connection upgraded to WebSocket) is let be."""
        key = id(transport)
        if key in self._address_of:
            return True
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if self._is_penalized(address):
            self.log(f"dropped a connection from {address}: too many slow requests lately")
            return False
        if self._by_address[address] >= self.limits.max_connections_per_address:
            self.log(f"dropped a connection from {address}: it already holds the maximum")
            return False
        self._by_address[address] += 1
        self._address_of[key] = address
        return True

    def release(self, transport: asyncio.BaseTransport | None) -> None:
        address = self._address_of.pop(id(transport), None)
        if address is not None:
            self._by_address[address] -= 1
            if self._by_address[address] <= 0:
                del self._by_address[address]

    def open_connections(self, address: str) -> int:
        return self._by_address[address]

    def slow_request(self, address: str) -> None:
        """A request body from ``address`` was cut for coming too slowly."""
        most = self.limits.max_slow_requests_per_address
        if most <= 0:
            return
        cuts = self._slow_cuts.get(address)
        if cuts is None:
            cuts = self._slow_cuts[address] = deque(maxlen=most)
            while len(self._slow_cuts) > MAX_TRACKED_SLOW_ADDRESSES:
                self._slow_cuts.popitem(last=False)
        else:
            self._slow_cuts.move_to_end(address)
        cuts.append(asyncio.get_running_loop().time())

    def _is_penalized(self, address: str) -> bool:
        cuts = self._slow_cuts.get(address)
        if cuts is None or len(cuts) < self.limits.max_slow_requests_per_address:
            return False
        age_s = asyncio.get_running_loop().time() - cuts[0]
        return age_s < self.limits.slow_request_window_s

    def log(self, message: str) -> None:
        """At most one line a second: an attack must not become a flood of logs."""
        now_s = asyncio.get_running_loop().time()
        if now_s < self._next_log_s:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} similar lines suppressed)"
            self._suppressed = 0
        self._next_log_s = now_s + 1.0
        log.info("%s", message)


class GuardedH11Protocol(H11Protocol):
    guard: ClassVar[_Guard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_deadline_s = 0.0
        self._timed_cycle: object | None = None  # the request whose body is being timed
        self._window_bytes = 0  # body bytes received in the current rate window
        # The request the guard ended (400, 408): its app is stopped, or never starts.
        self._is_request_ended = False
        self._is_upgraded = False  # the socket went to the WebSocket protocol
        self._app_task: asyncio.Task[None] | None = None
        self._inner_app = self.app
        self.app = self._run_app

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(transport):
            transport.abort()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        self._disarm_body_timer()
        self.guard.release(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._window_bytes += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        # A request whose headers are in and whose body is still coming: time the body.
        sending_body = self.conn.their_state is h11.SEND_BODY and not self._is_upgraded
        is_new = self._body_timer is None or self._timed_cycle is not self.cycle
        if sending_body and is_new and not self.transport.is_closing():
            self._disarm_body_timer()  # a keep-alive's next request: a deadline of its own
            self._timed_cycle = self.cycle
            self._body_deadline_s = self.loop.time() + self.guard.limits.body_timeout_s
            self._window_bytes = 0
            self._arm_body_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request on this connection gets the same deadline

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._is_upgraded = True  # h11 still says SEND_BODY: the socket is not ours now
        self._disarm_header_timer()
        self._disarm_body_timer()
        super().handle_websocket_upgrade(event)

    def send_400_response(self, msg: str) -> None:
        """h11 could not parse the request (a malformed chunk, a bad header): answer 400
        if no answer has started, end the request and log one sampled line."""
        client = self.client[0] if self.client else "unknown"
        self.guard.log(f"refused a malformed request from {client} with 400")
        self._end_request()
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            super().send_400_response(msg)
        else:  # the app's answer is under way: a 400 cannot follow it
            self.transport.close()

    async def _run_app(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """The app, stopped when the guard ends its request (see ``_end_request``)."""
        if self._is_request_ended:
            return
        task = asyncio.current_task()
        self._app_task = task
        try:
            await self._inner_app(scope, receive, send)
        except asyncio.CancelledError:
            if not self._is_request_ended or task is None:
                raise  # a shutdown's cancel, not ours
            task.uncancel()
        finally:
            self._app_task = None

    def _end_request(self) -> None:
        """The connection closes after this answer: the app's sends become no-ops, its
        receives say the client left, and an app still running is cancelled."""
        self._is_request_ended = True
        self._disarm_body_timer()
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if self._app_task is not None and not self._app_task.done():
            self._app_task.cancel()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(
                self.guard.limits.header_timeout_s, self._header_timeout
            )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        # IDLE: the request line and headers are not complete yet (an idle keep-alive
        # connection is uvicorn's own timeout_keep_alive's to close, sooner).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            client = self.client[0] if self.client else "unknown"
            self.guard.log(f"closed a connection from {client}: no complete request headers")
            self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()

    def _arm_body_timer(self) -> None:
        at_s = min(self.loop.time() + BODY_RATE_WINDOW_S, self._body_deadline_s)
        self._body_timer = self.loop.call_at(at_s, self._check_body)

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body(self) -> None:
        self._body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return  # the body is in (or the connection is going): nothing to time
        limits = self.guard.limits
        now_s = self.loop.time()
        window_bytes, self._window_bytes = self._window_bytes, 0
        # While the server does not read (the app has not asked for more, or waits to
        # answer Expect: 100-continue) a slow body is the server's doing, not the client's.
        cycle = self.cycle
        is_reading = not self.flow.read_paused and not (
            cycle is not None and cycle.waiting_for_100_continue
        )
        too_slow = (
            is_reading and window_bytes < limits.min_body_rate_bytes_per_s * BODY_RATE_WINDOW_S
        )
        if now_s < self._body_deadline_s and not too_slow:
            self._arm_body_timer()
            return
        client = self.client[0] if self.client else "unknown"
        why = (
            "too slowly"
            if now_s < self._body_deadline_s
            else f"not within {limits.body_timeout_s:g} s"
        )
        self.guard.log(f"closed a connection from {client}: its request body came {why}")
        self.guard.slow_request(client)
        is_unanswered = self.conn.our_state is h11.SEND_RESPONSE and not (
            cycle is not None and cycle.response_started
        )
        self._end_request()
        if is_unanswered:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    guard: ClassVar[_Guard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = self.guard.limits.close_timeout_s
        self._draining = False
        self._unparsed = bytearray()  # received, not yet handed to the parser
        self._after_close_bytes = 0
        self._after_close_messages = 0
        # A client may be in the middle of its largest message when the node closes.
        self._after_close_limit = (self.config.ws_max_size or 16 * 1024 * 1024) + 64 * 1024

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.guard.admit(transport):  # only when not reached through HTTP upgrade
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self.transport)
        self._unparsed.clear()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return  # the rest of what a failed client sends: read only to be discarded
        if self.close_sent:
            self._after_close(len(data))
            if self.transport.is_closing():
                return
        self._unparsed += data
        self._parse()

    def _parse(self) -> None:
        """Hand received bytes to the parser while the app keeps up; pause reading else."""
        while self._unparsed and not self.transport.is_closing() and not self._draining:
            busy = self.handshake_complete and not self.close_sent
            if busy and self.queue.qsize() >= QUEUED_MESSAGES:
                if not self.read_paused:
                    self.read_paused = True
                    self.transport.pause_reading()
                return
            chunk = bytes(self._unparsed[:PARSE_SLICE_BYTES])
            del self._unparsed[:PARSE_SLICE_BYTES]
            super().data_received(chunk)

    def send_receive_event_to_app(self) -> None:
        if self.close_sent:  # uvicorn drops it; count it, for a client that keeps on
            self._after_close_messages += 1
            if self._after_close_messages > self.guard.limits.after_close_messages:
                self.transport.abort()
        super().send_receive_event_to_app()

    async def receive(self) -> Any:
        message = await super().receive()
        if self._unparsed and self.queue.empty():
            self._parse()
        return message

    def _after_close(self, size: int) -> None:
        """A client that keeps sending after the close frame is cut off, not parsed."""
        self._after_close_bytes += size
        if self._after_close_bytes > self._after_close_limit:
            self.transport.abort()

    def handle_parser_exception(self) -> None:
        # websockets failed the connection (1009 for a message over the limit) and queued
        # its close frame. uvicorn would close the socket now with unread input, making
        # the kernel send a reset that can destroy the close frame on its way.
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": close.code, "reason": close.reason}
        )
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._draining = True
        self._unparsed.clear()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # FIN after the close frame; keep reading
        # The client answers with its own close and FIN (eof_received then closes the
        # transport); one that does not is cut off.
        self._start_close_timer()

    async def send(self, message: ASGISendEvent) -> None:
        is_open = self.handshake_complete and not self.close_sent and not self.disconnected
        if message["type"] == "websocket.close" and is_open and self.initial_response is None:
            self._close_now(message.get("code", 1000), message.get("reason") or "")
            return
        await super().send(message)

    def _close_now(self, code: int, reason: str) -> None:
        """uvicorn's close, without first waiting for a client that may never read."""
        if self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._unparsed.clear()  # sent before our close: moot now, and possibly a flood
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self._start_close_timer()

    def _start_close_timer(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
        # abort, not close: close() would wait for a client that does not read to take
        # the bytes still buffered.
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)


def protocol_classes(
    limits: ServerLimits,
) -> tuple[type[GuardedH11Protocol], type[GuardedWebSocketProtocol]]:
    guard = _Guard(limits)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _MalformedRequestLines) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_MalformedRequestLines())
    http = type("ServerH11Protocol", (GuardedH11Protocol,), {"guard": guard})
    ws = type("ServerWebSocketProtocol", (GuardedWebSocketProtocol,), {"guard": guard})
    return http, ws
