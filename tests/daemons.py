"""Real third-party servers for tests (redis-server, Prometheus): started on 127.0.0.1,
ready when their log says so (an event set by the log reader, not a sleep), stopped after."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence

import pytest

__all__ = ["free_port", "logged_process"]


def free_port() -> int:
    # These servers cannot be handed a bound socket; a port free a moment ago is near enough.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def logged_process(
    argv: Sequence[str], ready_line: str, name: str, timeout_s: float
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Run ``argv`` until the ``with`` ends; yields once a log line contains ``ready_line``
    (a test failure with the log if it never does), with the log lines read so far."""
    process = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ready = threading.Event()
    output: list[str] = []

    def watch() -> None:
        assert process.stdout is not None
        for line in process.stdout:  # also drains the pipe for the server's whole life
            output.append(line)
            if ready_line in line:
                ready.set()

    threading.Thread(target=watch, name=f"{name}-log", daemon=True).start()
    try:
        if not ready.wait(timeout=timeout_s):
            pytest.fail(f"{name} did not become ready:\n{''.join(output)}")
        yield process, output
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
