"""Security headers on every HTTP response: one middleware, one table.

- Cross-origin isolation (COOP/COEP), so onnxruntime-web may use Wasm threads
  (SharedArrayBuffer), and CORP so our own files may load under COEP.
- A Content-Security-Policy that lets the page run Pyodide and onnxruntime-web and nothing
  else: scripts and workers only from this origin, WebAssembly compiled from them
  (``'wasm-unsafe-eval'``, not ``'unsafe-eval'``), no inline script, no plugins, no framing.
  ``connect-src`` allows ``ws:``/``wss:`` anywhere: the page streams to inference nodes on
  other hosts and ports, and which ones is the registry's live list, not something a header
  fixed at start-up could name. ``https:`` too, for the same reason: WebTransport to a
  node (issue 16) is an https:// URL under ``connect-src``; this gives a page script no
  reach that ``wss:`` anywhere did not already give it.
- ``X-Content-Type-Options: nosniff`` (every file is served with its real type),
  ``X-Frame-Options: DENY`` for browsers without ``frame-ancestors``, ``Referrer-Policy:
  no-referrer``, and a Permissions-Policy that gives the camera to this origin only.
- ``Cache-Control``: a response that does not set its own gets ``no-store``. Routes say
  otherwise where it helps: vendor files ``immutable`` (their URL carries the npm version),
  the page, its scripts and the model ``no-cache`` (revalidated, so a deploy is seen at once).

- ``Strict-Transport-Security`` on responses served over https (directly, or through a
  trusted TLS-terminating proxy: ``forwarded.py``), so a browser never tries http again.

A header a route sets itself is kept (``setdefault``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "HSTS",
    "ISOLATION_HEADERS",
    "NO_CACHE",
    "NO_STORE",
    "NO_STORE_HEADERS",
    "SECURITY_HEADERS",
    "SecurityHeaders",
]

NO_STORE = "no-store"
NO_CACHE = "no-cache"
# what a route that must never be cached (sign-in pages, tokens, heartbeat answers) says
# itself, so it holds without the middleware too; read-only, as every response shares it
NO_STORE_HEADERS: Mapping[str, str] = MappingProxyType({"Cache-Control": NO_STORE})

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self'",
        "connect-src 'self' ws: wss: https:",
        "img-src 'self' data: blob:",  # data: the empty favicon; blob: a chosen picture
        "media-src 'self' blob:",  # a chosen video file
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    **ISOLATION_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), payment=(), usb=()",
    "Cache-Control": NO_STORE,
}


# Two years, the value hstspreload.org asks for; subdomains are not this app's to decide.
HSTS = "max-age=63072000"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if scope.get("scheme") == "https":
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
