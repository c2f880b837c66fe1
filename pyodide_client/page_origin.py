"""What the page's origin lets it do, in words a person can act on (issue 8).

Browsers give the camera, service workers and cross-origin isolation only to secure
contexts (``https://`` pages, or ``http://localhost`` and 127.0.0.0/8), and an https page
may only open ``wss://`` sockets (mixed content). Without this module a page opened as
``http://kiosk.lan:8000`` failed in odd places ("Cannot read properties of undefined") and
an https page with a ``ws://`` node retried a socket the browser never opens. Here the page
decides once, from what JavaScript reports about ``location`` and ``isSecureContext``:
``insecure_context_problem()`` says why and what to do; ``node_url_problem()`` refuses a
node URL the page cannot open. Stdlib only: runs in Pyodide and in CPython tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .node_url import HOSTNAME_TEMPLATE

__all__ = ["README_SECTION", "PageOrigin"]

README_SECTION = "'Use it from other machines' in edgesight's README"


@dataclass(frozen=True)
class PageOrigin:
    """``protocol`` as ``location.protocol`` gives it (``"https:"``), ``hostname`` and
    ``port`` as ``location`` gives them, ``is_secure_context`` from ``isSecureContext``."""

    protocol: str = "http:"
    hostname: str = "localhost"
    port: str = ""
    is_secure_context: bool = True

    @classmethod
    def from_mapping(cls, data: object) -> PageOrigin:
        """From the page's report; None or junk: an unrestricted origin (tests, tools)."""
        if not isinstance(data, Mapping):
            return cls()
        protocol = data.get("protocol")
        hostname = data.get("hostname")
        port = data.get("port")
        secure = data.get("is_secure_context")
        return cls(
            protocol=protocol if isinstance(protocol, str) else "http:",
            hostname=hostname if isinstance(hostname, str) else "localhost",
            port=port if isinstance(port, str) else "",
            is_secure_context=secure if isinstance(secure, bool) else True,
        )

    @property
    def is_https(self) -> bool:
        return self.protocol == "https:"

    @property
    def origin(self) -> str:
        """``https://host:port`` as the browser sends it in an Origin header."""
        return f"{self.protocol}//{self._host_port}"

    @property
    def _host(self) -> str:
        """The host as a URL writes it: an IPv6 address in brackets (a browser's
        ``location.hostname`` already has them; a tool's report may not)."""
        if ":" in self.hostname and not self.hostname.startswith("["):
            return f"[{self.hostname}]"
        return self.hostname

    @property
    def _host_port(self) -> str:
        return f"{self._host}:{self.port}" if self.port else self._host

    def fill_host(self, url: str) -> str:
        """A node URL as the page opens it: the ``{hostname}`` template (node_url.py) becomes
        this page's host, bracketed when it is an IPv6 address. One rule for every URL the
        page derives from a listed node (its WebSocket, its QUIC offer, what Details shows)."""
        return url.replace(HOSTNAME_TEMPLATE, self._host)

    def insecure_context_problem(self) -> str | None:
        """None on a secure context; else what the page lacks and how to fix it."""
        if self.is_secure_context:
            return None
        local = f"http://localhost:{self.port}/" if self.port else "http://localhost/"
        return (
            f"This page needs https. Opened as {self.protocol}//{self._host_port}, the "
            "browser gives it no camera, no offline kiosk and no fast (multi-threaded) "
            "local detection: it allows them only on https pages or on localhost. Open "
            f"https://{self._host_port}/ once the web app has a certificate (--tls-cert, "
            f"--tls-key), or {local} on the machine that runs it. How: see {README_SECTION}. "
            "Meanwhile you can still choose a video or image file."
        )

    def node_url_problem(self, url: str) -> str | None:
        """None when the page may open ``url``; else why not and what to do."""
        if self.is_https and url.startswith("ws://"):
            return (
                f"node {url} is not used: this page is https, and browsers let an https page "
                "open only wss:// sockets. Give the node --tls-cert and --tls-key and list it "
                f"as wss:// (see {README_SECTION})."
            )
        return None
