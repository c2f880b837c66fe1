"""Stream tokens per node in the page core (issue 17): each registered node gets a token
for its own id, held before the page needs it, so a failover costs no token fetch; the
cluster-wide token goes to static nodes only."""

from __future__ import annotations

import json
from typing import Any

from pyodide_client.backoff import Backoff
from pyodide_client.page_events import NodeList, SocketClosed, TokenFetched
from pyodide_client.protocol import Auth, Welcome
from pyodide_client.token_refresh import MAX_NODE_TOKENS, TokenKeeper

from .test_browser import (
    TOKEN_URL,
    A,
    B,
    BrowserClient,
    answer_probe,
    hello,
    make_client,
    parse,
    receive,
    registry_entry,
    send_frame,
    sent,
    static_entry,
    tick,
)

C = "ws://c:8001/ws"


def answer(node_tokens: dict[str, str], token: str = "t-cluster", life_s: float = 300.0) -> str:
    return json.dumps(
        {
            "token": token,
            "identity": "alice",
            "audience": "lab",
            "expires_in_s": life_s,
            "node_tokens": node_tokens,
        }
    )


def listing(*entries: dict[str, Any]) -> str:
    return json.dumps({"nodes": list(entries), "heartbeat_interval_s": 2.0})


def fetch_urls(commands: Any) -> list[str]:
    return [c["url"] for c in commands if c["do"] == "fetch_token"]


