"""The door to the page: who is asking, and whether they may have the page and tokens.

Modes (``EDGESIGHT_AUTH``, several may be combined with commas):

    none          everyone is "anonymous" (the default; said loudly at start when the web
                  app listens beyond loopback)
    users         people sign in at /login with a password from the users file (scrypt)
    kiosk-key     a kiosk opens the page once with ``?key=<its access key>`` (or sends
                  ``X-Edgesight-Key``); it gets the same session cookie as a person
    proxy-header  an authenticating reverse proxy names the user in a header; trusted only
                  from the configured proxy addresses

A signed-in browser carries a session cookie: ``<payload>.<HMAC-SHA256>``, HttpOnly,
SameSite=Strict, Secure on https. The cookie names a session on record in the session
store (``sessions.py``): signing out ends it on every web app instance sharing the store.
Failed sign-ins and wrong kiosk keys are rate-limited (``attempts.py``).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from gpu_backend.access import ANONYMOUS

from .forwarded import Network, is_in, parse_networks, peer_address
from .sessions import SessionStore
from .users import Users

__all__ = [
    "SESSION_COOKIE",
    "AuthMode",
    "Door",
    "Session",
    "SessionCodec",
    "parse_networks",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "edgesight_session"
KIOSK_KEY_HEADER = "x-edgesight-key"


class AuthMode(enum.Enum):
    NONE = "none"
    USERS = "users"
    KIOSK_KEY = "kiosk-key"
    PROXY_HEADER = "proxy-header"


@dataclass(frozen=True)
class Session:
    identity: str
    kind: str  # "user" | "kiosk"
    expires_s: float
    sid: str  # its id in the session store
    key_tag: str = ""  # a kiosk's: which of its keys signed it in (replaced key: out)


SID_BYTES = 16


class SessionCodec:
    """Session cookie values: base64url JSON payload, a dot, base64url HMAC-SHA256."""

    def __init__(
        self, secret: bytes, lifetime_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret
        self.lifetime_s = lifetime_s
        self._clock = clock

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def encode(self, identity: str, kind: str, key_tag: str = "") -> tuple[str, Session]:
        """A new session (with a fresh random id) and its cookie value."""
        session = Session(
            identity,
            kind,
            float(int(self._clock() + self.lifetime_s)),
            secrets.token_urlsafe(SID_BYTES),
            key_tag,
        )
        claims = {"sub": identity, "kind": kind, "exp": int(session.expires_s), "sid": session.sid}
        if key_tag:
            claims["kt"] = key_tag
        body = json.dumps(claims, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(body).rstrip(b"=")
        mac = base64.urlsafe_b64encode(self._mac(payload)).rstrip(b"=")
        return (payload + b"." + mac).decode("ascii"), session

    def decode(self, value: str) -> Session | None:
        """The session in a cookie value, or None for a forged, expired or garbled one."""
        payload, _, mac = value.encode("ascii", "replace").partition(b".")
        try:
            given = base64.urlsafe_b64decode(mac + b"=" * (-len(mac) % 4))
            if not hmac.compare_digest(given, self._mac(payload)):
                return None
            data = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            session = Session(
                str(data["sub"]),
                str(data["kind"]),
                float(data["exp"]),
                str(data["sid"]),
                str(data.get("kt", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_s > self._clock() else None


class Door:
    """Decides who a request comes from (None: nobody the web app knows).

    Raises ``SessionStoreUnavailable`` when a session cookie cannot be checked."""

    def __init__(
        self,
        modes: Iterable[AuthMode],
        users: Users,
        sessions: SessionCodec,
        store: SessionStore,
        *,
        proxy_header: str = "X-Forwarded-User",
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self.modes = frozenset(modes) - {AuthMode.NONE}
        self.users = users
        self.sessions = sessions
        self.store = store
        self.proxy_header = proxy_header.lower()
        self.trusted_proxies = trusted_proxies
        self._next_warning_s = 0.0
        self._suppressed = 0

    @property
    def is_required(self) -> bool:
        return bool(self.modes)

    def has(self, mode: AuthMode) -> bool:
        return mode in self.modes

    async def identity(self, conn: HTTPConnection) -> str | None:
        if not self.is_required:
            return ANONYMOUS
        if self.has(AuthMode.PROXY_HEADER):
            user = self.proxy_user(conn)
            if user:
                return user
        if self.has(AuthMode.KIOSK_KEY):
            key = conn.headers.get(KIOSK_KEY_HEADER)
            if key:
                kiosk = self.users.kiosk_for_key(key)
                if kiosk:
                    return f"kiosk:{kiosk}"
        session = await self.session(conn)
        return session.identity if session is not None else None

    async def session(self, conn: HTTPConnection) -> Session | None:
        """The live session the request's cookie names, if any."""
        cookie = conn.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        session = self.sessions.decode(cookie)
        if session is None or not self._session_allowed(session):
            return None
        return session if await self.store.is_live(session.sid) else None

    async def start_session(self, identity: str, kind: str) -> str:
        """A new session on record; returns its cookie value."""
        key_tag = self._key_tag(identity.removeprefix("kiosk:")) if kind == "kiosk" else ""
        value, session = self.sessions.encode(identity, kind, key_tag)
        await self.store.add(session.sid, self.sessions.lifetime_s)
        return value

    async def end_session(self, conn: HTTPConnection) -> Session | None:
        """Ends the request's session everywhere; the session that ended, if any."""
        cookie = conn.cookies.get(SESSION_COOKIE)
        session = self.sessions.decode(cookie) if cookie else None
        if session is None or not await self.store.end(session.sid):
            return None
        return session

    def _session_allowed(self, session: Session) -> bool:
        # A session outlives neither its mode nor its account: a user removed from the
        # file (or a kiosk whose key was replaced) is out at their next request.
        if session.kind == "user":
            return self.has(AuthMode.USERS) and session.identity in self.users.users
        if session.kind == "kiosk":
            name = session.identity.removeprefix("kiosk:")
            return (
                self.has(AuthMode.KIOSK_KEY)
                and name in self.users.kiosks
                and hmac.compare_digest(session.key_tag, self._key_tag(name))
            )
        return False  # no other kind is issued: the proxy names its user on every request

    def proxy_user(self, conn: HTTPConnection) -> str | None:
        value = conn.headers.get(self.proxy_header)
        if not value:
            return None
        # The TCP peer, not a forwarded address: X-Forwarded-For is the client's to write.
        address = peer_address(conn)
        if not is_in(address, self.trusted_proxies):
            self._warn_untrusted(address)
            return None
        return value.strip()[:128] or None

    def _key_tag(self, kiosk: str) -> str:
        """Names the kiosk's current key without revealing anything usable about it."""
        stored = self.users.kiosks.get(kiosk, "")
        return hashlib.sha256(b"kiosk key tag\0" + stored.encode()).hexdigest()[:16]

    def _warn_untrusted(self, address: str) -> None:
        # At most one line a second: a flood of spoofed headers must not flood the log.
        now_s = time.monotonic()
        if now_s < self._next_warning_s:
            self._suppressed += 1
            return
        self._next_warning_s = now_s + 1.0
        suppressed, self._suppressed = self._suppressed, 0
        log.warning(
            "ignored %s from %s: not a trusted proxy (EDGESIGHT_TRUSTED_PROXIES)%s",
            self.proxy_header,
            address or "an unknown address",
            f" ({suppressed} similar lines suppressed)" if suppressed else "",
        )

    def kiosk_name(self, key: str) -> str | None:
        """The kiosk a key belongs to, or None (also when kiosk keys are off)."""
        if not self.has(AuthMode.KIOSK_KEY):
            return None
        return self.users.kiosk_for_key(key)
