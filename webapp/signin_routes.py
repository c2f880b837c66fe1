"""Sign-in and token routes, and the gate in front of the page.

    GET  /login           the sign-in form (EDGESIGHT_AUTH=users)
    POST /login           user + password -> session cookie, 303 to ``next``; 429 when
                          rate-limited
    GET  /logout          a one-button page that signs out (POST), for a typed-in URL
    POST /logout          ends the session on record (every instance sharing the store)
                          and clears the cookie; 303 to the sign-in form
    POST /api/token       a stream token for the signed-in page (401 without sign-in),
                          and one per registered node it names (?nodes=, node_tokens.py)
    GET  /api/token-key   the public key nodes verify tokens with (PEM)

``SignInGate`` guards the page, its config and the node list: without sign-in a page
request is redirected to /login (or told to use its kiosk link), an API request gets 401.
A page opened with ``?key=<kiosk key>`` gets a session cookie and is redirected to the
same URL without the key, so the key does not stay in the address bar or history; the
access log never shows it (``AccessLogRedaction``). Wrong keys are limited per address
(``KioskKeyLimiter``) and logged at most twice per address and window.
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

from .attempts import KioskKeyLimiter, Limited, LoginLimiter, Reservation
from .forwarded import client_address
from .headers import NO_STORE_HEADERS
from .node_tokens import NodeTokens
from .request_body import read_bounded
from .sessions import SessionStoreUnavailable
from .signin import SESSION_COOKIE, AuthMode, Door
from .tokens import TokenSigner

__all__ = ["PROTECTED_PATHS", "SignInGate", "signin_routes"]

log = logging.getLogger(__name__)

PROTECTED_PAGES = ("/", "/kiosk")
PROTECTED_API = ("/api/token", "/api/nodes")
# The kiosk's own picture or video (EDGESIGHT_KIOSK_SOURCE) is for signed-in kiosks only.
PROTECTED_FILES = ("/kiosk/source",)
PROTECTED_PATHS = PROTECTED_PAGES + PROTECTED_API + PROTECTED_FILES
MAX_FORM_FIELD_CHARS = 1024
MAX_FORM_BYTES = 8 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


_address = client_address


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

    def __init__(
        self,
        app: ASGIApp,
        door: Door,
        session_max_age_s: int,
        kiosk_limiter: KioskKeyLimiter | None = None,
    ) -> None:
        self.app = app
        self.door = door
        self.session_max_age_s = session_max_age_s
        self.kiosk_limiter = kiosk_limiter or KioskKeyLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not self.door.is_required
            or path not in PROTECTED_PATHS
            # node heartbeats carry the registry secret; only the listing (GET, and HEAD,
            # which answers like GET without the body) is guarded
            or (path == "/api/nodes" and scope.get("method") not in ("GET", "HEAD"))
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        key = request.query_params.get("key")
        try:
            if key and path in PROTECTED_PAGES and self.door.has(AuthMode.KIOSK_KEY):
                response = await self._kiosk_sign_in(request, key)
                await response(scope, receive, send)
                return
            identity = await self.door.identity(request)
        except SessionStoreUnavailable:
            response = PlainTextResponse(
                "Sign-in cannot be checked right now (the session store does not answer); "
                "try again shortly.",
                status_code=503,
                headers={**NO_STORE_HEADERS, "Retry-After": "5"},
            )
            await response(scope, receive, send)
            return
        if identity is not None:
            await self.app(scope, receive, send)
            return
        if path in PROTECTED_API or path in PROTECTED_FILES:
            response = JSONResponse(
                {"error": "sign in first: this web app requires sign-in (EDGESIGHT_AUTH)"},
                status_code=401,
                headers=NO_STORE_HEADERS,
            )
        elif self.door.has(AuthMode.USERS):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(
                "/login?" + urlencode({"next": target}), status_code=303, headers=NO_STORE_HEADERS
            )
        else:
            response = PlainTextResponse(
                "This page needs sign-in: open it with its kiosk link (?key=...) or through "
                "the signing-in proxy.",
                status_code=401,
                headers=NO_STORE_HEADERS,
            )
        await response(scope, receive, send)

    async def _kiosk_sign_in(self, request: Request, key: str) -> Response:
        address = _address(request)
        try:
            reservation = self.kiosk_limiter.reserve_key(address)
        except Limited as limited:
            return PlainTextResponse(
                "Too many wrong kiosk keys from this address; try again later.",
                status_code=429,
                headers={**NO_STORE_HEADERS, "Retry-After": str(int(limited.retry_after_s) + 1)},
            )
        kiosk = self.door.kiosk_name(key)
        if kiosk is None:
            self._log_wrong_key(address, reservation)
            return PlainTextResponse(
                "This kiosk key is not known to the web app (replaced, or mistyped).",
                status_code=401,
                headers=NO_STORE_HEADERS,
            )
        self.kiosk_limiter.give_back(reservation)
        identity = f"kiosk:{kiosk}"
        cookie = await self.door.start_session(identity, "kiosk")
        log.info("%s signed in from %s with its kiosk key", identity, address)
        response = RedirectResponse(
            _without_key(request), status_code=303, headers=NO_STORE_HEADERS
        )
        set_session_cookie(response, request, cookie, self.session_max_age_s)
        return response

    def _log_wrong_key(self, address: str, reservation: Reservation) -> None:
        # Sampled: the first wrong key from an address in a window, and the one that
        # reaches the limit; the refusals in between and after are not logged one by one.
        count, limit = reservation.counts[0], self.kiosk_limiter.per_address
        if count == 1:
            log.warning("refused a kiosk key from %s: unknown key", address)
        elif count == limit:
            log.warning(
                "refused %d unknown kiosk keys from %s; it is refused for %.0f s",
                count,
                address,
                self.kiosk_limiter.window_s,
            )


async def _small_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form's fields (first value each), or None for anything larger than a
    sign-in form could be or of another type."""
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
        return None
    body = await read_bounded(request, MAX_FORM_BYTES)
    if body is None:
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


