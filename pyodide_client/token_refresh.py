"""When the page fetches a stream token, sans-I/O.

The web app issues short-lived tokens (``POST /api/token``: ``{"token", "identity",
"audience", "expires_in_s"}``). ``TokenKeeper`` says when to fetch one: at once, then at
``REFRESH_FRACTION`` of each token's lifetime, so a fresh token reaches the node well before
the old one lapses; after a failed fetch, again with backoff. It also says which token a new
connection's AUTH carries: the current one; "" (try anonymous) when no token can be had (the
web app issues none, or cannot be reached); None while the first fetch is under way.

Tokens per node (issue 17): the answer also carries ``node_tokens``, one token per
registered node of the page's list (``aud`` = that node's id; an enrolled node accepts no
other). The page says which ids it lists (``want``), the fetch asks for them
(``fetch_url``: ``?nodes=id1,id2``), and a new id in the list makes a fetch due, so the
page holds the token of every node it may fail over to *before* it needs it: a failover
costs no token round trip. ``token_for_auth(now_ms, node_id)`` gives a registered node
its own token and never the cluster-wide one (which only static nodes get): a node that
collects what pages send it gets nothing it could replay on another node.

``apply_token_response`` is the page's glue: a fetch's answer handed to the page's node
streams (a refresh while streaming; a stream waiting for its token; anonymous AUTH when no
token can be had) and the page's events about it.

All times are the page's clock in milliseconds (``performance.now()``).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from .backoff import Backoff
from .stream import NodeStream, StreamState
from .view import token_problem_text

__all__ = [
    "REFRESH_FRACTION",
    "TokenKeeper",
    "TokenProblem",
    "TokenState",
    "apply_token_response",
]

REFRESH_FRACTION = 2 / 3
MAX_NODE_TOKENS = 64  # node_info.MAX_CANDIDATES: a page lists no more nodes than this
FETCH_TIMEOUT_MS = 10_000.0  # a fetch not answered by then counts as failed
STATUS_SIGN_IN = 401


class TokenState(enum.Enum):
    DISABLED = "disabled"  # the web app issues no tokens: streams are anonymous
    NONE = "none"  # no token yet
    VALID = "valid"
    EXPIRED = "expired"


@dataclass(frozen=True)
class TokenProblem:
    """Why the page has no token; ``needs_sign_in``: the web app wants a signed-in page."""

    message: str
    needs_sign_in: bool = False


class TokenKeeper:
    def __init__(
        self,
        token_url: str | None,
        refresh_fraction: float = REFRESH_FRACTION,
        backoff: Backoff | None = None,
    ) -> None:
        if not 0 < refresh_fraction < 1:
            raise ValueError(f"refresh_fraction must be in (0, 1), got {refresh_fraction}")
        self.token_url = token_url
        self.refresh_fraction = refresh_fraction
        self.backoff = backoff or Backoff(initial_ms=1000.0, max_ms=30_000.0)
        self.token = ""  # the cluster's: for static nodes
        self.node_tokens: dict[str, str] = {}  # registered node id -> its own token
        self.identity = ""
        self.problem: TokenProblem | None = None
        self._wanted: tuple[str, ...] = ()  # the registered node ids the page lists
        self._asked: frozenset[str] = frozenset()  # the ids the last fetch asked for
        self._received_ms = 0.0
        self._expires_ms = 0.0
        self._fetch_started_ms: float | None = None
        self._next_try_ms = 0.0
        self._failures = 0

    def state(self, now_ms: float) -> TokenState:
        if not self.token_url:
            return TokenState.DISABLED
        if not self.token:
            return TokenState.NONE
        return TokenState.VALID if now_ms < self._expires_ms else TokenState.EXPIRED

    @property
    def is_fetching(self) -> bool:
        return self._fetch_started_ms is not None

    def refresh_at_ms(self) -> float:
        """When the current token should be replaced."""
        lifetime_ms = self._expires_ms - self._received_ms
        return self._received_ms + self.refresh_fraction * lifetime_ms

    def next_fetch_ms(self) -> float | None:
        """When ``fetch_due`` turns true if nothing else happens (a refresh at its fraction
        of the token's life, or a retry after a failure); None: no fetch is pending."""
        if not self.token_url or self._fetch_started_ms is not None:
            return None
        return max(self._next_try_ms, self.refresh_at_ms()) if self.token else self._next_try_ms

    def want(self, node_ids: list[str]) -> None:
        """The registered node ids in the page's node list (its candidates): their tokens
        are fetched with the next token, and a new one makes a fetch due."""
        self._wanted = tuple(dict.fromkeys(node_ids))[:MAX_NODE_TOKENS]

    def fetch_url(self) -> str:
        """Where the next fetch POSTs: the token URL, naming the nodes the page lists
        (none yet: the web app answers for the nodes it lists by default)."""
        assert self.token_url, "fetch_url without a token_url"
        if not self._wanted:
            return self.token_url
        separator = "&" if "?" in self.token_url else "?"
        return f"{self.token_url}{separator}nodes={','.join(self._wanted)}"

    def fetch_due(self, now_ms: float) -> bool:
        """Whether the page should start a token fetch now (it then calls ``fetching``)."""
        if not self.token_url:
            return False
        if self._fetch_started_ms is not None:
            if now_ms - self._fetch_started_ms < FETCH_TIMEOUT_MS:
                return False
            self.on_failure(0, "the web app did not answer the token request", now_ms)
        if now_ms < self._next_try_ms:
            return False
        is_new_node = any(
            node_id not in self._asked and node_id not in self.node_tokens
            for node_id in self._wanted
        )
        return not self.token or now_ms >= self.refresh_at_ms() or is_new_node

    def fetching(self, now_ms: float) -> None:
        self._fetch_started_ms = now_ms
        self._asked = frozenset(self._wanted)

    def on_response(self, status: int, body: str, now_ms: float) -> bool:
        """The answer to a token fetch (status 0: the request failed). True when a new
        token came."""
        if status != 200:
            if status == STATUS_SIGN_IN:
                problem = "sign in again: the web app issues tokens only to signed-in pages"
                self.on_failure(status, problem, now_ms, needs_sign_in=True)
            elif status == 0:  # the request failed: offline, or the web app is down
                self.on_failure(status, "the web app could not be reached for a token", now_ms)
            else:
                problem = f"the web app answered the token request with {status}"
                self.on_failure(status, problem, now_ms)
            return False
        try:
            data = json.loads(body)
            token = str(data["token"])
            expires_in_s = float(data["expires_in_s"])
            identity = str(data.get("identity", ""))
        except (ValueError, KeyError, TypeError):
            self.on_failure(status, "the web app's token answer could not be read", now_ms)
            return False
        if not token or expires_in_s <= 0:
            self.on_failure(status, "the web app sent an empty or expired token", now_ms)
            return False
        self.token, self.identity = token, identity
        self.node_tokens = _node_tokens(data.get("node_tokens"))
        self._received_ms = now_ms
        self._expires_ms = now_ms + expires_in_s * 1000.0
        self._fetch_started_ms = None
        self._failures = 0
        self._next_try_ms = 0.0
        self.backoff.reset()
        self.problem = None
        return True

    def on_failure(
        self, status: int, message: str, now_ms: float, *, needs_sign_in: bool = False
    ) -> None:
        self._fetch_started_ms = None
        self._failures += 1
        self._next_try_ms = now_ms + self.backoff.next_delay_ms()
        self.problem = TokenProblem(message, needs_sign_in)

    def expire(self, now_ms: float) -> None:
        """A node said the token expired: fetch a new one at once."""
        self._expires_ms = min(self._expires_ms, now_ms)
        self._received_ms = min(self._received_ms, now_ms)
        self._next_try_ms = 0.0

    def token_for_auth(self, now_ms: float, node_id: str = "") -> str | None:
        """The token a new connection presents: to a registered node (``node_id``) its
        own, to a static node (no id) the cluster's. None means wait (a fetch that will
        bring it is due or under way); "" means anonymous (no tokens here, or none to be
        had right now: the web app did not give one for that node when asked)."""
        state = self.state(now_ms)
        if state is TokenState.DISABLED:
            return ""
        if state is TokenState.VALID and not node_id:
            return self.token
        if state is TokenState.VALID and node_id in self.node_tokens:
            return self.node_tokens[node_id]
        if self._failures:
            return ""
        if state is TokenState.VALID and node_id in self._asked and not self.is_fetching:
            return ""  # asked for and not given: not registered (any more)
        return None


def _node_tokens(value: object) -> dict[str, str]:
    """The answer's ``node_tokens``, kept only as far as it is what it should be."""
    if not isinstance(value, dict):
        return {}
    tokens = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str) and v}
    return dict(list(tokens.items())[:MAX_NODE_TOKENS])


