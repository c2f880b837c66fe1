"""Which pages may open a node's WebSocket: the ``Origin`` allow-list, checked at the
handshake (a refused origin gets HTTP 403 and never reaches the protocol).

An entry is ``scheme://host[:port]`` as browsers send it (``https://app.example.com``,
``http://10.0.0.5:8000``); the host or the port may be ``*`` (``http://*:8000``: any host
name of a web app on port 8000), and ``*`` alone allows every origin. A request without
an ``Origin`` header is not a browser page, so the allow-list does not apply to it: tokens
guard those. Browsers send ``null`` from sandboxed frames and files; only ``*`` allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .loopback import LOOPBACK_NAMES, is_loopback_host

__all__ = ["OriginPolicy", "default_origins", "is_origin_pattern"]

_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True)
class _Pattern:
    scheme: str
    host: str  # lowercase; "*" for any
    port: str  # digits; "*" for any

    def matches(self, scheme: str, host: str, port: str) -> bool:
        return self.scheme == scheme and self.host in ("*", host) and self.port in ("*", port)


def _split(origin: str) -> tuple[str, str, str] | None:
    """(scheme, host, port) of an origin, or None when it is not one."""
    scheme, rest = origin.partition("://")[::2]
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not rest or "/" in rest:
        return None
    if rest.startswith("["):
        host, _, after = rest.partition("]")
        host += "]"
        port = after[1:] if after.startswith(":") else ""
        if after and not after.startswith(":"):
            return None
    else:
        host, _, port = rest.partition(":")
    if not host or (port and port != "*" and not port.isdigit()):
        return None
    return scheme, host.lower(), port or _DEFAULT_PORTS[scheme]


def is_origin_pattern(entry: str) -> bool:
    return entry == "*" or _split(entry.strip()) is not None


class OriginPolicy:
    def __init__(self, entries: tuple[str, ...]) -> None:
        """Raise ValueError naming an entry that is not an origin pattern."""
        self.entries = entries
        self._any = "*" in entries
        self._patterns: list[_Pattern] = []
        for entry in entries:
            if entry == "*":
                continue
            parts = _split(entry.strip())
            if parts is None:
                raise ValueError(
                    f"expected an origin like https://host:port (host or port may be *) "
                    f"or *, got {entry!r}"
                )
            self._patterns.append(_Pattern(*parts))

    def allows(self, origin: str | None) -> bool:
        if origin is None:
            return True
        if self._any:
            return True
        parts = _split(origin)
        return parts is not None and any(p.matches(*parts) for p in self._patterns)


def default_origins(registry_url: str) -> tuple[str, ...]:
    """The allow-list of a node not given one: the web app it registers with (under each of
    its loopback names when that is a loopback address), else pages served from this
    machine on any port."""
    if registry_url:
        parts = urlsplit(registry_url)
        scheme = "https" if parts.scheme == "https" else "http"
        port = f":{parts.port}" if parts.port else ""
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 address: origins put it in brackets
            host = f"[{host}]"
        if is_loopback_host(host):
            return tuple(f"{scheme}://{name}{port}" for name in LOOPBACK_NAMES)
        return (f"{scheme}://{host.lower()}{port}",)
    return tuple(f"{scheme}://{name}:*" for scheme in ("http", "https") for name in LOOPBACK_NAMES)
