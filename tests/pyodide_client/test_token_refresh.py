"""TokenKeeper: when the page fetches stream tokens, and which token a new AUTH carries."""

from __future__ import annotations

import json

import pytest

from pyodide_client.backoff import Backoff
from pyodide_client.page_core import MAX_TICK_GAP_MS, PageCore
from pyodide_client.page_events import TimerFired, TokenFetched
from pyodide_client.token_refresh import TokenKeeper, TokenState

from .test_browser import CARD_JSON


def answer(token: str = "t", expires_in_s: float = 300.0) -> str:
    return json.dumps({"token": token, "identity": "alice", "expires_in_s": expires_in_s})


def keeper() -> TokenKeeper:
    return TokenKeeper("/api/token", backoff=Backoff(initial_ms=1000, max_ms=8000, jitter=0))


def test_without_a_token_url_nothing_is_fetched_and_auth_is_anonymous() -> None:
    k = TokenKeeper(None)
    assert k.state(0.0) is TokenState.DISABLED
    assert not k.fetch_due(0.0)
    assert k.token_for_auth(0.0) == ""


def test_the_first_fetch_is_due_at_once_and_auth_waits_for_it() -> None:
    k = keeper()
    assert k.fetch_due(0.0)
    k.fetching(0.0)
    assert not k.fetch_due(10.0)
    assert k.token_for_auth(10.0) is None
    assert k.on_response(200, answer("t1", 300), 20.0)
    assert k.token_for_auth(30.0) == "t1"
    assert k.identity == "alice"


def test_a_token_is_refreshed_at_two_thirds_of_its_life() -> None:
    k = keeper()
    k.fetching(0.0)
    k.on_response(200, answer("t1", 3.0), 0.0)
    assert not k.fetch_due(1999.0)
    assert k.fetch_due(2000.0)
    assert k.state(2999.0) is TokenState.VALID
    assert k.state(3000.0) is TokenState.EXPIRED


def test_the_next_fetch_time_is_the_refresh_or_the_retry_and_none_while_fetching() -> None:
    k = keeper()
    assert k.next_fetch_ms() == 0.0  # the first token: at once
    k.fetching(0.0)
    assert k.next_fetch_ms() is None  # its answer comes as an event
    k.on_response(200, answer("t1", 3.0), 0.0)
    assert k.next_fetch_ms() == 2000.0  # what fetch_due turns true at
    k.fetching(2000.0)
    assert not k.on_response(503, "", 2000.0)
    assert k.next_fetch_ms() == 3000.0  # the retry after a failure
    assert TokenKeeper(None).next_fetch_ms() is None


def test_the_page_core_wakes_for_a_token_refresh_not_up_to_a_tick_gap_late() -> None:
    core = PageCore(json.dumps({"node_urls": [], "token_url": "/api/token"}), CARD_JSON)
    assert core.dispatch(TimerFired(), 0.0) == [{"do": "fetch_token", "url": "/api/token"}]
    core.dispatch(TokenFetched(200, answer("t1", 1.2)), 100.0)
    refresh_ms = 100.0 + 800.0  # 2/3 of 1.2 s
    assert core.next_tick_ms(700.0) == refresh_ms < 700.0 + MAX_TICK_GAP_MS


def test_failures_back_off_and_then_auth_goes_anonymous() -> None:
    k = keeper()
    k.fetching(0.0)
    assert not k.on_response(503, "", 0.0)
    assert k.problem is not None
    assert "503" in k.problem.message
    assert k.token_for_auth(1.0) == ""
    assert not k.fetch_due(999.0)
    assert k.fetch_due(1000.0)
    k.fetching(1000.0)
    k.on_response(0, "", 1000.0)  # the request failed
    assert not k.fetch_due(2999.0)
    assert k.fetch_due(3000.0)


def test_a_fetch_never_answered_counts_as_failed() -> None:
    k = keeper()
    k.fetching(0.0)
    assert not k.fetch_due(9_999.0)
    assert not k.fetch_due(10_000.0)  # timed out now; the retry waits its backoff
    assert k.problem is not None
    assert k.fetch_due(11_000.0)


@pytest.mark.parametrize("body", ["nope", "{}", '{"token": "", "expires_in_s": 5}'])
def test_an_unreadable_answer_is_a_failure(body: str) -> None:
    k = keeper()
    k.fetching(0.0)
    assert not k.on_response(200, body, 0.0)
    assert k.problem is not None


def test_sign_in_needed_is_said() -> None:
    k = keeper()
    k.fetching(0.0)
    k.on_response(401, "", 0.0)
    assert k.problem is not None
    assert k.problem.needs_sign_in


def test_expire_makes_a_fetch_due_at_once() -> None:
    k = keeper()
    k.fetching(0.0)
    k.on_response(200, answer("t1", 300), 0.0)
    k.expire(500.0)
    assert k.fetch_due(500.0)
    assert k.state(500.0) is TokenState.EXPIRED
