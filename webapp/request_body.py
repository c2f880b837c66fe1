"""Reading a request body with a ceiling, the one way every POST route of the web app
reads one (heartbeats, sign-in forms, pages' reports and traces): nothing past the ceiling
is buffered, and a declared ``Content-Length`` over it is not read at all."""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["read_bounded"]


async def read_bounded(request: Request, max_bytes: int) -> bytes | None:
    """The body, or None as soon as it is known to be over ``max_bytes``.
    ``ClientDisconnect`` passes to the caller."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)
