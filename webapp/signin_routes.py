"""Sign-in and token routes, and the gate in front of the page.

    GET  /login           the sign-in form (EDGESIGHT_AUTH=users)
    POST /login           user + password -> session cookie, 303 to ``next``; 429 when
                          rate-limited
    POST /logout          clears the session cookie
    POST /api/token       a stream token for the signed-in page (401 without sign-in)
    GET  /api/token-key   the public key nodes verify tokens with (PEM)

``SignInGate`` guards the page, its config and the node list: without sign-in a page
request is redirected to /login (or told to use its kiosk link), an API request gets 401.
A page opened with ``?key=<kiosk key>`` gets a session cookie and is redirected to the
same URL without the key, so the key does not stay in the address bar or history.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from .signin import SESSION_COOKIE, AuthMode, Door, LoginLimiter
from .tokens import TokenSigner

__all__ = ["PROTECTED_PATHS", "SignInGate", "signin_routes"]

log = logging.getLogger(__name__)

PROTECTED_PAGES = ("/", "/kiosk")
PROTECTED_API = ("/api/token", "/api/nodes")
PROTECTED_PATHS = PROTECTED_PAGES + PROTECTED_API
NO_STORE = {"Cache-Control": "no-store"}
MAX_FORM_FIELD_CHARS = 1024
MAX_FORM_BYTES = 8 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


def _address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def _is_https(conn: HTTPConnection) -> bool:
    return conn.url.scheme in ("https", "wss")


def set_session_cookie(
    response: Response, conn: HTTPConnection, value: str, max_age_s: int
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age_s,
        path="/",
        httponly=True,
        secure=_is_https(conn),
        samesite="strict",
    )


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _without_key(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


class SignInGate:
    """ASGI middleware: lets requests for protected paths through only with an identity."""

    def __init__(self, app: ASGIApp, door: Door, session_max_age_s: int) -> None:
        self.app = app
        self.door = door
        self.session_max_age_s = session_max_age_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not self.door.is_required
            or path not in PROTECTED_PATHS
            # node heartbeats carry the registry secret; only the listing is guarded
            or (path == "/api/nodes" and scope.get("method") != "GET")
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        key = request.query_params.get("key")
        if key and path in PROTECTED_PAGES and self.door.has(AuthMode.KIOSK_KEY):
            response = self._kiosk_sign_in(request, key)
            await response(scope, receive, send)
            return
        if self.door.identity(request) is not None:
            await self.app(scope, receive, send)
            return
        if path in PROTECTED_API:
            response = JSONResponse(
                {"error": "sign in first: this web app requires sign-in (EDGESIGHT_AUTH)"},
                status_code=401,
                headers=NO_STORE,
            )
        elif self.door.has(AuthMode.USERS):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(
                "/login?" + urlencode({"next": target}), status_code=303, headers=NO_STORE
            )
        else:
            response = PlainTextResponse(
                "This page needs sign-in: open it with its kiosk link (?key=...) or through "
                "the signing-in proxy.",
                status_code=401,
                headers=NO_STORE,
            )
        await response(scope, receive, send)

    def _kiosk_sign_in(self, request: Request, key: str) -> Response:
        found = self.door.kiosk_session(key)
        if found is None:
            log.warning("refused a kiosk key from %s: unknown key", _address(request))
            return PlainTextResponse(
                "This kiosk key is not known to the web app (replaced, or mistyped).",
                status_code=401,
                headers=NO_STORE,
            )
        identity, cookie = found
        log.info("%s signed in from %s with its kiosk key", identity, _address(request))
        response = RedirectResponse(_without_key(request), status_code=303, headers=NO_STORE)
        set_session_cookie(response, request, cookie, self.session_max_age_s)
        return response


async def _small_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form's fields (first value each), or None for anything larger than a
    sign-in form could be or of another type."""
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _page_origin(request: Request) -> str | None:
    """The origin the token is for: the page's Origin header, which must name this web app
    (host and port; the scheme may differ behind a TLS-terminating proxy). None: refuse."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is None:
        return f"{request.url.scheme}://{host}" if host else None
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
        return None
    return origin


def signin_routes(
    door: Door,
    signer: TokenSigner,
    limiter: LoginLimiter,
    templates: Jinja2Templates,
    session_max_age_s: int,
) -> list[Route]:
    async def login_form(request: Request) -> Response:
        if not door.has(AuthMode.USERS):
            return PlainTextResponse(
                "Sign-in with a password is not enabled on this web app.", status_code=404
            )
        return _form(request, "", status_code=200)

    def _form(request: Request, problem: str, status_code: int, user: str = "") -> HTMLResponse:
        context: dict[str, Any] = {
            "problem": problem,
            "user": user,
            "next": _safe_next(request.query_params.get("next")),
        }
        return templates.TemplateResponse(
            request, "login.html", context, status_code=status_code, headers=NO_STORE
        )

    async def login(request: Request) -> Response:
        if not door.has(AuthMode.USERS):
            return PlainTextResponse("Sign-in with a password is not enabled.", status_code=404)
        form = await _small_form(request)
        if form is None:
            return PlainTextResponse(
                f"expected a urlencoded sign-in form of at most {MAX_FORM_BYTES} bytes",
                status_code=400,
            )
        user = form.get("user", "")[:MAX_FORM_FIELD_CHARS].strip()
        password = form.get("password", "")[:MAX_FORM_FIELD_CHARS]
        target = _safe_next(form.get("next", "/"))
        address = _address(request)
        wait_s = limiter.retry_after_s(address, user)
        if wait_s > 0:
            log.warning("sign-in for %r from %s: rate-limited", user, address)
            response = _form(
                request,
                f"Too many failed sign-ins. Try again in {wait_s:.0f} s.",
                status_code=429,
                user=user,
            )
            response.headers["Retry-After"] = str(int(wait_s) + 1)
            return response
        # scrypt takes tens of milliseconds by design: not on the event loop
        is_known = bool(user) and await asyncio.to_thread(door.users.check_password, user, password)
        if not is_known:
            limiter.failed(address, user)
            log.warning("sign-in for %r from %s: wrong user name or password", user, address)
            return _form(request, "Wrong user name or password.", status_code=401, user=user)
        limiter.succeeded(user)
        log.info("%s signed in from %s", user, address)
        redirect = RedirectResponse(target, status_code=303, headers=NO_STORE)
        set_session_cookie(redirect, request, door.sessions.encode(user, "user"), session_max_age_s)
        return redirect

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login" if door.has(AuthMode.USERS) else "/", 303)
        response.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, secure=_is_https(request), samesite="strict"
        )
        return response

    async def token(request: Request) -> Response:
        identity = door.identity(request)  # the gate let only known identities through
        if identity is None:
            return JSONResponse({"error": "sign in first"}, status_code=401, headers=NO_STORE)
        origin = _page_origin(request)
        if origin is None:
            log.warning(
                "refused a token to %s: Origin %r is not this web app",
                _address(request),
                request.headers.get("origin"),
            )
            return JSONResponse(
                {"error": "tokens are issued only to this web app's own pages"},
                status_code=403,
                headers=NO_STORE,
            )
        issued = signer.issue(identity, origin)
        return JSONResponse(issued.as_json(), headers=NO_STORE)

    async def token_key(request: Request) -> Response:
        return Response(
            signer.public_key_pem(),
            media_type="application/x-pem-file",
            headers={"Cache-Control": "no-cache"},
        )

    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/token", token, methods=["POST"]),
        Route("/api/token-key", token_key, methods=["GET"]),
    ]
