"""Who is on the other end: the real peer, and the client a trusted proxy says it forwards
(issue 17, item 7).

uvicorn's own ``proxy_headers`` is off (``edgesight/serving.py``): it believed
``X-Forwarded-For`` from 127.0.0.1 by default, so any local client could claim to be a
trusted proxy's address. This middleware believes forwarding headers only when the TCP
peer itself is in ``EDGESIGHT_TRUSTED_PROXIES``:

- ``scope["client"]`` becomes the forwarded client: the right-most ``X-Forwarded-For``
  address that is not a trusted proxy (a client may prepend anything; the addresses its
  proxies append are the only ones believed). It is what rate limits and logs count.
- ``scope["scheme"]`` follows ``X-Forwarded-Proto`` (https behind a TLS-terminating proxy,
  so cookies are marked Secure).
- The TCP peer is kept under ``PEER_KEY``: identity headers (``X-Forwarded-User``) are
  believed by *it*, never by the forwarded address (``peer_address``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "PEER_KEY",
    "ForwardedClient",
    "Network",
    "client_address",
    "is_in",
    "parse_networks",
    "peer_address",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PEER_KEY = "edgesight.peer"
MAX_FORWARDED_HOPS = 16  # a longer X-Forwarded-For is read from its right end only


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks; raises ValueError naming the bad item."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"expected an IP address or CIDR block, got {item!r}") from None
    return tuple(networks)


def is_in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _forwarded_client(header: str, trusted: tuple[Network, ...]) -> str | None:
    hops = [hop.strip() for hop in header.split(",")][-MAX_FORWARDED_HOPS:]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if not is_in(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return None  # garbage where an address should be: believe nothing more
    return hops[0] if hops and is_in(hops[0], trusted) else None


class ForwardedClient:
    def __init__(self, app: ASGIApp, trusted_proxies: tuple[Network, ...]) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            scope[PEER_KEY] = peer
            if peer and self.trusted_proxies and is_in(peer[0], self.trusted_proxies):
                headers = Headers(scope=scope)
                client = _forwarded_client(headers.get("x-forwarded-for", ""), self.trusted_proxies)
                if client is not None:
                    scope["client"] = (client, 0)
                proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
                if proto in ("http", "https"):
                    is_secure = proto == "https"
                    if scope["type"] == "websocket":
                        scope["scheme"] = "wss" if is_secure else "ws"
                    else:
                        scope["scheme"] = proto
        await self.app(scope, receive, send)


def peer_address(conn: HTTPConnection) -> str:
    """The TCP peer: the proxy itself when there is one."""
    peer = conn.scope.get(PEER_KEY, conn.scope.get("client"))
    return str(peer[0]) if peer else ""


def client_address(conn: HTTPConnection) -> str:
    """The client as far as trusted proxies vouch for it."""
    return conn.client.host if conn.client else "unknown"