def apply_token_response(
    tokens: TokenKeeper,
    streams: list[tuple[NodeStream, str]],
    status: int,
    body: str,
    now_ms: float,
) -> list[dict[str, Any]]:
    """The answer to a token fetch (status 0: the request failed), given to ``tokens`` and
    the page's node ``streams`` (each with its node id, "" for a static node: the current
    one, one joining); returns the page's events ("token_problem")."""
    events: list[dict[str, Any]] = []
    if tokens.on_response(status, body, now_ms):
        for stream, node_id in streams:
            token = tokens.token_for_auth(now_ms, node_id)
            if token and stream.state is StreamState.READY:
                stream.set_token(token)  # a refresh while streaming
            elif token is not None and stream.is_waiting_for_token:
                stream.set_token(token)
        return events
    problem = tokens.problem
    for stream, node_id in streams:
        if stream.is_waiting_for_token:
            fallback = tokens.token_for_auth(now_ms, node_id)
            if fallback is not None:  # no token to be had: try without one
                stream.set_token(fallback)
    if problem is not None:
        events.append(
            {
                "type": "token_problem",
                "message": problem.message,
                "needs_sign_in": problem.needs_sign_in,
                # what the page shows: nothing when offline, never an HTTP status (issue 18)
                "text": token_problem_text(status, problem.needs_sign_in),
            }
        )
    return events
