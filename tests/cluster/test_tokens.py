"""Stream tokens across the cluster (issue 8): a node that fetched the web app's public key
from its registry takes only tokens that web app issued, and a page (``BrowserClient``
driven as app.js drives it) fetches, presents and refreshes them without a gap."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.applications import Starlette

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from gpu_backend.tokens import TokenVerifier
from tests.cluster.conftest import HEARTBEAT_INTERVAL_S, SECRET, StartCluster
from tests.cluster.driver import Driver, now_ms
from tests.cluster.latency_proxy import LatencyProxy
from tests.conftest import MODEL_PATH
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings

TOKEN_LIFETIME_S = 2.0  # short, so that a stream crosses two expiries within seconds


@dataclass
class TokenCluster:
    webapp: ServerThread
    node_app: Starlette
    node_url: str  # through a proxy, as registered (the node's port is known only once bound)


@pytest.fixture
def token_cluster(tmp_path: Path) -> Iterator[TokenCluster]:
    web_settings = WebappSettings(
        port=0,
        node_urls=(),
        registry_secret=SECRET,
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        token_key_path=tmp_path / "token-key.pem",
        token_lifetime_s=TOKEN_LIFETIME_S,
    )
    with ServerThread(create_webapp(web_settings)) as web, LatencyProxy(0) as proxy:
        settings = NodeSettings(
            port=0,
            node_name="token-node",
            model_path=MODEL_PATH,
            intra_op_threads=1,
            public_url=proxy.ws_url,
            node_id="token-node",
            registry_url=web.http_url,  # the public key comes from here
            registry_secret=SECRET,
            allow_anonymous=False,  # as beyond loopback: tokens required
        )
        node_app = create_node_app(settings)
        with ServerThread(node_app) as node:
            proxy.target_port = node.port
            yield TokenCluster(web, node_app, proxy.ws_url)


def test_the_node_checks_tokens_with_the_key_it_fetched_from_its_registry(
    token_cluster: TokenCluster,
) -> None:
    authenticator = token_cluster.node_app.state.authenticator
    assert isinstance(authenticator, TokenVerifier)
    assert not authenticator.allow_anonymous
    assert authenticator.audiences == ("edgesight", "token-node")


def test_a_page_streams_across_token_expiries_without_a_gap(
    token_cluster: TokenCluster,
) -> None:
    async def scenario() -> Driver:
        async with Driver([token_cluster.node_url], web_url=token_cluster.webapp.http_url) as d:
            await d.wait_for(lambda: len(d.answered()) >= 3, timeout_s=30)
            started_ms = now_ms()
            # two and a half token lifetimes: the first token and its successor both lapse
            until_ms = started_ms + 2.5 * TOKEN_LIFETIME_S * 1000
            await d.wait_for(
                lambda: any((r.result_ms or 0) > until_ms for r in d.answered()), timeout_s=30
            )
        return d

    driver = asyncio.run(asyncio.wait_for(scenario(), 60))
    fetches = [a for _, a in driver.actions if a["do"] == "fetch_token"]
    assert len(fetches) >= 3  # the first token, then a refresh at 2/3 of each lifetime
    assert [e for _, _, e in driver.events if e["type"] == "access_refused"] == []
    assert driver.closes == []  # one connection throughout
    assert [name for _, _, name in driver.readies] == ["token-node"]
    assert driver.client.stream is not None
    assert driver.client.stream.welcome is not None
    assert driver.client.stream.welcome.identity == "anonymous"  # sign-in is off here


def test_a_page_without_a_token_is_refused_with_a_clear_message(
    token_cluster: TokenCluster,
) -> None:
    async def scenario() -> Driver:
        async with Driver([token_cluster.node_url]) as d:  # no web_url: no token to present
            await d.wait_for(
                lambda: any(e["type"] == "access_refused" for _, _, e in d.events), timeout_s=30
            )
        return d

    driver = asyncio.run(asyncio.wait_for(scenario(), 60))
    refusal = next(e for _, _, e in driver.events if e["type"] == "access_refused")
    assert "requires a stream token" in refusal["message"]
    assert driver.answered() == []


# -- issue 17: enrolled nodes, tokens scoped to one node each ---------------------------------
def test_a_failover_between_enrolled_nodes_uses_a_token_already_held(
    start_cluster: StartCluster,
) -> None:
    """Given two enrolled nodes that take only tokens for their own id, and a page that
    lists them and streams to the nearer one, when that node dies, then the page streams
    to the other with the token it already held: no token fetch between the kill and the
    first answer from the other node, no refusal."""
    cluster = start_cluster({"node-a": 0.0, "node-b": 40.0}, require_tokens=True)
    assert cluster.webapp is not None
    web_url = cluster.webapp.http_url
    killed_ms: list[float] = []

    async def scenario() -> Driver:
        registry_url = cluster.registry_url
        async with Driver(registry_url=registry_url, web_url=web_url, max_in_flight=1) as d:
            await d.wait_for(lambda: len(d.answered("node-a")) >= 3, timeout_s=20)
            # b's token comes with the list's tokens; wait until the page holds it
            await d.wait_for(lambda: "node-b" in d.client.tokens.node_tokens, timeout_s=10)
            killed_ms.append(now_ms())
            await asyncio.to_thread(cluster.nodes["node-a"].kill)
            await d.wait_for(lambda: len(d.answered("node-b")) >= 2, timeout_s=15)
        return d

    driver = asyncio.run(asyncio.wait_for(scenario(), 60))
    first_b_ms = min(r.result_ms or 0 for r in driver.answered("node-b"))
    fetched_between = [
        action
        for at_ms, action in driver.actions
        if action["do"] == "fetch_token" and killed_ms[0] <= at_ms <= first_b_ms
    ]
    assert fetched_between == []
    assert [e for _, _, e in driver.events if e["type"] == "access_refused"] == []
    assert [name for _, _, name in driver.readies] == ["node-a", "node-b"]
    assert driver.client.stream is not None
    assert driver.client.stream.welcome is not None
    assert driver.client.stream.welcome.identity == "anonymous"  # sign-in is off here
