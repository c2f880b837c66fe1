"""Node URLs as strictly as a browser's ``new WebSocket(url)`` takes them, or stricter.

One check for every place a node URL enters the system: the registry (a heartbeat's
``url``), node settings (``--public-url`` / ``EDGESIGHT_PUBLIC_URL``), web app settings
(``EDGESIGHT_NODE_URLS``) and the page (the registry's list). A URL this module accepts
is one the browser accepts too, so a typo is refused where it is typed, with a message,
instead of throwing inside the page (issue 8: ``ws://0:99999/ws`` made a kiosk reload
itself every 11-12 s). Stdlib only: the page imports it in Pyodide.

Accepted: ``ws://`` or ``wss://`` (lower case); a host that is a DNS name (ASCII letters,
digits, ``-`` and ``_``, labels of 1-63 characters, punycode for other scripts), a dotted
IPv4 address, or an IPv6 address in brackets; an optional port 1-65535 that browsers do not
block (https://fetch.spec.whatwg.org/#bad-port); a path and query of printable ASCII.
Refused: userinfo (``user@``), a fragment (the WebSocket constructor throws on ``#``),
spaces, backslashes and other characters a browser would rewrite, the unspecified
addresses ``0.0.0.0`` and ``[::]``, and numeric host names that are no IPv4 address.

``{hostname}`` as the whole host is a template the page fills with its own host name
(``EDGESIGHT_NODE_URLS``' default, and what ``edgesight serve`` registers for a node bound to
all interfaces); it is accepted where ``allow_template`` says so.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "BAD_PORTS",
    "HOSTNAME_TEMPLATE",
    "MAX_URL_CHARS",
    "NodeUrl",
    "NodeUrlError",
    "node_url_problem",
    "parse_node_url",
]

MAX_URL_CHARS = 2048
HOSTNAME_TEMPLATE = "{hostname}"
DEFAULT_PORTS = {"ws": 80, "wss": 443}

# Ports every browser refuses to connect to (the Fetch standard's "bad port" list).
BAD_PORTS = frozenset(
    {
        *(1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87),
        *(95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139),
        *(143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548),
        *(554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659),
        *(4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697),
        10080,
    }
)

_AUTHORITY = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,2}")
# RFC 3986 path and query characters: what browsers send as they are, without rewriting
_PATH_QUERY = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class NodeUrlError(ValueError):
    """A node URL a browser would refuse; the message says what was expected."""


@dataclass(frozen=True)
class NodeUrl:
    scheme: str  # "ws" or "wss"
    host: str  # as written: a name, an IPv4 address, "[v6]", or "{hostname}"
    port: int  # the explicit port, else the scheme's default
    path: str  # path and query, "/" when empty

    @property
    def is_secure(self) -> bool:
        return self.scheme == "wss"

    @property
    def is_template(self) -> bool:
        return self.host == HOSTNAME_TEMPLATE


def node_url_problem(url: object, *, allow_template: bool = False) -> str | None:
    """None when ``url`` is a usable node URL, else what is wrong with it."""
    try:
        parse_node_url(url, allow_template=allow_template)
    except NodeUrlError as exc:
        return str(exc)
    return None


def parse_node_url(url: object, *, allow_template: bool = False) -> NodeUrl:
    """The parts of a node URL; ``NodeUrlError`` when a browser would refuse it."""
    if not isinstance(url, str):
        raise NodeUrlError(f"expected a ws:// or wss:// URL, got {type(url).__name__}")
    if not url:
        raise NodeUrlError("expected a ws:// or wss:// URL, got ''")
    if len(url) > MAX_URL_CHARS:
        raise NodeUrlError(f"expected a URL of at most {MAX_URL_CHARS} characters, got {len(url)}")
    shown = repr(url) if len(url) <= 80 else repr(url[:77] + "...")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise NodeUrlError(
            f"expected printable ASCII without spaces (punycode for other scripts), got {shown}"
        )
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in DEFAULT_PORTS:
        raise NodeUrlError(f"expected a URL starting ws:// or wss://, got {shown}")
    if "#" in rest:
        raise NodeUrlError(f"expected no fragment ('#'): browsers refuse one, got {shown}")
    cut = min((rest.find(c) for c in "/?" if c in rest), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        raise NodeUrlError(f"expected no user name or password ('@') in the URL, got {shown}")
    if "\\" in authority:
        raise NodeUrlError(f"expected no backslash in the host, got {shown}")
    match = _AUTHORITY.fullmatch(authority)
    if match is None:
        raise NodeUrlError(
            f"expected host[:port], with an IPv6 address in brackets ([::1]:8001), got {shown}"
        )
    port = _port(match["port"], scheme, shown)
    host = match["host"]
    _check_host(host, shown, allow_template)
    if not _PATH_QUERY.fullmatch(path) or _PERCENT.search(path):
        raise NodeUrlError(
            "expected a path and query of URL characters (letters, digits, - . _ ~ / ? = & "
            f"and %XX escapes), got {shown}"
        )
    return NodeUrl(scheme, host, port, path or "/")


def _port(text: str | None, scheme: str, shown: str) -> int:
    if text is None:
        return DEFAULT_PORTS[scheme]
    if not (text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535):
        raise NodeUrlError(f"expected a port from 1 to 65535, got {shown}")
    port = int(text)
    if port in BAD_PORTS:
        raise NodeUrlError(
            f"expected a port browsers connect to: {port} is on their blocked list "
            f"(https://fetch.spec.whatwg.org/#bad-port), got {shown}"
        )
    return port


def _check_host(host: str, shown: str, allow_template: bool) -> None:
    if host == HOSTNAME_TEMPLATE:
        if not allow_template:
            raise NodeUrlError(f"expected a real host name, not the {host} template, got {shown}")
        return
    if not host:
        raise NodeUrlError(f"expected a host name or address, got {shown}")
    if host.startswith("["):
        try:
            if "%" in host:  # a zone id (fe80::1%eth0): Python takes one, browsers do not
                raise ValueError(host)
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise NodeUrlError(f"expected an IPv6 address inside [ ], got {shown}") from None
        if address.is_unspecified:
            raise NodeUrlError(f"expected an address to connect to, not [::], got {shown}")
        return
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels = labels[:-1]  # a fully qualified name's trailing dot
    # A host whose last label is a number is an IPv4 address to a browser, or nothing.
    if labels[-1].isdigit() or labels[-1].lower().startswith("0x"):
        if not (len(labels) == 4 and all(_DECIMAL.fullmatch(p) for p in labels)):
            raise NodeUrlError(
                f"expected a dotted IPv4 address (four numbers 0-255) or a name, got {shown}"
            )
        if not all(int(p) <= 255 for p in labels):
            raise NodeUrlError(f"expected IPv4 numbers from 0 to 255, got {shown}")
        if all(p == "0" for p in labels):
            raise NodeUrlError(f"expected an address to connect to, not 0.0.0.0, got {shown}")
        return
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise NodeUrlError(
            "expected a host name of dot-separated labels (letters, digits, - and _, "
            f"1-63 characters, not starting or ending with -), got {shown}"
        )
