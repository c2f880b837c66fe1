"""Node identities (issue 17): per-node credentials, entries bound to them, and stream
tokens scoped to one node each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gpu_backend.access import AccessDenied
from gpu_backend.node_credential import credential_node_id
from gpu_backend.tokens import TokenVerifier, load_public_key
from webapp.app import create_app
from webapp.node_identity import CredentialError, NodeCredentials
from webapp.node_tokens import wanted_node_ids
from webapp.registry_store import MemoryStore, NodeEntry
from webapp.settings import WebappSettings
from webapp.tokens import TokenSigner

from .conftest import Backend

BASE = "http://testserver"
LEGACY_SECRET = "legacy-secret-0123456789"


def heartbeat(node_id: str, url: str, **changes: Any) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "url": url,
        "name": node_id,
        "site": "lab",
        "provider": "CPUExecutionProvider",
        "device": "cpu",
        "model": "nanodet-g-416",
        "model_sha256": "ab" * 32,
        "streams": 0,
        "max_streams": 32,
        "queue_depth": 0,
        "inference_ms": 10.0,
        **changes,
    }


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "token-key.pem"


@pytest.fixture
def signer(key_path: Path) -> TokenSigner:
    return TokenSigner.from_file(key_path, "lab", 300)  # the web app reads the same file


@pytest.fixture
def credentials(signer: TokenSigner) -> NodeCredentials:
    return NodeCredentials(signer.enrolment_key())


def make_client(key_path: Path, **changes: Any) -> TestClient:
    settings = WebappSettings(node_urls=(), token_key_path=key_path, cluster_name="lab", **changes)
    return TestClient(create_app(settings, registry_store=MemoryStore()), base_url=BASE)


@pytest.fixture
def client(key_path: Path, signer: TokenSigner) -> Iterator[TestClient]:
    with make_client(key_path) as c:
        yield c


def listed(client: TestClient) -> dict[str, str]:
    return {n["id"]: n["url"] for n in client.get("/api/nodes").json()["nodes"]}


# -- credentials ---------------------------------------------------------------------------
def test_a_credential_names_its_node_and_only_its_key_makes_it(
    credentials: NodeCredentials,
) -> None:
    credential = credentials.issue("lab2.gpu-0")
    assert credential.startswith("esn1.lab2.gpu-0.")
    assert credential_node_id(credential) == "lab2.gpu-0"
    assert credentials.node_id(credential) == "lab2.gpu-0"
    other = NodeCredentials(b"k" * 32)
    with pytest.raises(CredentialError, match="not issued by this web app's key"):
        other.node_id(credential)
    # a node cannot turn its own credential into another node's
    mac = credential.rpartition(".")[2]
    with pytest.raises(CredentialError, match="node-a"):
        credentials.node_id(f"esn1.node-a.{mac}")
    for junk in ("esn1.", "esn1.x", "esn1..mac", "esn1.bad id.mac"):
        with pytest.raises(CredentialError, match="not a node credential"):
            credentials.node_id(junk)
    with pytest.raises(ValueError, match="node id"):
        credentials.issue("bad id")


# -- entries bound to credentials -----------------------------------------------------------
def test_node_b_cannot_overwrite_or_remove_node_as_entry(
    client: TestClient, credentials: NodeCredentials
) -> None:
    a, b = credentials.issue("node-a"), credentials.issue("node-b")
    assert (
        client.post(
            "/api/nodes/register", json=heartbeat("node-a", "ws://a:8001/ws"), headers=bearer(a)
        ).status_code
        == 201
    )
    hijack = client.post(
        "/api/nodes/register", json=heartbeat("node-a", "ws://evil:8001/ws"), headers=bearer(b)
    )
    assert hijack.status_code == 403
    assert "node node-b's" in hijack.json()["error"]
    assert client.delete("/api/nodes/node-a", headers=bearer(b)).status_code == 403
    assert listed(client) == {"node-a": "ws://a:8001/ws"}

    # b's own entry, and a's refresh and leaving, work with their own credentials
    assert (
        client.post(
            "/api/nodes/register", json=heartbeat("node-b", "ws://b:8001/ws"), headers=bearer(b)
        ).status_code
        == 201
    )
    refreshed = client.post(
        "/api/nodes/register", json=heartbeat("node-a", "ws://a:8001/ws"), headers=bearer(a)
    )
    assert refreshed.status_code == 200
    assert client.delete("/api/nodes/node-a", headers=bearer(a)).status_code == 204
    assert listed(client) == {"node-b": "ws://b:8001/ws"}


def test_forged_credentials_and_shared_secrets_are_refused_without_a_legacy_secret(
    client: TestClient, credentials: NodeCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    forged = NodeCredentials(b"f" * 32).issue("node-a")
    body = heartbeat("node-a", "ws://a:8001/ws")
    assert client.post("/api/nodes/register", json=body, headers=bearer(forged)).status_code == 401
    assert forged not in caplog.text
    no_secret = client.post("/api/nodes/register", json=body, headers=bearer(LEGACY_SECRET))
    assert no_secret.status_code == 403
    assert "edgesight enrol" in no_secret.json()["error"]
    assert client.post("/api/nodes/register", json=body).status_code == 401
    assert listed(client) == {}


def test_the_legacy_shared_secret_still_registers_any_id(
    key_path: Path, credentials: NodeCredentials
) -> None:
    with make_client(key_path, registry_secret=LEGACY_SECRET) as client:
        body = heartbeat("node-a", "ws://a:8001/ws")
        assert (
            client.post("/api/nodes/register", json=body, headers=bearer(LEGACY_SECRET)).status_code
            == 201
        )
        enrolled = bearer(credentials.issue("node-a"))
        assert client.post("/api/nodes/register", json=body, headers=enrolled).status_code == 200


def test_a_revoked_nodes_credential_is_refused_and_gets_no_tokens(
    key_path: Path, credentials: NodeCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WebappSettings.from_env(
        {"EDGESIGHT_REVOKED_NODES": "node-lost, node-old"},
        node_urls=(),
        token_key_path=key_path,
        cluster_name="lab",
    )
    assert settings.revoked_nodes == ("node-lost", "node-old")
    store = MemoryStore()
    with TestClient(create_app(settings, registry_store=store), base_url=BASE) as client:
        lost = bearer(credentials.issue("node-lost"))
        body = heartbeat("node-lost", "ws://lost:8001/ws")
        assert client.post("/api/nodes/register", json=body, headers=lost).status_code == 401
        assert "node node-lost's credential is revoked" in caplog.text
        kept = bearer(credentials.issue("node-kept"))
        body = heartbeat("node-kept", "ws://kept:8001/ws")
        assert client.post("/api/nodes/register", json=body, headers=kept).status_code == 201
        # an entry from before the revocation (shared Redis, another instance) stays listed
        # until it expires, but pages get no token for it meanwhile
        asyncio.run(store.put(NodeEntry.parse(heartbeat("node-lost", "ws://l/ws")), 60.0, 10))
        answer = client.post("/api/token?nodes=node-lost,node-kept", headers={"Origin": BASE})
        assert set(answer.json()["node_tokens"]) == {"node-kept"}


def test_no_node_may_take_the_cluster_name_as_its_id(
    client: TestClient, credentials: NodeCredentials
) -> None:
    answer = client.post(
        "/api/nodes/register",
        json=heartbeat("lab", "ws://a:8001/ws"),
        headers=bearer(credentials.issue("lab")),
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "node_id"


# -- tokens scoped to one node --------------------------------------------------------------
def test_the_token_answer_carries_a_token_per_asked_registered_node(
    client: TestClient, credentials: NodeCredentials, signer: TokenSigner
) -> None:
    for node_id in ("node-a", "node-b"):
        client.post(
            "/api/nodes/register",
            json=heartbeat(node_id, f"ws://{node_id}:8001/ws"),
            headers=bearer(credentials.issue(node_id)),
        )
    answer = client.post("/api/token?nodes=node-a,unknown,node-a", headers={"Origin": BASE})
    assert answer.status_code == 200
    tokens = answer.json()["node_tokens"]
    assert set(tokens) == {"node-a"}  # only registered ids, each once

    key = load_public_key(signer.public_key_pem(), "test")
    node_a = TokenVerifier(key, ["node-a"])  # an enrolled node: its own id only
    node_b = TokenVerifier(key, ["node-b"])
    assert node_a.authenticate(tokens["node-a"], BASE).identity == "anonymous"
    with pytest.raises(AccessDenied, match="audience 'node-a'"):
        node_b.authenticate(tokens["node-a"], BASE)
    with pytest.raises(AccessDenied, match="audience 'lab'"):
        node_a.authenticate(answer.json()["token"], BASE)  # the cluster's: not here

    default = client.post("/api/token", headers={"Origin": BASE}).json()["node_tokens"]
    assert set(default) == {"node-a", "node-b"}  # what GET /api/nodes lists


def test_live_ids_answers_for_the_ids_asked_on_both_stores(backend: Backend) -> None:
    """The token route checks a page's ids with ``live_ids`` (a cost in the ids asked,
    not in the registry's size); expired ids are not live."""
    store = backend.store()

    async def scenario() -> tuple[set[str], set[str], set[str]]:
        await store.open()
        try:
            for node_id in ("node-a", "node-b"):
                entry = NodeEntry.parse(heartbeat(node_id, f"ws://{node_id}:8001/ws"))
                await store.put(entry, ttl_s=5.0, max_entries=10)
            before = await store.live_ids(["node-a", "node-x", "node-b"])
            nothing = await store.live_ids([])
            backend.advance(6.0)
            after = await store.live_ids(["node-a", "node-b"])
        finally:
            await store.close()
        return before, nothing, after

    before, nothing, after = asyncio.run(scenario())
    assert before == {"node-a", "node-b"}
    assert nothing == set()
    assert after == set()


def test_wanted_node_ids_are_bounded_and_well_formed() -> None:
    assert wanted_node_ids(None, 16) is None
    assert wanted_node_ids("", 16) == []
    assert wanted_node_ids("a,b,,a,bad id,c", 2) == ["a", "b"]
    assert len(wanted_node_ids(",".join(f"n{i}" for i in range(1000)), 16) or []) == 16
