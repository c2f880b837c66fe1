"""Sockets made inside a network namespace by a process that stays outside it.

``setns(2)`` moves only the calling thread; a socket keeps the namespace it was made in
for its whole life, wherever it is used afterwards. So ``inside(name)`` switches this
thread into the namespace for the ``with`` body (a listener bound there, a client socket
connected from there) and back out, and the sockets go on working from any thread."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """This thread in ``namespace`` (made by ``ip netns add``) until the ``with`` ends."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / namespace, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
