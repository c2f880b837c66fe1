"""Who may stream to a node: the seam between the node's connection policy and whatever
checks credentials.

The sans-I/O connection (``connection.py``) hands the token of each AUTH message to an
``Authenticator`` and gets a ``Grant`` back, or an ``AccessDenied`` whose message is safe to
send to the client. ``AnonymousAccess`` is the policy of a node that checks no tokens (a
loopback node, or one started with ``--allow-anonymous``); the signed stream tokens of the
web app are verified by ``tokens.TokenVerifier``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pyodide_client.protocol import ErrorCode

from . import NodeError

__all__ = ["ANONYMOUS", "AccessDenied", "AnonymousAccess", "Authenticator", "Grant"]

ANONYMOUS = "anonymous"


class AccessDenied(NodeError):
    """A token that does not open this node. ``message`` is safe to send to the client:
    it says what was wrong (expired, wrong audience) without echoing secrets."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Grant:
    """What an accepted token allows: who the client is (streams are capped per identity)
    and for how long, in seconds from now (None: no expiry, as for anonymous use).
    ``is_anonymous`` marks a client without a token: its identity is only a name
    (ANONYMOUS) and a user of that name is someone else (issue 17)."""

    identity: str
    expires_in_s: float | None = None
    is_anonymous: bool = False

    @classmethod
    def anonymous(cls) -> Grant:
        return cls(ANONYMOUS, is_anonymous=True)


class Authenticator(Protocol):
    def authenticate(self, token: str, origin: str | None) -> Grant:
        """The grant for ``token`` (empty for a client without one) presented from a page
        of ``origin`` (the WebSocket handshake's Origin header, None without one), or
        raise AccessDenied."""
        ...


class AnonymousAccess:
    """Everyone may stream; a token, if one comes, is not checked."""

    def authenticate(self, token: str, origin: str | None) -> Grant:
        return Grant.anonymous()
