"""TokenVerifier: offline checks of the web app's stream tokens, one refusal per way a
token can be wrong, each with a message that says which."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient

from gpu_backend.access import ANONYMOUS, AccessDenied, AnonymousAccess, Grant
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from gpu_backend.tokens import (
    MAX_LIFETIME_S,
    TokenKeyError,
    TokenVerifier,
    load_public_key,
    node_authenticator,
)
from pyodide_client.protocol import ErrorCode
from tests.gpu_backend.fake_engine import FakeEngine
from webapp.tokens import TokenSigner

ORIGIN = "https://edge.example:8443"
NOW_S = 1_800_000_000.0


class Clock:
    def __init__(self, now_s: float = NOW_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> TokenSigner:
    return TokenSigner(Ed25519PrivateKey.generate(), "lab", lifetime_s=300, clock=clock)


@pytest.fixture
def verifier(signer: TokenSigner, clock: Clock) -> TokenVerifier:
    key = load_public_key(signer.public_key_pem(), "test")
    return TokenVerifier(key, ["lab", "node-7"], clock=clock)


def refusal(verifier: TokenVerifier, token: str, origin: str | None = ORIGIN) -> AccessDenied:
    with pytest.raises(AccessDenied) as caught:
        verifier.authenticate(token, origin)
    assert token not in caught.value.message or not token
    return caught.value


def test_a_valid_token_grants_its_identity_for_its_remaining_life(
    signer: TokenSigner, verifier: TokenVerifier, clock: Clock
) -> None:
    token = signer.issue("alice", ORIGIN).token
    clock.now_s += 100
    assert verifier.authenticate(token, ORIGIN) == Grant("alice", 200.0)


def test_the_node_id_is_an_audience_too(signer: TokenSigner, verifier: TokenVerifier) -> None:
    token = signer.issue("kiosk:lobby", ORIGIN, audience="node-7").token
    assert verifier.authenticate(token, ORIGIN).identity == "kiosk:lobby"


def test_an_expired_token_is_refused_saying_so(
    signer: TokenSigner, verifier: TokenVerifier, clock: Clock
) -> None:
    token = signer.issue("alice", ORIGIN).token
    clock.now_s += 300 + 30
    denied = refusal(verifier, token)
    assert denied.code is ErrorCode.AUTH_FAILED
    assert "expired 30 s ago" in denied.message


def test_a_token_forged_with_another_key_is_refused(verifier: TokenVerifier, clock: Clock) -> None:
    forger = TokenSigner(Ed25519PrivateKey.generate(), "lab", lifetime_s=300, clock=clock)
    denied = refusal(verifier, forger.issue("mallory", ORIGIN).token)
    assert "signature does not verify" in denied.message


def test_a_token_for_another_audience_is_refused_naming_both(
    signer: TokenSigner, verifier: TokenVerifier
) -> None:
    denied = refusal(verifier, signer.issue("alice", ORIGIN, audience="other-cluster").token)
    assert "'other-cluster'" in denied.message
    assert "'lab' or 'node-7'" in denied.message


def test_a_token_issued_for_another_origin_is_refused(
    signer: TokenSigner, verifier: TokenVerifier
) -> None:
    token = signer.issue("alice", ORIGIN).token
    denied = refusal(verifier, token, origin="https://evil.example")
    assert "issued for pages of https://edge.example:8443" in denied.message
    assert "https://evil.example" in denied.message
    assert "sent no Origin" in refusal(verifier, token, origin=None).message


def test_a_token_without_origin_binding_works_from_anywhere(
    signer: TokenSigner, verifier: TokenVerifier
) -> None:
    token = signer.issue("bench", None).token
    assert verifier.authenticate(token, None).identity == "bench"
    assert verifier.authenticate(token, "https://any.example").identity == "bench"


def test_a_token_not_yet_valid_is_refused(
    signer: TokenSigner, verifier: TokenVerifier, clock: Clock
) -> None:
    token = signer.issue("alice", ORIGIN).token
    clock.now_s -= 60  # the node's clock is a minute behind the web app's
    assert "not valid for another 60 s" in refusal(verifier, token).message


def test_garbage_is_refused_without_echoing_it(verifier: TokenVerifier) -> None:
    for garbage in ("x", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "é" * 40):
        denied = refusal(verifier, garbage)
        assert denied.code is ErrorCode.AUTH_FAILED
        assert garbage not in denied.message


def test_unsigned_and_hmac_tokens_are_refused(signer: TokenSigner, verifier: TokenVerifier) -> None:
    claims = {"iss": "edgesight", "sub": "x", "aud": "lab", "iat": 1, "nbf": 1, "exp": 2**40}
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert "not signed with EdDSA" in refusal(verifier, unsigned).message
    # the classic confusion: HMAC keyed with the (public) verification key
    hmac_token = jwt.encode(claims, "a-secret-of-32-bytes-or-more-....", algorithm="HS256")
    assert "not signed with EdDSA" in refusal(verifier, hmac_token).message


def test_a_token_living_too_long_is_refused_even_when_signed(
    signer: TokenSigner, verifier: TokenVerifier
) -> None:
    token = signer.issue("alice", ORIGIN, lifetime_s=MAX_LIFETIME_S + 60).token
    assert "at most 3600 s" in refusal(verifier, token).message


def test_an_empty_token_is_auth_required_unless_anonymous_use_is_allowed(
    signer: TokenSigner, clock: Clock
) -> None:
    key = load_public_key(signer.public_key_pem(), "test")
    strict = TokenVerifier(key, ["lab"], clock=clock)
    assert refusal(strict, "").code is ErrorCode.AUTH_REQUIRED
    lenient = TokenVerifier(key, ["lab"], allow_anonymous=True, clock=clock)
    assert lenient.authenticate("", None) == Grant(ANONYMOUS)
    # a presented token is still checked
    assert refusal(lenient, "garbage").code is ErrorCode.AUTH_FAILED


def test_node_authenticator_picks_the_policy(signer: TokenSigner) -> None:
    key = load_public_key(signer.public_key_pem(), "test")
    assert isinstance(node_authenticator(key, ["lab"], allow_anonymous=False), TokenVerifier)
    assert isinstance(node_authenticator(None, ["lab"], allow_anonymous=True), AnonymousAccess)
    with pytest.raises(TokenKeyError, match="EDGESIGHT_TOKEN_PUBLIC_KEY"):
        node_authenticator(None, ["lab"], allow_anonymous=False)


def test_a_public_key_that_is_not_ed25519_is_refused_naming_its_source() -> None:
    with pytest.raises(TokenKeyError, match=r"key\.pem: expected a PEM public key"):
        load_public_key(b"not a key", "key.pem")


# -- the node's policy from its settings -----------------------------------------------------
def _node_app_state(settings: NodeSettings) -> object:
    app = create_node_app(settings, engine_factory=lambda s, m: FakeEngine())
    with TestClient(app):
        return app.state.authenticator


def test_a_node_given_the_public_key_file_checks_tokens(
    node_settings: NodeSettings, signer: TokenSigner, tmp_path: Path
) -> None:
    pem = tmp_path / "token-key.pub.pem"
    pem.write_bytes(signer.public_key_pem())
    settings = replace(node_settings, token_public_key=str(pem), cluster_name="lab")
    authenticator = _node_app_state(settings)
    assert isinstance(authenticator, TokenVerifier)
    assert authenticator.audiences[0] == "lab"
    assert not authenticator.allow_anonymous  # a key given: tokens required, even on loopback


def test_a_loopback_node_without_a_key_lets_everyone_in(node_settings: NodeSettings) -> None:
    assert isinstance(_node_app_state(node_settings), AnonymousAccess)


def test_a_node_beyond_loopback_without_a_key_refuses_to_start(
    node_settings: NodeSettings,
) -> None:
    settings = replace(node_settings, host="0.0.0.0")
    with pytest.raises(TokenKeyError, match="--allow-anonymous"):
        create_node_app(settings, engine_factory=lambda s, m: FakeEngine())
    allowed = replace(settings, allow_anonymous=True)
    assert isinstance(_node_app_state(allowed), AnonymousAccess)


def test_node_token_settings_from_the_environment(node_settings: NodeSettings) -> None:
    settings = NodeSettings.from_env(
        {
            "EDGESIGHT_ALLOW_ANONYMOUS": "yes",
            "EDGESIGHT_CLUSTER": "lab",
            "EDGESIGHT_TOKEN_PUBLIC_KEY": "/etc/edgesight/token.pub",
            "EDGESIGHT_NODE_HOST": "0.0.0.0",
        }
    )
    assert settings.is_anonymous_allowed
    assert settings.cluster_name == "lab"
    assert settings.token_public_key == "/etc/edgesight/token.pub"
    assert not NodeSettings(host="0.0.0.0").is_anonymous_allowed
    assert NodeSettings(host="127.0.0.1").is_anonymous_allowed
