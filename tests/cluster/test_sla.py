"""The latency objective acts (issue 12): a node slowed past its objective (a test-only
delay around its real engine) is marked degraded by the registry and the page moves to a
node that holds it; once the delay is gone the node recovers in the registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.app import onnx_engine
from gpu_backend.engine import Engine, Float32Array, LoadedModel, UInt8Array
from gpu_backend.settings import NodeSettings
from pyodide_client.routing import RoutingSettings
from tests.cluster.conftest import SECRET, Cluster, ClusterNode
from tests.cluster.driver import Driver
from tests.cluster.latency_proxy import LatencyProxy
from tests.conftest import MODEL_PATH
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings

# Generous for a shared 2-core machine: a healthy CPU node answers in tens of ms.
OBJECTIVE_MS = 150.0
SLOW_S = 0.3  # what the delay adds to each batch: twice the objective
WINDOW_S = 1.0  # node p95 window and registry breach/hold window alike


class DelayedEngine:
    """The real engine, plus ``delay_s`` per batch (a GPU thermally throttled, say)."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.delay_s = 0.0

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def device_name(self) -> str:
        return self.inner.device_name

    def infer(self, images: UInt8Array) -> tuple[Float32Array, Float32Array]:
        if self.delay_s:
            time.sleep(self.delay_s)  # the simulated slow device, on the inference thread
        return self.inner.infer(images)


@contextmanager
def _cluster(nodes: dict[str, float]) -> Iterator[tuple[Cluster, dict[str, DelayedEngine]]]:
    """A web app and ``nodes`` (name: added network latency in ms), each with a delay."""
    stoppable: list[ServerThread | LatencyProxy] = []
    web_settings = WebappSettings(
        port=0,
        node_urls=(),
        registry_secret=SECRET,
        heartbeat_interval_s=0.2,
        sla_window_s=WINDOW_S,
    )
    cluster = Cluster(webapp=ServerThread(create_webapp(web_settings)).start())
    assert cluster.webapp is not None
    cluster.webapp_proxy = LatencyProxy(cluster.webapp.port).start()
    stoppable += [cluster.webapp, cluster.webapp_proxy]
    engines: dict[str, DelayedEngine] = {}
    for name, delay_ms in nodes.items():
        proxy = LatencyProxy(0, delay_ms).start()
        settings = NodeSettings(
            port=0,
            node_name=name,
            node_id=name,
            model_path=MODEL_PATH,
            intra_op_threads=1,
            public_url=proxy.ws_url,
            registry_url=cluster.webapp.http_url,
            registry_secret=SECRET,
            sla_p95_ms=OBJECTIVE_MS,
            sla_window_s=WINDOW_S,
        )

        def factory(s: NodeSettings, model: LoadedModel, name: str = name) -> Engine:
            engines[name] = DelayedEngine(onnx_engine(s, model))
            return engines[name]

        server = ServerThread(create_node_app(settings, engine_factory=factory)).start()
        proxy.target_port = server.port
        stoppable += [proxy, server]
        cluster.nodes[name] = ClusterNode(name, proxy, server)
    cluster.wait_listed(lambda listed: set(nodes) <= set(listed))
    try:
        yield cluster, engines
    finally:
        for item in reversed(stoppable):
            item.stop()


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, dict[str, DelayedEngine]]]:
    # node-a is nearer (no added latency), so the page starts there
    with _cluster({"node-a": 0.0, "node-b": 20.0}) as started:
        yield started


def test_a_node_past_its_objective_is_degraded_the_page_moves_and_it_recovers(
    cluster: tuple[Cluster, dict[str, DelayedEngine]],
) -> None:
    c, engines = cluster
    # A dwell no test waits out: only the registry's verdict can move this page.
    routing = RoutingSettings(dwell_ms=600_000, min_switch_interval_ms=600_000)

    async def scenario() -> None:
        async with Driver(registry_url=c.registry_url, routing=routing) as driver:
            await driver.wait_for(lambda: len(driver.answered("node-a")) >= 5, timeout_s=20)
            engines["node-a"].delay_s = SLOW_S
            await driver.wait_for(lambda: driver.client.node_name == "node-b", timeout_s=25)
            await driver.wait_for(lambda: len(driver.answered("node-b")) >= 3, timeout_s=10)
        # A voluntary, make-before-break move ("join": the old link streams until the new
        # node's HELLO), not a stall or failure and a reconnect: with this dwell only the
        # registry's verdict (routing.py) can make one.
        moves = [
            a for _, a in driver.actions if a["do"] in ("connect", "switch", "join", "abandon")
        ]
        assert moves == [
            {"do": "connect", "url": c.nodes["node-a"].url},
            {"do": "join", "url": c.nodes["node-b"].url},
        ]

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert c.listed()["node-a"]["degraded"] is True
    assert c.listed()["node-b"]["degraded"] is False

    engines["node-a"].delay_s = 0.0
    # Idle now, node-a reports no breach; a window later the registry clears it.
    c.wait_listed(lambda listed: listed["node-a"]["degraded"] is False)


def test_with_every_node_degraded_a_faster_browser_takes_over_and_the_node_is_used_again() -> None:
    """One node, slowed past its objective: the page, whose browser did a frame in 40 ms
    (its worker's timed warm-up), leaves it for the browser; once the node holds its
    objective again the page goes back to it."""
    routing = RoutingSettings(dwell_ms=500.0)

    async def scenario(c: Cluster, engine: DelayedEngine) -> None:
        async with Driver(registry_url=c.registry_url, routing=routing) as driver:
            client = driver.client
            client.local_steps.start(is_cross_origin_isolated=False, hardware_concurrency=1)
            assert client.local_steps.check_model(client.card.sha256) == ""
            client.local_steps.loaded(warmup_ms=40.0)  # no frame runs locally here: the Driver
            await driver.wait_for(lambda: len(driver.answered("node-a")) >= 5, timeout_s=20)
            engine.delay_s = SLOW_S
            await driver.wait_for(lambda: client.mode == "local", timeout_s=25)
            assert {"do": "abandon", "reason": "the browser is faster"} in [
                a for _, a in driver.actions
            ]
            assert "this browser is faster (40 ms a frame" in client.route_note
            engine.delay_s = 0.0
            # Idle now, the node reports no breach; a window later the registry clears it
            # and the page returns at once.
            await driver.wait_for(lambda: client.mode == "node", timeout_s=25)
            assert client.node_name == "node-a"

    with _cluster({"node-a": 0.0}) as (c, engines):
        asyncio.run(asyncio.wait_for(scenario(c, engines["node-a"]), 90))
