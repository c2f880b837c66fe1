"""Starting and stopping the CLI's servers cleanly (issue 8: SIGINT/SIGTERM printed
tracebacks, and a web app that could not reach Redis at start left "Task exception was
never retrieved" behind a multi-line traceback).

- ``Server`` is uvicorn's server without its own signal handling (uvicorn re-raises the
  signal after shutting down, which ends in a KeyboardInterrupt traceback), and with a
  startup failure kept as a value instead of a ``SystemExit`` thrown out of a task.
- ``QuietStartup`` wraps an ASGI app so that an exception in its lifespan startup is
  remembered and reported as its one-line message, not as uvicorn's logged traceback.
- ``run_servers`` runs several servers, stops them all on SIGINT, SIGTERM or SIGHUP (a
  second signal forces the exit) or when any one stops, and raises ``StartupFailed`` with
  the first startup error. SIGHUP (a closed terminal, an SSH session that ends) used to kill
  a node outright, leaving its registry entry to expire (issue 17): it now stops the
  servers like SIGTERM, so a node deregisters and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator, MutableMapping, Sequence
from typing import Any

import uvicorn

__all__ = ["STOP_SIGNALS", "QuietStartup", "Server", "StartupFailed", "run_servers"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Each stops the servers gracefully (the app's shutdown runs: a node deregisters).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StartupFailed(Exception):
    """A server's app could not start; the message is the app's own, one line."""


class QuietStartup:
    """ASGI wrapper: a failed lifespan startup is logged by uvicorn as one line and its
    exception kept in ``error``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_quietly(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                # Sent from the app's except block: the exception is the one in flight.
                self.error = sys.exc_info()[1] or self.error
                # uvicorn logs this text: the message, not the app's formatted traceback
                message = {**message, "message": _one_line(self.error)}
            await send(message)

        try:
            await self.app(scope, receive, send_quietly)
        except BaseException as exc:
            self.error = self.error or exc
            raise


def _one_line(error: BaseException | None) -> str:
    if error is None:
        return "the app failed to start"
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: QuietStartup) -> None:
        super().__init__(config)
        self.app = app
        self.failed_to_start = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # run_servers handles the signals, for all servers at once

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        except SystemExit:  # uvicorn's way of saying the lifespan startup failed
            self.failed_to_start = True
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        # A second signal (force_exit) skips waiting for clients, and in uvicorn the app's
        # own shutdown too, whose task then dies with a logged CancelledError traceback.
        # The app's shutdown (deregistering from the registry) is quick: run it anyway.
        done = getattr(self.lifespan, "shutdown_event", None)
        if self.force_exit and done is not None and not done.is_set():
            await self.lifespan.shutdown()

    @property
    def startup_error(self) -> str | None:
        if not self.failed_to_start:
            return None
        return _one_line(self.app.error)


async def run_servers(runs: Sequence[tuple[Server, Coroutine[Any, Any, None]]]) -> None:
    """Run each ``(server, its serve() coroutine)`` until a signal or until any stops."""
    loop = asyncio.get_running_loop()
    servers = [server for server, _ in runs]

    def stop() -> None:
        for server in servers:
            if server.should_exit:
                server.force_exit = True  # a second Ctrl+C: do not wait for connections
            server.should_exit = True

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    try:
        tasks = [asyncio.create_task(run) for _, run in runs]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop_others = [s for s in servers if not s.should_exit]
        for server in stop_others:
            server.should_exit = True
        await asyncio.gather(*tasks)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    for server in servers:
        if server.startup_error is not None:
            raise StartupFailed(server.startup_error)
