"""The page's sockets, held by id, sans-I/O (issue 19).

JavaScript keeps a ``Map<id, socket>`` and nothing else: it opens what an ``open`` command
names, reports ``socket_open`` / ``socket_message`` / ``socket_close`` with that id, and
sends or closes what a ``send`` / ``close`` command names. Which socket carries the frames
(the *link*), which one a planned move opens beside it (*joining*, ``handover.py``), the
same node over QUIC (*upgrading*, ``upgrade.py``), old links answering their last frames
(*draining*, under the key the page core knows them by) and short-lived *probes*
(``probes.py``): that bookkeeping is here.

``SocketBook`` turns the page core's link actions (connect, switch, join, leave, upgrade,
abandon, probe) and its node events (promote, upgraded, leave, fatal) into socket
commands. A ``send`` command here carries its bytes as ``data``; the JSON edge
(``page_edge.py``) swaps them for a blob id.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .quic_framing import AnswerCopies
from .transport import QUIC, WEBSOCKET, js_constants

__all__ = ["PROBE_GUARD_MS", "Role", "Socket", "SocketBook"]

# A probe socket the page has not closed by then is closed by the JS (a leak guard: the
# router gives up on an unanswered probe well before this).
PROBE_GUARD_MS = 10_000.0
# More sockets than a page ever needs at once (link, joining, upgrading, a few draining,
# probes to each candidate): beyond this a bug is leaking them.
MAX_SOCKETS = 256

Command = dict[str, Any]


class Role(enum.Enum):
    LINK = "link"  # carries the frames
    JOINING = "joining"  # a planned move's new node, before its HELLO
    UPGRADING = "upgrading"  # the link's node over QUIC, before its WELCOME
    DRAINING = "draining"  # a node the page left, answering its last frames
    PROBE = "probe"  # measures a candidate


@dataclass
class Socket:
    id: int
    url: str  # the node's URL as listed (routing's key)
    key: str  # the page core's key for it: the URL, or a retired WebSocket's own
    role: Role
    transport: str = WEBSOCKET
    # On QUIC a small answer comes twice (a datagram, then its stream): taken once.
    answer_copies: AnswerCopies = field(default_factory=AnswerCopies)

    def is_copy(self, message: bytes | bytearray | memoryview) -> bool:
        """True for the second copy of an answer (QUIC only): the page ignores it."""
        return self.transport == QUIC and not self.answer_copies.is_first(message)


class SocketBook:
    """Which socket is which; each method returns the commands for the JS, in order."""

    def __init__(self, fill_host: Callable[[str], str]) -> None:
        self._fill_host = fill_host  # a listed URL as this page opens it ({hostname})
        self._sockets: dict[int, Socket] = {}
        self._last_id = 0

    # -- lookups -------------------------------------------------------------------------
    def get(self, socket_id: int) -> Socket | None:
        return self._sockets.get(socket_id)

    def one(self, role: Role) -> Socket | None:
        """The link, the joining or the upgrading socket (there is at most one of each)."""
        return next((s for s in self._sockets.values() if s.role is role), None)

    def draining(self, key: str) -> Socket | None:
        return next(
            (s for s in self._sockets.values() if s.role is Role.DRAINING and s.key == key),
            None,
        )

    def is_live(self, socket: Socket) -> bool:
        """Whether its messages and its close still mean something to the page core."""
        return socket.role in (Role.LINK, Role.JOINING, Role.DRAINING)

    def __len__(self) -> int:
        return len(self._sockets)

    # -- opening and closing -------------------------------------------------------------
    def open(self, role: Role, action: Command) -> Command:
        """A socket for the core's action (``connect``, ``switch``, ``join``, ``upgrade``,
        ``probe``): its ``url`` and, for QUIC, ``wt_url`` and ``wt_hashes``."""
        if len(self._sockets) >= MAX_SOCKETS:
            raise RuntimeError(
                f"expected at most {MAX_SOCKETS} open sockets, the page holds {len(self._sockets)}"
            )
        url = str(action["url"])
        transport = str(action.get("transport", WEBSOCKET))
        self._last_id += 1
        socket = Socket(self._last_id, url, url, role, transport)
        self._sockets[socket.id] = socket
        command: Command = {
            "do": "open",
            "socket": socket.id,
            "url": self._fill_host(url),
            "role": role.value,
            "why": action["do"],
            "node": url,
            "transport": transport,
        }
        if transport == QUIC:
            command["wt_url"] = action["wt_url"]
            command["wt_hashes"] = action["wt_hashes"]
            command["constants"] = js_constants()  # the framing static/wt-link.js moves by
        if role is Role.PROBE:
            command["guard_ms"] = PROBE_GUARD_MS
        return command

    def close(self, socket: Socket | None, why: str, reason: str = "") -> list[Command]:
        """Leave ``socket`` for good: the JS closes it and reports nothing more of it."""
        if socket is None or self._sockets.pop(socket.id, None) is None:
            return []
        command: Command = {"do": "close", "socket": socket.id, "why": why, "node": socket.url}
        return [{**command, "reason": reason}] if reason else [command]

    def forget(self, socket: Socket) -> None:
        """The JS reported the socket closed: it is gone without a command."""
        self._sockets.pop(socket.id, None)

    def send(self, socket: Socket | None, data: bytes) -> list[Command]:
        if socket is None or not data:
            return []
        return [{"do": "send", "socket": socket.id, "data": data}]

    def flush(self, url: str, take_outgoing: Callable[[str], bytes]) -> list[Command]:
        """The messages the core wants on a node link (AUTH, TRACE), ``take_outgoing(url)``
        until it says b"": on the joining socket for its URL, else on the link."""
        joining = self.one(Role.JOINING)
        target = joining if url and joining is not None and joining.url == url else None
        target = target or self.one(Role.LINK)
        out: list[Command] = []
        while message := take_outgoing(url):
            out += self.send(target, message)
        return out

    # -- the core's link actions (its routing decision, ``PageCore.dispatch``) -------------
    def act(self, action: Command) -> list[Command]:
        do = action["do"]
        if do in ("connect", "switch"):
            out = self.close(self.one(Role.UPGRADING), do)
            out += self.close(self.one(Role.LINK), do)
            out += self.close(self.one(Role.JOINING), do)
            return [*out, self.open(Role.LINK, action)]
        if do == "join":
            return [*self.close(self.one(Role.JOINING), do), self.open(Role.JOINING, action)]
        if do == "leave":
            return self.leave(str(action["url"]))
        if do == "upgrade":
            return [*self.close(self.one(Role.UPGRADING), do), self.open(Role.UPGRADING, action)]
        if do == "leave_upgrade":
            return self.close(self.one(Role.UPGRADING), do)
        if do == "abandon":  # an upgrade belongs to the link
            link = self.close(self.one(Role.LINK), do, str(action.get("reason", "")))
            return link + self.close(self.one(Role.UPGRADING), do)
        if do == "probe":
            return [self.open(Role.PROBE, action)]
        raise ValueError(f"expected a link action, got {do!r}")

    def leave(self, key: str) -> list[Command]:
        """Close a joining or draining socket the core is done with."""
        joining = self.one(Role.JOINING)
        out = self.close(joining, "leave") if joining is not None and joining.key == key else []
        return out + self.close(self.draining(key), "leave")

    # -- the core's node events ------------------------------------------------------------
    def promote(self) -> None:
        """The joining node's HELLO came: it carries the frames; the old link drains."""
        link, joining = self.one(Role.LINK), self.one(Role.JOINING)
        if link is not None:
            link.role = Role.DRAINING
        if joining is not None:
            joining.role = Role.LINK

    def upgraded(self, retired_key: str, is_draining: bool) -> list[Command]:
        """QUIC took over the link's node: the WebSocket answers what it holds under a key
        of its own, or is left now."""
        old, new = self.one(Role.LINK), self.one(Role.UPGRADING)
        out: list[Command] = []
        if old is not None:
            old.key = retired_key
            if is_draining:
                old.role = Role.DRAINING
            else:
                out = self.close(old, "upgraded")
        if new is not None:
            new.role = Role.LINK
        return out
