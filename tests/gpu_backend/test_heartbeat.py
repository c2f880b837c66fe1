"""The node's heartbeat: against a real web app under uvicorn, and through an httpx
``MockTransport`` for the failures a real server would make awkward to stage."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trustme

from edgesight.cli import build_parser
from edgesight.serve_cli import _with_own_registry
from edgesight.serving import ServerThread
from edgesight.tls import server_context
from gpu_backend.app import create_app as create_node_app
from gpu_backend.engine import Float32Array, LoadedModel, UInt8Array
from gpu_backend.heartbeat import (
    HeartbeatSender,
    advertised_url,
    node_id,
    registry_ssl_context,
)
from gpu_backend.settings import NodeSettings, SettingsError
from tests.signalling_store import SignallingStore
from webapp.app import create_app as create_webapp
from webapp.registry_store import NodeEntry
from webapp.settings import WebappSettings

SECRET = "test-secret-0123456789abcdef"
SHA = "cd" * 32


def body(**changes: Any) -> dict[str, Any]:
    return {
        "node_id": "node-a",
        "url": "ws://node-a.example:8001/ws",
        "name": "node A",
        "site": "lab",
        "provider": "CPUExecutionProvider",
        "device": "cpu",
        "device_memory_bytes": 0,
        "model": "nanodet-g-416",
        "model_sha256": SHA,
        "streams": 0,
        "max_streams": 4,
        "queue_depth": 0,
        "inference_ms": 0.0,
        **changes,
    }


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests on, and lets a test wait until a number of them were answered."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.answered: list[tuple[str, int]] = []
        self._changed = asyncio.Condition()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        async with self._changed:
            self.answered.append((request.method, response.status_code))
            self._changed.notify_all()
        return response

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.answered) >= count), timeout_s
            )

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def webapp() -> Iterator[tuple[ServerThread, SignallingStore]]:
    store = SignallingStore()
    # a quick interval, and misses forgiven for long enough that a busy CI box cannot flap
    settings = WebappSettings(
        node_urls=(), registry_secret=SECRET, heartbeat_interval_s=0.05, missed_heartbeats=100
    )
    with ServerThread(create_webapp(settings, registry_store=store)) as server:
        yield server, store


def nodes(server: ServerThread, ca_file: Path | None = None) -> list[dict[str, Any]]:
    context = None if ca_file is None else ssl.create_default_context(cafile=ca_file)
    url = f"{server.http_url}/api/nodes"
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        listing: list[dict[str, Any]] = json.load(response)["nodes"]
        return listing


def test_heartbeats_register_refresh_and_deregister(
    webapp: tuple[ServerThread, SignallingStore],
) -> None:
    server, _ = webapp
    load = {"streams": 0}

    async def scenario() -> Recorder:
        recorder = Recorder(httpx.AsyncHTTPTransport())
        sender = HeartbeatSender(
            server.http_url, SECRET, lambda: body(**load), "node-a", transport=recorder
        )
        sender.start()
        await recorder.wait_for(2)  # beats go one by one: the first was fully handled
        assert sender.interval_s == 0.05  # the web app's interval, not the default
        [listed] = await asyncio.to_thread(nodes, server)
        assert (listed["id"], listed["streams"], listed["site"]) == ("node-a", 0, "lab")

        load["streams"] = 3
        # a heartbeat may have left before the change: two more surely carry it
        await recorder.wait_for(len(recorder.answered) + 2)
        [listed] = await asyncio.to_thread(nodes, server)
        assert listed["streams"] == 3

        await sender.stop()
        assert await asyncio.to_thread(nodes, server) == []
        return recorder

    recorder = asyncio.run(scenario())
    assert recorder.answered[0] == ("POST", 201)
    assert set(recorder.answered[1:-1]) == {("POST", 200)}
    assert recorder.answered[-1] == ("DELETE", 204)


def _mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def test_failures_are_logged_once_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        if len(attempts) <= 5:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"heartbeat_interval_s": 0.01})

    async def scenario() -> HeartbeatSender:
        sender = HeartbeatSender(
            "http://registry.invalid", SECRET, body, "node-a", _mock(handler), interval_s=0.01
        )
        for _ in range(7):  # driven beat by beat: no timing in the test
            await sender.beat()
        await sender.stop()
        return sender

    with caplog.at_level(logging.INFO, logger="gpu_backend.heartbeat"):
        sender = asyncio.run(scenario())

    assert sender.beats_ok == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # five failures of one kind: one line
    assert "cannot reach the registry" in warnings[0].getMessage()
    assert "work again" in caplog.text
    assert attempts[0].headers["authorization"] == f"Bearer {SECRET}"
    assert attempts[-1].method == "DELETE"
    assert attempts[-1].url.path == "/api/nodes/node-a"


def test_the_loop_survives_a_refusal_and_never_logs_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> int:
        refused = asyncio.Event()
        posts = 0

        def handler(request: httpx.Request) -> httpx.Response:
            nonlocal posts
            if request.method == "POST":
                posts += 1
                if posts == 3:
                    refused.set()
            return httpx.Response(401, json={"error": "unauthorized"})

        sender = HeartbeatSender(
            "http://registry.invalid", SECRET, body, "node-a", _mock(handler), interval_s=0.01
        )
        sender.start()
        await asyncio.wait_for(refused.wait(), 10)  # three tries: the loop kept going
        await sender.stop()
        return posts

    with caplog.at_level(logging.INFO, logger="gpu_backend.heartbeat"):
        asyncio.run(scenario())

    assert "refused the credential (401)" in caplog.text
    assert "could not deregister" in caplog.text
    assert SECRET not in caplog.text


def test_stop_does_not_hang_when_the_registry_is_gone(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def scenario() -> None:
        sender = HeartbeatSender("http://registry.invalid", SECRET, body, "node-a", _mock(handler))
        sender.start()
        await sender.stop()

    with caplog.at_level(logging.INFO, logger="gpu_backend.heartbeat"):
        asyncio.run(scenario())
    assert "could not deregister node node-a: ConnectError" in caplog.text


def test_stop_lets_a_heartbeat_in_flight_land_before_the_delete() -> None:
    # given a registry that takes its time over a heartbeat: the POST has left the node and
    # will be processed whatever the node does next (the server side is shielded)
    landed: list[str] = []

    async def scenario() -> None:
        release = asyncio.Event()
        posted = asyncio.Event()

        async def process_post() -> None:
            await release.wait()
            landed.append("POST")

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                server_side = asyncio.ensure_future(process_post())
                posted.set()
                await asyncio.shield(server_side)
                return httpx.Response(200, json={"heartbeat_interval_s": 60})
            landed.append(request.method)
            return httpx.Response(204)

        sender = HeartbeatSender(
            "http://registry", SECRET, body, "node-a", httpx.MockTransport(handler)
        )
        sender.start()
        await posted.wait()
        # when the node stops while that POST is in flight
        stopping = asyncio.create_task(sender.stop())
        # (a chance for a DELETE to overtake the POST: a stop that cancels it would send
        # the DELETE now; the outcome below does not depend on this wait's length)
        await asyncio.wait([stopping], timeout=0.05)
        release.set()
        await stopping

    asyncio.run(scenario())
    # then the DELETE is the last word: the node does not reappear
    assert landed == ["POST", "DELETE"]


# -- the node app's lifespan ------------------------------------------------------------


class FakeEngine:
    provider = "FakeExecutionProvider"
    device_name = "cpu"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def infer(self, images: UInt8Array) -> tuple[Float32Array, Float32Array]:
        n = images.shape[0]
        return np.zeros((n, 1, 4), np.float32), np.zeros((n, 1, self.num_classes), np.float32)


def fake_engine(settings: NodeSettings, model: LoadedModel) -> FakeEngine:
    return FakeEngine(len(model.card.class_names))


def test_a_node_registers_while_it_runs_and_leaves_when_it_stops(
    webapp: tuple[ServerThread, SignallingStore], node_settings: NodeSettings
) -> None:
    server, store = webapp
    settings = replace(
        node_settings,
        registry_url=server.http_url,
        registry_secret=SECRET,
        public_url="wss://node-b.example/ws",
        site="lab-2",
        node_id="node-b",
        max_streams=5,
    )

    with ServerThread(create_node_app(settings, engine_factory=fake_engine)):
        assert store.registered.wait(timeout=30)
        [listed] = nodes(server)
        assert listed["id"] == "node-b"
        assert listed["url"] == "wss://node-b.example/ws"
        assert listed["site"] == "lab-2"
        assert listed["name"] == settings.node_name
        assert listed["provider"] == "FakeExecutionProvider"
        assert listed["max_streams"] == 5
        assert listed["device_memory_bytes"] > 0  # system memory, on the CPU
        assert listed["wt_port"] > 0  # WebTransport, and the hash a page pins (issue 16)
        assert len(bytes.fromhex(listed["wt_cert_sha256"])) == 32
        assert (
            listed["model_sha256"]
            == json.loads(settings.model_path.with_name("model.json").read_text())["sha256"]
        )

    assert store.removed.is_set()  # deregistered during shutdown, before it returned
    assert nodes(server) == []


def test_heartbeat_body_is_what_the_web_app_accepts(node_settings: NodeSettings) -> None:
    settings = replace(node_settings, port=8001, host="0.0.0.0")
    entry = NodeEntry.parse(body(node_id=node_id(settings), url=advertised_url(settings)))
    assert entry.url.startswith("ws://")
    assert entry.url.endswith(":8001/ws")
    assert "0.0.0.0" not in entry.url


# -- settings and the CLI ---------------------------------------------------------------


def test_registry_settings_are_checked_at_start(node_settings: NodeSettings) -> None:
    with pytest.raises(SettingsError, match="EDGESIGHT_REGISTRY_SECRET") as raised:
        replace(node_settings, port=8001, registry_url="http://web:8000")
    assert "required" in str(raised.value)
    with pytest.raises(SettingsError, match="EDGESIGHT_PUBLIC_URL"):  # port 0: cannot guess
        replace(node_settings, registry_url="http://web:8000", registry_secret=SECRET)
    with pytest.raises(SettingsError, match="EDGESIGHT_REGISTRY_URL"):
        replace(node_settings, port=8001, registry_url="web:8000", registry_secret=SECRET)
    settings = NodeSettings.from_env(
        {
            "EDGESIGHT_REGISTRY_URL": "http://web:8000",
            "EDGESIGHT_REGISTRY_SECRET": SECRET,
            "EDGESIGHT_SITE": "lab",
        }
    )
    assert settings.site == "lab"
    assert SECRET not in repr(settings)


def test_node_flags_reach_the_settings() -> None:
    from edgesight.serve_cli import _node_settings

    args = build_parser().parse_args(
        ["node", "--site", "lab", "--public-url", "wss://n/ws", "--registry-url", "http://w:1"]
    )
    settings = _node_settings(args, {"EDGESIGHT_REGISTRY_SECRET": SECRET})
    assert (settings.site, settings.public_url, settings.registry_url) == (
        "lab",
        "wss://n/ws",
        "http://w:1",
    )


def test_serve_registers_its_node_with_its_own_web_app_only_with_a_secret() -> None:
    from edgesight.serve_cli import _node_settings

    args = build_parser().parse_args(["serve", "--port", "8100", "--node-port", "8101"])
    plain = _with_own_registry(_node_settings(args, {}), args, {})
    assert plain.registry_url == ""  # no secret: the static URL covers it
    assert plain.origin_policy.allows("http://localhost:8100")  # its web app's pages
    assert not plain.origin_policy.allows("http://localhost:9999")

    env = {"EDGESIGHT_REGISTRY_SECRET": SECRET}
    registering = _with_own_registry(_node_settings(args, env), args, env)
    assert registering.registry_url == "http://127.0.0.1:8100"
    assert registering.public_url == "ws://127.0.0.1:8101/ws"  # the static entry it replaces


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("ws://0:99999/ws", "port from 1 to 65535"),
        ("ws://[::1/ws", "IPv6 address in brackets"),
        ("wss://user@node/ws", "user name or password"),
    ],
)
def test_a_public_url_browsers_refuse_stops_the_node_at_start(
    public_url: str, expected: str
) -> None:
    with pytest.raises(SettingsError, match="EDGESIGHT_PUBLIC_URL") as raised:
        NodeSettings.from_env({"EDGESIGHT_PUBLIC_URL": public_url})
    assert expected in str(raised.value)


def test_the_hostname_template_is_a_valid_public_url() -> None:
    settings = NodeSettings(public_url="ws://{hostname}:8101/ws")
    assert settings.public_url == "ws://{hostname}:8101/ws"


# -- TLS: an https registry verified against the CA the node is given (issue 8) -----------


def test_a_node_registers_over_https_trusting_only_its_ca_file(
    node_settings: NodeSettings, tmp_path: Path
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "web.pem", tmp_path / "web-key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    store = SignallingStore()
    web_settings = WebappSettings(
        node_urls=(), registry_secret=SECRET, heartbeat_interval_s=0.05, missed_heartbeats=100
    )
    web = ServerThread(
        create_webapp(web_settings, registry_store=store), ssl_context=server_context(cert, key)
    )
    settings = replace(
        node_settings,
        registry_url=web.http_url,
        registry_secret=SECRET,
        public_url="wss://node-t.example/ws",
        node_id="node-t",
        ca_file=ca_file,
    )
    assert settings.registry_url.startswith("https://")

    async def without_the_ca() -> bool:
        # the system store does not know the test CA: the secret is never sent
        sender = HeartbeatSender(
            web.http_url, SECRET, lambda: body(), "node-u", verify=ssl.create_default_context()
        )
        try:
            return await sender.beat()
        finally:
            await sender.stop()

    with web:
        with ServerThread(create_node_app(settings, engine_factory=fake_engine)):
            assert store.registered.wait(timeout=30)
        assert [n["id"] for n in nodes(web, ca_file)] == []  # deregistered over https too
        store.registered.clear()
        assert asyncio.run(without_the_ca()) is False
        assert not store.registered.is_set()


def test_a_tls_node_advertises_wss(node_settings: NodeSettings, tmp_path: Path) -> None:
    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "n.pem", tmp_path / "n-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    settings = replace(node_settings, port=8001, host="10.0.0.5", tls_cert=cert, tls_key=key)
    assert advertised_url(settings) == "wss://10.0.0.5:8001/ws"


def test_tls_settings_come_in_pairs_and_must_exist(
    node_settings: NodeSettings, tmp_path: Path
) -> None:
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(SettingsError, match=r"EDGESIGHT_TLS_KEY \(tls_key\): expected it"):
        replace(node_settings, tls_cert=tmp_path / "c.pem")
    with pytest.raises(SettingsError, match=r"EDGESIGHT_CA_FILE \(ca_file\): expected an exist"):
        NodeSettings.from_env({"EDGESIGHT_CA_FILE": str(tmp_path / "nowhere.pem")})
    settings = NodeSettings.from_env({"EDGESIGHT_CA_FILE": str(tmp_path / "c.pem")})
    assert settings.ca_file == tmp_path / "c.pem"
    bad_ca = replace(settings, registry_url="https://w:1", registry_secret=SECRET, port=1)
    with pytest.raises(SettingsError, match="EDGESIGHT_CA_FILE"):
        registry_ssl_context(bad_ca)


def test_serve_with_tls_registers_over_https_and_lists_a_wss_node(tmp_path: Path) -> None:
    from edgesight.serve_cli import _local_node_url, _node_settings

    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "s.pem", tmp_path / "s-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    args = build_parser().parse_args(
        [
            "serve",
            "--port",
            "8100",
            "--node-port",
            "8101",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ]
    )
    env = {"EDGESIGHT_REGISTRY_SECRET": SECRET}
    registering = _with_own_registry(_node_settings(args, env), args, env)
    assert registering.registry_url == "https://127.0.0.1:8100"
    assert registering.public_url == "wss://127.0.0.1:8101/ws"
    assert _local_node_url(_node_settings(args, {})) == "wss://127.0.0.1:8101/ws"


def test_a_full_registry_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    why = "the registry holds its maximum of 2 nodes (EDGESIGHT_REGISTRY_MAX_NODES)"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": why}, headers={"Retry-After": "6"})

    async def scenario() -> bool:
        sender = HeartbeatSender("http://registry.invalid", SECRET, body, "node-a", _mock(handler))
        return await sender.beat()

    with caplog.at_level(logging.WARNING, logger="gpu_backend.heartbeat"):
        assert asyncio.run(scenario()) is False

    assert f"the registry answered HTTP 503: {why}" in caplog.text