def streaming_on_a(client: BrowserClient) -> float:
    """A page listing nodes a and b, holding both tokens, streaming to a; returns now."""
    client.dispatch(
        NodeList(listing(registry_entry("node-a", A, 0, 32), registry_entry("node-b", B, 0, 32))),
        0.0,
    )
    assert fetch_urls(tick(client, 0.0)) == [f"{TOKEN_URL}?nodes=node-a,node-b"]
    client.dispatch(TokenFetched(200, answer({"node-a": "t-a", "node-b": "t-b"})), 10.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    answer_probe(client, B, 0.0, rtt_ms=30.0)
    assert tick(client, 600.0)[-1] == {"do": "connect", "url": A}
    assert receive(client, A, hello(), 620.0) == [{"type": "send"}]
    assert sent(client) == [Auth("t-a", 0b011)]  # a's own token, not the cluster's
    receive(client, A, Welcome(0b001, 300_000, "alice").serialize(), 630.0)
    return 700.0


def test_failover_presents_a_token_already_held_without_fetching_one() -> None:
    """Given a page streaming to a that holds b's token, when a dies, then no token fetch
    comes between a's death and b's first frame, and b gets b's own token."""
    client = make_client(token_url=TOKEN_URL)
    now_ms = streaming_on_a(client)
    send_frame(client, now_ms, now_ms)  # in flight when a dies

    commands: list[dict[str, Any]] = []
    commands += client.handle_event(SocketClosed(A, 1006), now_ms + 10).commands
    assert {"do": "connect", "url": B} in commands
    commands += tick(client, now_ms + 20)
    assert receive(client, B, hello(name="node-b"), now_ms + 30) == [{"type": "send"}]
    assert [parse(m) for m in iter(client.take_outgoing, b"")] == [Auth("t-b", 0b011)]
    receive(client, B, Welcome(0b001, 300_000, "alice").serialize(), now_ms + 40)
    commands += tick(client, now_ms + 45)
    frame_id = send_frame(client, now_ms + 50, now_ms + 50)  # b's first frame

    assert frame_id is not None
    assert client.node_url == B
    assert fetch_urls(commands) == []


def test_a_static_node_gets_the_cluster_token_and_a_registered_one_never_does() -> None:
    client = make_client(C, token_url=TOKEN_URL)
    client.dispatch(NodeList(listing(registry_entry("node-a", A, 0, 32), static_entry(C))), 0.0)
    assert fetch_urls(tick(client, 0.0)) == [f"{TOKEN_URL}?nodes=node-a"]  # not "static:..."
    # the web app gave no token for node-a (it left the registry meanwhile)
    client.dispatch(TokenFetched(200, answer({})), 10.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    answer_probe(client, C, 0.0, rtt_ms=30.0)
    assert tick(client, 600.0)[-1] == {"do": "connect", "url": A}
    receive(client, A, hello(), 620.0)
    (auth,) = sent(client)
    assert auth == Auth("", 0b011)  # anonymous, never the cluster token
    assert {"do": "connect", "url": C} in client.handle_event(SocketClosed(A, 1008), 630.0).commands
    receive(client, C, hello(), 650.0)
    assert sent(client) == [Auth("t-cluster", 0b011)]


def test_a_node_new_in_the_list_makes_a_fetch_for_its_token_due_once() -> None:
    client = make_client(token_url=TOKEN_URL)
    client.dispatch(NodeList(listing(registry_entry("node-a", A, 0, 32))), 0.0)
    assert fetch_urls(tick(client, 0.0)) == [f"{TOKEN_URL}?nodes=node-a"]
    client.dispatch(TokenFetched(200, answer({"node-a": "t-a"})), 10.0)
    assert fetch_urls(tick(client, 20.0)) == []

    client.dispatch(
        NodeList(listing(registry_entry("node-a", A, 0, 32), registry_entry("node-b", B, 0, 32))),
        2000.0,
    )
    assert fetch_urls(tick(client, 2000.0)) == [f"{TOKEN_URL}?nodes=node-a,node-b"]
    client.dispatch(
        TokenFetched(200, answer({"node-a": "t-a2"})), 2010.0
    )  # b not given: not asked again
    assert fetch_urls(tick(client, 2020.0)) == []
    assert client.tokens.token_for_auth(2030.0, "node-a") == "t-a2"


def test_a_refresh_sends_the_current_node_its_own_new_token() -> None:
    client = make_client(token_url=TOKEN_URL)
    streaming_on_a(client)
    # 2/3 of the 300 s life
    assert fetch_urls(tick(client, 200_100.0)) == [f"{TOKEN_URL}?nodes=node-a,node-b"]
    client.dispatch(
        TokenFetched(200, answer({"node-a": "t-a2", "node-b": "t-b2"}, token="t-c2")), 200_200.0
    )
    assert client.node_url == A
    assert sent(client) == [Auth("t-a2", 0b011)]


def test_the_answers_node_tokens_are_kept_only_when_well_formed() -> None:
    client = make_client(token_url=TOKEN_URL)
    tick(client, 0.0)
    body = json.loads(answer({}))
    body["node_tokens"] = {"node-a": "t-a", "node-b": 5, "node-c": ""}
    client.dispatch(TokenFetched(200, json.dumps(body)), 10.0)
    assert client.tokens.node_tokens == {"node-a": "t-a"}
    body["node_tokens"] = ["not", "a", "map"]
    client.dispatch(TokenFetched(200, json.dumps(body)), 20.0)
    assert client.tokens.node_tokens == {}


def test_the_keeper_asks_for_the_listed_ids_and_waits_only_for_a_token_coming() -> None:
    keeper = TokenKeeper(TOKEN_URL, backoff=Backoff(initial_ms=1000, max_ms=8000, jitter=0))
    assert keeper.fetch_url() == TOKEN_URL  # nothing listed yet: the web app's default list
    keeper.want(["node-a", "node-b", "node-a"])
    assert keeper.fetch_url() == f"{TOKEN_URL}?nodes=node-a,node-b"
    keeper.fetching(0.0)
    assert keeper.token_for_auth(1.0, "node-a") is None  # its token is on its way
    keeper.on_response(200, answer({"node-a": "t-a"}), 2.0)
    assert keeper.token_for_auth(3.0, "node-a") == "t-a"
    assert keeper.token_for_auth(3.0, "node-b") == ""  # asked for, not given: no wait
    assert keeper.token_for_auth(3.0, "node-c") is None  # not asked yet: a fetch is due
    keeper.want(["node-a", "node-c"])
    assert keeper.fetch_due(4.0)
    assert keeper.token_for_auth(3.0) == "t-cluster"  # a static node


def test_a_keeper_never_lists_more_ids_than_a_page_keeps() -> None:
    keeper = TokenKeeper(TOKEN_URL)
    keeper.want([f"n{i}" for i in range(500)])
    assert keeper.fetch_url().count(",") == MAX_NODE_TOKENS - 1