def _log_failure(limiter: LoginLimiter, reservation: Reservation, user: str, address: str) -> None:
    """One line per wrong password (each counts against a limit, so an address gets at most
    ``per_address`` of them a window), and one more when a limit is reached."""
    shown = user[:64]
    log.warning("sign-in for %r from %s: wrong user name or password", shown, address)
    limits = (limiter.per_user_address, limiter.per_address, limiter.per_user)
    reached = [
        what
        for what, count, limit in zip(
            ("user and address", "address", "user"), reservation.counts, limits, strict=True
        )
        if count == limit
    ]
    if reached:
        log.warning(
            "sign-in for %r from %s: limit per %s reached; refused for %.0f s",
            shown,
            address,
            " and per ".join(reached),
            limiter.window_s,
        )


def signin_routes(
    door: Door,
    signer: TokenSigner,
    limiter: LoginLimiter,
    templates: Jinja2Templates,
    session_max_age_s: int,
    node_tokens: NodeTokens | None = None,
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
            request, "login.html", context, status_code=status_code, headers=NO_STORE_HEADERS
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
        try:
            # Reserved before the hash: parallel guesses cannot all pass a check that
            # counts only the failures already finished (attempts.py).
            reservation = limiter.reserve_sign_in(address, user)
        except Limited as limited:
            # not logged one by one: the line when the limit was reached said it
            response = _form(
                request,
                f"Too many failed sign-ins. Try again in {limited.retry_after_s:.0f} s.",
                status_code=429,
                user=user,
            )
            response.headers["Retry-After"] = str(int(limited.retry_after_s) + 1)
            return response
        # scrypt takes tens of milliseconds by design: not on the event loop
        is_known = bool(user) and await asyncio.to_thread(door.users.check_password, user, password)
        if not is_known:
            _log_failure(limiter, reservation, user, address)
            return _form(request, "Wrong user name or password.", status_code=401, user=user)
        limiter.signed_in(reservation)
        try:
            await door.end_session(request)  # a session this browser held before is over
            cookie = await door.start_session(user, "user")
        except SessionStoreUnavailable:
            return _form(
                request,
                "Signing in is not possible right now (the session store does not answer).",
                status_code=503,
                user=user,
            )
        log.info("%s signed in from %s", user, address)
        redirect = RedirectResponse(target, status_code=303, headers=NO_STORE_HEADERS)
        set_session_cookie(redirect, request, cookie, session_max_age_s)
        return redirect

    async def logout_form(request: Request) -> Response:
        # A typed-in or bookmarked /logout: a GET must not change state (a link or an
        # <img> on another site could sign people out), so it shows a button that POSTs.
        return templates.TemplateResponse(request, "logout.html", {}, headers=NO_STORE_HEADERS)

    async def logout(request: Request) -> Response:
        try:
            ended = await door.end_session(request)
        except SessionStoreUnavailable:
            return PlainTextResponse(
                "Signing out is not possible right now (the session store does not answer); "
                "try again shortly.",
                status_code=503,
                headers={**NO_STORE_HEADERS, "Retry-After": "5"},
            )
        if ended is not None:
            log.info("%s signed out from %s", ended.identity, _address(request))
        target = "/login" if door.has(AuthMode.USERS) else "/"
        response = RedirectResponse(target, 303, headers=NO_STORE_HEADERS)
        response.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, secure=_is_https(request), samesite="strict"
        )
        return response

    async def token(request: Request) -> Response:
        try:
            identity = await door.identity(request)  # the gate let only known ones through
        except SessionStoreUnavailable:
            identity = None
        if identity is None:
            return JSONResponse(
                {"error": "sign in first"}, status_code=401, headers=NO_STORE_HEADERS
            )
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
                headers=NO_STORE_HEADERS,
            )
        issued = signer.issue(identity, origin)
        answer: dict[str, Any] = {**issued.as_json()}
        if node_tokens is not None:  # issue 17: a token per node, each good there only
            wanted = request.query_params.get("nodes")
            answer["node_tokens"] = await node_tokens.issue(identity, origin, wanted)
        return JSONResponse(answer, headers=NO_STORE_HEADERS)

    async def token_key(request: Request) -> Response:
        return Response(
            signer.public_key_pem(),
            media_type="application/x-pem-file",
            headers={"Cache-Control": "no-cache"},
        )

    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout_form, methods=["GET"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/token", token, methods=["POST"]),
        Route("/api/token-key", token_key, methods=["GET"]),
    ]
