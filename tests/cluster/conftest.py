"""A cluster on loopback: a web app with the registry, and real nodes (real onnxruntime)
each behind a ``LatencyProxy`` that makes it look near or far."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from tests.cluster.latency_proxy import LatencyProxy
from tests.conftest import MODEL_PATH
from webapp.app import create_app as create_webapp
from webapp.node_identity import NodeCredentials
from webapp.settings import WebappSettings
from webapp.tokens import TokenSigner

SECRET = "cluster-test-secret-0123456789"
HEARTBEAT_INTERVAL_S = 0.5  # fresh load figures in the list; the page still polls every 2 s


@dataclass
class ClusterNode:
    name: str
    proxy: LatencyProxy
    server: ServerThread

    @property
    def url(self) -> str:
        """What clients use: the proxy's address, which the node also registers."""
        return self.proxy.ws_url

    def kill(self) -> None:
        """As a SIGKILL looks from outside: every connection reset, the port closed, and
        then no more heartbeats (the node deregisters as it stops; a dead one would
        expire instead, which only takes longer)."""
        self.proxy.kill()
        self.server.stop()


@dataclass
class Cluster:
    nodes: dict[str, ClusterNode] = field(default_factory=dict)
    webapp: ServerThread | None = None
    webapp_proxy: LatencyProxy | None = None  # where pages reach the web app

    @property
    def registry_url(self) -> str:
        """The list as pages fetch it (through the web app's proxy)."""
        assert self.webapp_proxy is not None, "this cluster has no registry"
        return f"http://127.0.0.1:{self.webapp_proxy.port}/api/nodes"

    def urls(self) -> list[str]:
        return [node.url for node in self.nodes.values()]

    def listed(self) -> dict[str, dict[str, object]]:
        """The registry's list, by node name."""
        with urllib.request.urlopen(self.registry_url, timeout=5) as response:
            return {node["name"]: node for node in json.load(response)["nodes"]}

    def wait_listed(self, condition: Callable[[dict[str, dict[str, object]]], bool]) -> None:
        deadline = time.monotonic() + 10
        while not condition(self.listed()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"registry list never matched: {self.listed()}")
            threading.Event().wait(0.05)  # heartbeats arrive every HEARTBEAT_INTERVAL_S


StartCluster = Callable[..., Cluster]


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[StartCluster]:
    """``start_cluster({"node-a": 0, "node-b": 50}, registry=True, max_streams={},
    static_urls=(), webapp_delay_ms=0, require_tokens=False)``: nodes behind proxies adding
    that many ms each way, listed fastest first, registering with a web app (which also
    lists ``static_urls``, and which pages reach through a proxy of its own) if
    ``registry``, each enrolled with a credential of its own (issue 17). With
    ``require_tokens`` the nodes take only stream tokens for their own id.
    The fastest gets the URL that sorts last, so a client that ignored latency (unmeasured
    nodes rank by URL) would pick the wrong node and fail the test."""
    stoppable: list[ServerThread | LatencyProxy] = []

    def _start(
        delays_ms: dict[str, float],
        registry: bool = True,
        max_streams: dict[str, int] | None = None,
        static_urls: tuple[str, ...] = (),
        webapp_delay_ms: float = 0.0,
        require_tokens: bool = False,
    ) -> Cluster:
        cluster = Cluster()
        key_path = tmp_path / "token-key.pem"
        # the web app reads this key file too: the credentials are its own
        enrol = NodeCredentials(TokenSigner.from_file(key_path, "edgesight", 300).enrolment_key())
        if registry:
            web_settings = WebappSettings(
                port=0,
                node_urls=static_urls,  # listed beside the registered nodes
                heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
                token_key_path=key_path,
            )
            cluster.webapp = ServerThread(create_webapp(web_settings)).start()
            cluster.webapp_proxy = LatencyProxy(cluster.webapp.port, webapp_delay_ms).start()
            stoppable.extend([cluster.webapp, cluster.webapp_proxy])
        # A proxy needs the node's port, the node needs the proxy's URL to register it:
        # start the proxies first and point them at the nodes once those are bound.
        proxies = sorted((LatencyProxy(0).start() for _ in delays_ms), key=lambda p: p.ws_url)
        stoppable.extend(proxies)
        for (name, delay_ms), proxy in zip(delays_ms.items(), reversed(proxies), strict=True):
            settings = NodeSettings(
                port=0,
                node_name=name,
                model_path=MODEL_PATH,
                intra_op_threads=1,  # two cores for three nodes and the client
                max_streams=(max_streams or {}).get(name, 32),
                public_url=proxy.ws_url,
                node_id=name,
                registry_url=cluster.webapp.http_url if cluster.webapp else "",
                node_credential=enrol.issue(name) if cluster.webapp else "",
                allow_anonymous=False if require_tokens else None,
            )
            server = ServerThread(create_node_app(settings)).start()
            stoppable.append(server)
            proxy.target_port, proxy.delay_ms = server.port, delay_ms
            cluster.nodes[name] = ClusterNode(name, proxy, server)
        if registry:
            cluster.wait_listed(lambda listed: set(delays_ms) <= set(listed))
        return cluster

    yield _start
    for item in reversed(stoppable):  # nodes first (they deregister), then the web app
        item.stop()
