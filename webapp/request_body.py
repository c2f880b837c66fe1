"""Reading a request body with a ceiling, the one way every POST route of the web app
reads one (heartbeats, sign-in forms, pages' reports and traces): nothing past the ceiling
is buffered. A route may also refuse a body on its declared ``Content-Length`` alone
(``declares_over``); the others read until the ceiling, so that a slow body is the guard's
to cut off (edgesight/guard.py: 408), as before."""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["declares_over", "read_bounded"]


def declares_over(request: Request, max_bytes: int) -> bool:
    """True when the request's ``Content-Length`` says its body is over ``max_bytes``."""
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > max_bytes


async def read_bounded(request: Request, max_bytes: int) -> bytes | None:
    """The body, or None as soon as more than ``max_bytes`` came.
    ``ClientDisconnect`` passes to the caller."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)
