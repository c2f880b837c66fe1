"""An enrolled node (issue 17): its id comes from its credential, its heartbeats carry the
credential, and it accepts stream tokens for its own id only."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.heartbeat import node_id
from gpu_backend.settings import NodeSettings, SettingsError
from gpu_backend.tokens import TokenVerifier
from pyodide_client.stream import AccessRefused, Ready
from tests.gpu_backend.test_tokens import PAGE, _node_app_state, _opened
from webapp.node_identity import NodeCredentials
from webapp.tokens import TokenSigner


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(Ed25519PrivateKey.generate(), "edgesight", lifetime_s=60)


@pytest.fixture
def enrolled_b(node_settings: NodeSettings, signer: TokenSigner, tmp_path: Path) -> NodeSettings:
    pem = tmp_path / "token-key.pub.pem"
    pem.write_bytes(signer.public_key_pem())
    credential = NodeCredentials(signer.enrolment_key()).issue("node-b")
    return replace(node_settings, token_public_key=str(pem), node_credential=credential)


def test_the_node_id_is_the_one_enrolled(enrolled_b: NodeSettings) -> None:
    assert node_id(enrolled_b) == "node-b"
    with pytest.raises(SettingsError, match=r"EDGESIGHT_NODE_ID .*'node-b'.*got 'node-a'"):
        replace(enrolled_b, node_id="node-a")
    assert node_id(replace(enrolled_b, node_id="node-b")) == "node-b"


def test_a_malformed_credential_stops_the_node_without_echoing_it() -> None:
    with pytest.raises(SettingsError, match="EDGESIGHT_NODE_CREDENTIAL") as raised:
        NodeSettings.from_env({"EDGESIGHT_NODE_CREDENTIAL": "hunter2-secret"})
    assert "hunter2" not in str(raised.value)


def test_a_registry_needs_a_credential_or_the_legacy_secret() -> None:
    with pytest.raises(SettingsError, match=r"EDGESIGHT_NODE_CREDENTIAL .*edgesight enrol"):
        NodeSettings(registry_url="http://web:8000", public_url="ws://n:8001/ws")
    credential = NodeCredentials(b"k" * 32).issue("n1")
    enrolled = NodeSettings(
        registry_url="http://web:8000", public_url="ws://n:8001/ws", node_credential=credential
    )
    assert "esn1" not in repr(enrolled)  # kept out of logs that print settings


def test_an_enrolled_node_accepts_tokens_for_its_own_id_only(enrolled_b: NodeSettings) -> None:
    authenticator = _node_app_state(enrolled_b)
    assert isinstance(authenticator, TokenVerifier)
    assert authenticator.audiences == ("node-b",)  # not the cluster's


def test_a_token_for_node_a_is_refused_by_node_b(
    enrolled_b: NodeSettings, signer: TokenSigner
) -> None:
    """Given node b, enrolled, when a client presents a page's token for node a (or the
    cluster-wide one), then b refuses it; b's own token streams."""
    with ServerThread(
        create_node_app(enrolled_b), max_message_bytes=enrolled_b.max_message_bytes
    ) as server:
        for audience in ("node-a", "edgesight"):
            token = signer.issue("alice", PAGE, audience=audience).token
            with _opened(server, token) as (_, _, events):
                (refused,) = events
                assert isinstance(refused, AccessRefused)
                assert f"token is for audience '{audience}'" in refused.message
        with _opened(server, signer.issue("alice", PAGE, audience="node-b").token) as (
            _,
            _,
            events,
        ):
            (ready,) = events
            assert isinstance(ready, Ready)
