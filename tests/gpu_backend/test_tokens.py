"""TokenVerifier: offline checks of the web app's stream tokens, one refusal per way a
token can be wrong, each with a message that says which."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from edgesight.serving import ServerThread
from gpu_backend.access import AccessDenied, AnonymousAccess, Grant
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
from pyodide_client.stream import AccessRefused, Detections, Event, NodeStream, Ready
from tests.gpu_backend.fake_engine import FakeEngine
from tests.media import rgba_photo
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
    assert lenient.authenticate("", None) == Grant.anonymous()
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


# -- a real node that requires tokens --------------------------------------------------------
PAGE = "http://127.0.0.1:8000"  # the web app origin tokens are issued for


@pytest.fixture
def token_node(
    node_settings: NodeSettings, tmp_path: Path
) -> Iterator[tuple[ServerThread, TokenSigner]]:
    """A real node (real model) that takes only tokens signed by this signer's key, with
    2 s tokens so that a test can cross an expiry."""
    signer = TokenSigner(Ed25519PrivateKey.generate(), "edgesight", lifetime_s=2)
    pem = tmp_path / "token-key.pub.pem"
    pem.write_bytes(signer.public_key_pem())
    settings = replace(node_settings, token_public_key=str(pem))
    with ServerThread(
        create_node_app(settings), max_message_bytes=settings.max_message_bytes
    ) as server:
        yield server, signer


@contextlib.contextmanager
def _opened(
    server: ServerThread, token: str, origin: str = PAGE
) -> Iterator[tuple[ClientConnection, NodeStream, list[Event]]]:
    """A connection past HELLO and AUTH: the node's answer is in the events."""
    with connect(
        server.ws_url, compression=None, max_size=None, open_timeout=10, origin=Origin(origin)
    ) as conn:
        stream = NodeStream(token=token)
        events = stream.receive(conn.recv(timeout=10), now_ms=0.0)
        for message in stream.data_to_send():
            conn.send(message)
        while not events:
            events = stream.receive(conn.recv(timeout=10), now_ms=0.0)
        yield conn, stream, events


def _remaining(conn: ClientConnection) -> list[bytes]:
    """The messages a closed connection received before its close."""
    messages: list[bytes] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            message = conn.recv(timeout=5)
            assert isinstance(message, bytes)
            messages.append(message)
    return messages


def _detect(conn: ClientConnection, stream: NodeStream, now_ms: float) -> list[Any]:
    rgba, w, h = rgba_photo("chelsea")
    conn.send(stream.encode_frame(rgba, w, h, capture_ms=now_ms, now_ms=now_ms))
    events: list[Any] = []
    while not any(isinstance(e, Detections | AccessRefused) for e in events):
        events += stream.receive(conn.recv(timeout=30), now_ms=now_ms)
    return events


def test_a_node_streams_for_a_valid_token_and_names_its_identity(
    token_node: tuple[ServerThread, TokenSigner],
) -> None:
    server, signer = token_node
    with _opened(server, signer.issue("alice", PAGE, lifetime_s=60).token) as (
        conn,
        stream,
        events,
    ):
        (ready,) = events
        assert isinstance(ready, Ready)
        assert ready.welcome is not None
        assert ready.welcome.identity == "alice"
        assert 58_000 < ready.welcome.token_expires_in_ms <= 61_000
        assert any(isinstance(e, Detections) for e in _detect(conn, stream, 1.0))


@pytest.mark.parametrize(
    ("make_token", "origin", "expected"),
    [
        pytest.param(
            lambda s: (
                TokenSigner(Ed25519PrivateKey.generate(), "edgesight", 2)
                .issue("mallory", PAGE)
                .token
            ),
            PAGE,
            "signature does not verify",
            id="forged",
        ),
        pytest.param(
            lambda s: (
                TokenSigner(s._key, "edgesight", 2, clock=lambda: time.time() - 60)
                .issue("alice", PAGE)
                .token
            ),
            PAGE,
            "expired",
            id="expired",
        ),
        pytest.param(  # a token another page (origin) got, presented from this one
            lambda s: s.issue("alice", "http://127.0.0.1:9999").token,
            PAGE,
            "issued for pages of http://127.0.0.1:9999",
            id="other-origin",
        ),
        pytest.param(lambda s: "", PAGE, "requires a stream token", id="none"),
    ],
)
def test_a_node_refuses_a_bad_token_with_a_clear_error_and_closes(
    token_node: tuple[ServerThread, TokenSigner],
    make_token: Callable[[TokenSigner], str],
    origin: str,
    expected: str,
) -> None:
    server, signer = token_node
    with _opened(server, make_token(signer), origin) as (conn, stream, events):
        (refused,) = events
        assert isinstance(refused, AccessRefused)
        assert expected in refused.message
        assert not stream.can_send()
        with pytest.raises(ConnectionClosed):
            conn.recv(timeout=10)
        assert conn.close_code == 1008


def test_a_refresh_carries_a_stream_across_its_first_tokens_expiry(
    token_node: tuple[ServerThread, TokenSigner],
) -> None:
    # given a stream on a 2 s token
    server, signer = token_node
    first = signer.issue("alice", PAGE)
    with _opened(server, first.token) as (conn, stream, _):
        started_s = time.monotonic()
        # when, at 2/3 of its life, the page hands over a fresh one
        refreshed = False
        answered_after_expiry = 0
        while answered_after_expiry < 3:
            elapsed_s = time.monotonic() - started_s
            if not refreshed and elapsed_s >= first.expires_in_s * 2 / 3:
                stream.set_token(signer.issue("alice", PAGE).token)
                for message in stream.data_to_send():
                    conn.send(message)
                refreshed = True
            events = _detect(conn, stream, elapsed_s * 1000)
            # then frames are answered throughout, and past the first token's expiry
            assert not any(isinstance(e, AccessRefused) for e in events), events
            if elapsed_s > first.expires_in_s + 0.2:
                answered_after_expiry += 1
        assert stream.welcome is not None
        assert stream.welcome.identity == "alice"


def test_without_a_refresh_the_stream_closes_when_its_token_lapses(
    token_node: tuple[ServerThread, TokenSigner],
) -> None:
    server, signer = token_node
    with _opened(server, signer.issue("alice", PAGE).token) as (conn, stream, _):
        refused: list[AccessRefused] = []
        while not refused:  # frames until the node says the token lapsed (about 2 s)
            try:
                events = _detect(conn, stream, 0.0)
            except ConnectionClosed:
                # the node's deadline fired between two frames: its ERROR came before
                # its close, and is still to be read
                events = [e for m in _remaining(conn) for e in stream.receive(m, now_ms=0.0)]
                assert events, "the node closed the stream without saying why"
            refused = [e for e in events if isinstance(e, AccessRefused)]
        assert refused[0].is_expired


def test_a_token_issued_in_the_future_is_refused_beyond_the_leeway(clock: Clock) -> None:
    # issue 17: "a token with a future iat is accepted". Its nbf and exp are fine, so only
    # the iat check can refuse it; a few seconds of clock skew still pass.
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier(key.public_key(), ["lab"], clock=clock)
    now = int(clock.now_s)

    def token(iat: int) -> str:
        claims = {"iss": "edgesight", "sub": "x", "aud": "lab", "iat": iat, "nbf": now}
        return jwt.encode({**claims, "exp": now + 300}, key, algorithm="EdDSA")

    assert "issued 200 s in the future" in refusal(verifier, token(now + 200)).message
    assert verifier.authenticate(token(now + 3), None).identity == "x"
