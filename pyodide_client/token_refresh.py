"""When the page fetches a stream token, sans-I/O.

The web app issues short-lived tokens (``POST /api/token``: ``{"token", "identity",
"audience", "expires_in_s"}``). ``TokenKeeper`` says when to fetch one: at once, then at
``REFRESH_FRACTION`` of each token's lifetime, so a fresh token reaches the node well before
the old one lapses; after a failed fetch, again with backoff. It also says which token a new
connection's AUTH carries: the current one; "" (try anonymous) when no token can be had (the
web app issues none, or cannot be reached); None while the first fetch is under way.

``apply_token_response`` is the page's glue: a fetch's answer handed to the current node
stream (a refresh while streaming; anonymous AUTH when no token can be had) and the page's
events about it.

All times are the page's clock in milliseconds (``performance.now()``).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from .backoff import Backoff
from .stream import NodeStream, StreamState

__all__ = [
    "REFRESH_FRACTION",
    "TokenKeeper",
    "TokenProblem",
    "TokenState",
    "apply_token_response",
]

REFRESH_FRACTION = 2 / 3
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
        self.token = ""
        self.identity = ""
        self.problem: TokenProblem | None = None
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
        return not self.token or now_ms >= self.refresh_at_ms()

    def fetching(self, now_ms: float) -> None:
        self._fetch_started_ms = now_ms

    def on_response(self, status: int, body: str, now_ms: float) -> bool:
        """The answer to a token fetch (status 0: the request failed). True when a new
        token came."""
        if status != 200:
            if status == STATUS_SIGN_IN:
                problem = "sign in again: the web app issues tokens only to signed-in pages"
                self.on_failure(status, problem, now_ms, needs_sign_in=True)
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

    def token_for_auth(self, now_ms: float) -> str | None:
        """The token a new connection presents: None means wait (the first fetch is under
        way); "" means anonymous (no tokens here, or none to be had right now)."""
        state = self.state(now_ms)
        if state is TokenState.VALID:
            return self.token
        if state is TokenState.DISABLED or self._failures:
            return ""
        return None


def apply_token_response(
    tokens: TokenKeeper, stream: NodeStream | None, status: int, body: str, now_ms: float
) -> list[dict[str, Any]]:
    """The answer to a token fetch (status 0: the request failed), given to ``tokens`` and
    the page's current ``stream``; returns the page's events ("token_problem")."""
    events: list[dict[str, Any]] = []
    if tokens.on_response(status, body, now_ms):
        if stream is not None:
            stream.set_token(tokens.token)  # a refresh while streaming, too
        return events
    problem = tokens.problem
    if stream is not None and stream.state is StreamState.AUTHENTICATING:
        fallback = tokens.token_for_auth(now_ms)
        if fallback is not None:  # no token to be had: try without one
            stream.set_token(fallback)
    if problem is not None:
        events.append(
            {
                "type": "token_problem",
                "message": problem.message,
                "needs_sign_in": problem.needs_sign_in,
            }
        )
    return events
