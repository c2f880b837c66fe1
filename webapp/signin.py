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
SameSite=Strict, Secure on https. Failed sign-ins are rate-limited per address and per
user name in tables of bounded size.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from gpu_backend.access import ANONYMOUS

from .users import Users

__all__ = [
    "SESSION_COOKIE",
    "AuthMode",
    "Door",
    "LoginLimiter",
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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks; raises ValueError naming the bad item."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"expected an IP address or CIDR block, got {item!r}") from None
    return tuple(networks)


class LoginLimiter:
    """Failed sign-ins allowed per user name and per client address within a window.

    Each key counts failures in a fixed window that starts at its first failure. At most
    ``max_entries`` keys are kept (least recently failed dropped first), so a flood of
    made-up names cannot grow memory; a dropped key only forgets its count."""

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        window_s: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user, self.per_address = per_user, per_address
        self.window_s, self.max_entries = window_s, max_entries
        self._clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def _count(self, key: str, now_s: float) -> tuple[int, float]:
        count, since_s = self._failures.get(key, (0, now_s))
        if now_s - since_s >= self.window_s:
            self._failures.pop(key, None)
            return 0, now_s
        return count, since_s

    def retry_after_s(self, address: str, user: str) -> float:
        """0 when a sign-in may be tried now; else the seconds until it may."""
        now_s = self._clock()
        wait_s = 0.0
        for key, limit in ((f"u:{user}", self.per_user), (f"a:{address}", self.per_address)):
            count, since_s = self._count(key, now_s)
            if count >= limit:
                wait_s = max(wait_s, since_s + self.window_s - now_s)
        return wait_s

    def failed(self, address: str, user: str) -> None:
        now_s = self._clock()
        for key in (f"u:{user}", f"a:{address}"):
            count, since_s = self._count(key, now_s)
            self._failures[key] = (count + 1, since_s)
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)

    def succeeded(self, user: str) -> None:
        self._failures.pop(f"u:{user}", None)

    def __len__(self) -> int:
        return len(self._failures)


@dataclass(frozen=True)
class Session:
    identity: str
    kind: str  # "user" | "kiosk"
    expires_s: float


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

    def encode(self, identity: str, kind: str) -> str:
        body = json.dumps(
            {"sub": identity, "kind": kind, "exp": int(self._clock() + self.lifetime_s)},
            separators=(",", ":"),
        ).encode()
        payload = base64.urlsafe_b64encode(body).rstrip(b"=")
        mac = base64.urlsafe_b64encode(self._mac(payload)).rstrip(b"=")
        return (payload + b"." + mac).decode("ascii")

    def decode(self, value: str) -> Session | None:
        """The session in a cookie value, or None for a forged, expired or garbled one."""
        payload, _, mac = value.encode("ascii", "replace").partition(b".")
        try:
            given = base64.urlsafe_b64decode(mac + b"=" * (-len(mac) % 4))
            if not hmac.compare_digest(given, self._mac(payload)):
                return None
            data = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            session = Session(str(data["sub"]), str(data["kind"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_s > self._clock() else None


class Door:
    """Decides who a request comes from (None: nobody the web app knows)."""

    def __init__(
        self,
        modes: Iterable[AuthMode],
        users: Users,
        sessions: SessionCodec,
        *,
        proxy_header: str = "X-Forwarded-User",
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self.modes = frozenset(modes) - {AuthMode.NONE}
        self.users = users
        self.sessions = sessions
        self.proxy_header = proxy_header.lower()
        self.trusted_proxies = trusted_proxies

    @property
    def is_required(self) -> bool:
        return bool(self.modes)

    def has(self, mode: AuthMode) -> bool:
        return mode in self.modes

    def identity(self, conn: HTTPConnection) -> str | None:
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
        cookie = conn.cookies.get(SESSION_COOKIE)
        if cookie:
            session = self.sessions.decode(cookie)
            if session is not None and self._session_allowed(session):
                return session.identity
        return None

    def _session_allowed(self, session: Session) -> bool:
        # A session outlives neither its mode nor its account: a user removed from the
        # file (or a kiosk whose key was replaced) is out at their next request.
        if session.kind == "user":
            return self.has(AuthMode.USERS) and session.identity in self.users.users
        if session.kind == "kiosk":
            name = session.identity.removeprefix("kiosk:")
            return self.has(AuthMode.KIOSK_KEY) and name in self.users.kiosks
        return False  # no other kind is issued: the proxy names its user on every request

    def proxy_user(self, conn: HTTPConnection) -> str | None:
        value = conn.headers.get(self.proxy_header)
        if not value:
            return None
        address = conn.client.host if conn.client else ""
        if not self.is_trusted_proxy(address):
            log.warning(
                "ignored %s from %s: not a trusted proxy (EDGESIGHT_TRUSTED_PROXIES)",
                self.proxy_header,
                address or "an unknown address",
            )
            return None
        return value.strip()[:128] or None

    def is_trusted_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def kiosk_session(self, key: str) -> tuple[str, str] | None:
        """(identity, cookie value) for a valid kiosk key, else None."""
        if not self.has(AuthMode.KIOSK_KEY):
            return None
        kiosk = self.users.kiosk_for_key(key)
        if kiosk is None:
            return None
        identity = f"kiosk:{kiosk}"
        return identity, self.sessions.encode(identity, "kiosk")
