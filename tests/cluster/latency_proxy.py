"""A test-only TCP proxy that adds one-way delay and limits bandwidth, so loopback nodes
look near and far, on fast and slow links.

``LatencyProxy(target_port, delay_ms=50).start()`` listens on 127.0.0.1 (port 0; read
``port``) and forwards each connection to ``127.0.0.1:target_port``, holding every chunk
``delay_ms`` in each direction: a ping through it takes about ``2 * delay_ms`` more. The
delay can be changed while it runs (``proxy.delay_ms = 200``); a chunk keeps the delay it
was read with, and chunks leave in the order they came (one queue per direction, each
item with its release time), as on a real link whose latency changes.

``rate_mbit`` (None: unlimited) limits each direction to that many Mbit/s with a token
bucket shared by all connections, as one site uplink: a chunk waits until the bucket has
paid for it, then takes the delay. It can be changed while the proxy runs
(``proxy.rate_mbit = 10``, then ``None`` to lift the limit). A chunk waiting for the bucket
holds back the next read, so the sender's socket fills and its writes stall as on a real
bottleneck (after the kernel's buffers, a few hundred kilobytes on loopback).

``kill()`` stands in for a node dying: every connection is reset (no WebSocket close
frame, as when the kernel cleans up after a SIGKILL) and new ones are refused.

It runs its own event loop on a thread, so tests can put it in front of ``ServerThread``
nodes and drive clients from any loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LatencyProxy", "TokenBucket"]

T = TypeVar("T")
CHUNK_BYTES = 64 * 1024
LIMITED_CHUNK_BYTES = 8 * 1024  # finer steps behind a rate limit: smoother pacing
_EOF = b""


class TokenBucket:
    """Bytes per second with a small burst. ``take`` may run into debt (a chunk larger
    than the burst) and sleeps until the debt is paid, so takers are served in turn."""

    def __init__(self, rate_mbit: float | None = None, burst_bytes: int = 16 * 1024) -> None:
        self.rate_mbit = rate_mbit
        self.burst_bytes = burst_bytes
        self._tokens = float(burst_bytes)
        self._last_s = time.monotonic()

    def _refill(self, now_s: float) -> None:
        if self.rate_mbit is None:
            self._tokens = float(self.burst_bytes)
        else:
            rate = self.rate_mbit * 1e6 / 8
            self._tokens = min(self.burst_bytes, self._tokens + (now_s - self._last_s) * rate)
        self._last_s = now_s

    def wait_s(self, size_bytes: int, now_s: float) -> float:
        """Charge ``size_bytes``; how long the caller must wait before sending them."""
        self._refill(now_s)
        if self.rate_mbit is None:
            return 0.0
        self._tokens -= size_bytes
        return max(0.0, -self._tokens / (self.rate_mbit * 1e6 / 8))

    async def take(self, size_bytes: int) -> None:
        wait_s = self.wait_s(size_bytes, time.monotonic())
        if wait_s > 0:
            await asyncio.sleep(wait_s)  # this is the bandwidth being simulated


class LatencyProxy:
    def __init__(
        self,
        target_port: int,
        delay_ms: float = 0.0,
        host: str = "127.0.0.1",
        rate_mbit: float | None = None,
    ) -> None:
        self.target_port = target_port
        self.delay_ms = delay_ms
        self.host = host
        self._up = TokenBucket(rate_mbit)  # client -> node
        self._down = TokenBucket(rate_mbit)  # node -> client
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def rate_mbit(self) -> float | None:
        return self._up.rate_mbit

    @rate_mbit.setter
    def rate_mbit(self, value: float | None) -> None:
        self._up.rate_mbit = self._down.rate_mbit = value

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def start(self) -> LatencyProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, self.host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def kill(self) -> None:
        """Reset every connection and stop listening: from outside, the node is gone."""
        if self._server is not None:
            self._call(self._kill())

    def stop(self) -> None:
        if self._thread.is_alive():
            self.kill()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _kill(self) -> None:
        assert self._server is not None
        self._server.close()
        self._server = None
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            node_r, node_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        for writer in (client_w, node_w):
            self._writers.add(writer)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pumps = [
            asyncio.create_task(self._pipe(client_r, node_w, self._up)),
            asyncio.create_task(self._pipe(node_r, client_w, self._down)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.gather(*pumps)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.difference_update(pumps)
            for writer in (client_w, node_w):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: TokenBucket
    ) -> None:
        """Read chunks as the bucket allows; a second task writes each at its release time."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._release(queue, writer))
        self._tasks.add(sender)
        try:
            while True:
                limited = bucket.rate_mbit is not None
                chunk = await reader.read(LIMITED_CHUNK_BYTES if limited else CHUNK_BYTES)
                await bucket.take(len(chunk))
                queue.put_nowait((time.monotonic() + self.delay_ms / 1000, chunk))
                if chunk == _EOF:
                    break
            await sender
        finally:
            self._tasks.discard(sender)
            sender.cancel()

    async def _release(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        while True:
            release_s, chunk = await queue.get()
            wait_s = release_s - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)  # this is the delay being simulated
            if chunk == _EOF:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
