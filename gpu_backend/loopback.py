"""Which hosts only this machine can reach: one list and one test, for the node, the web
app and the CLI.

``LOOPBACK_HOSTS`` are the bind hosts taken as loopback by their name alone (a default that
opens up on loopback, anonymous streams for one, asks for the exact name, never for a name
that DNS could answer otherwise); ``is_loopback_host`` also knows every 127/8 address and
``*.localhost``, for peers and pages (RFC 6761 section 6.3, and what browsers treat as a
secure context).
"""

from __future__ import annotations

import ipaddress

__all__ = ["LOOPBACK_HOSTS", "LOOPBACK_NAMES", "is_loopback_host"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# the same hosts as a URL or an Origin names them: an IPv6 address in brackets
LOOPBACK_NAMES = tuple(f"[{host}]" if ":" in host else host for host in LOOPBACK_HOSTS)


def is_loopback_host(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
