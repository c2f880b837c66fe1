"""The node's WebTransport endpoint, served for real (uvicorn + aioquic on 127.0.0.1) with
the real model, driven by a Python WebTransport client (tests/wt_client.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgesight.serving import ServerThread
from gpu_backend.app import create_app
from gpu_backend.quic_ack_delay import NODE_MAX_ACK_DELAY_MS
from gpu_backend.settings import NodeSettings
from pyodide_client.protocol import (
    Auth,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Ping,
    Pong,
    Result,
    Welcome,
    parse,
)
from pyodide_client.stream import Detections, NodeStream, Ready
from tests.gpu_backend.test_tokens import PAGE, token_node
from tests.media import rgba_photo
from tests.wt_client import WtClient, open_session
from webapp.tokens import TokenSigner

ORIGIN = "http://127.0.0.1:8000"


def _readyz(server: ServerThread) -> dict[str, object]:
    with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=10) as response:
        body: dict[str, object] = json.load(response)
    return body


@pytest.fixture(scope="module")
def wt_node(node_settings: NodeSettings) -> Iterator[tuple[ServerThread, int]]:
    settings = replace(node_settings, max_in_flight=3)
    with ServerThread(create_app(settings), max_message_bytes=settings.max_message_bytes) as server:
        port = _readyz(server)["wt_port"]
        assert isinstance(port, int)
        assert port > 0
        yield server, port


async def _handshake(client: WtClient) -> NodeStream:
    """As a page: the control stream opens with a PING (the page speaks first on QUIC and
    measures the round trip), the node's HELLO comes first, then AUTH -> WELCOME."""
    assert await client.status == 200
    stream = NodeStream(max_in_flight=3, can_encode=())
    client.open_control(Ping(1, 0.0).serialize())
    hello = await client.control()
    assert isinstance(parse(hello), Hello)
    stream.receive(hello, now_ms=1.0)
    for message in stream.data_to_send():  # AUTH
        client.send_control(message)
    events: list[object] = []
    while not any(isinstance(e, Ready) for e in events):
        events += stream.receive(await client.control(), now_ms=2.0)
    return stream


def test_readyz_announces_the_port_and_the_certificate_hash(
    wt_node: tuple[ServerThread, int],
) -> None:
    server, port = wt_node
    body = _readyz(server)
    assert body["wt_port"] == port
    digest = body["wt_cert_sha256"]
    assert isinstance(digest, str)
    assert len(bytes.fromhex(digest)) == 32


def test_hello_image_result_over_webtransport(wt_node: tuple[ServerThread, int]) -> None:
    async def scenario() -> Detections:
        async with open_session("127.0.0.1", wt_node[1], ORIGIN) as client:
            stream = await _handshake(client)
            rgba, w, h = rgba_photo("chelsea")
            client.send_frame(stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=2.0))
            events = stream.receive(await client.answer(), now_ms=3.0)
            assert len(events) == 1
            assert isinstance(events[0], Detections)
            return events[0]

    detections = asyncio.run(scenario())
    best = max(detections.boxes, key=lambda box: box.score)
    assert best.label == "cat"
    assert best.score > 0.5


async def _one_answer_counted(port: int) -> WtClient:
    """One frame answered; then a PING's PONG, which the node sent after both copies of
    the answer (loopback keeps their order), so every copy has come."""
    async with open_session("127.0.0.1", port, ORIGIN) as client:
        stream = await _handshake(client)
        rgba, w, h = rgba_photo("chelsea")
        client.send_frame(stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=2.0))
        assert isinstance(parse(await client.answer()), Result)
        client.send_control(Ping(5, 0.0).serialize())
        assert isinstance(parse(await client.control()), Pong)
        assert client.answers.empty()  # the second copy was not taken
        return client


def test_a_small_answer_comes_as_a_datagram_and_on_its_stream(
    wt_node: tuple[ServerThread, int],
) -> None:
    """A lost one-packet answer costs a stream a probe timeout; its datagram copy, in a
    packet of its own, usually arrives (quic_framing). Both come; the page takes one."""
    client = asyncio.run(_one_answer_counted(wt_node[1]))
    assert (client.datagram_answers, client.stream_answers) == (1, 0)  # sent first
    assert client.copies.duplicates == 1


def test_answer_datagrams_can_be_turned_off(node_settings: NodeSettings) -> None:
    settings = replace(node_settings, wt_answer_datagrams=False)
    with ServerThread(create_app(settings)) as server:
        port = _readyz(server)["wt_port"]
        assert isinstance(port, int)
        client = asyncio.run(_one_answer_counted(port))
    assert (client.datagram_answers, client.stream_answers) == (0, 1)
    assert client.copies.duplicates == 0


def test_the_node_announces_the_ack_delay_it_keeps(wt_node: tuple[ServerThread, int]) -> None:
    """A page's QUIC stack waits the node's max_ack_delay on top of a round trip before it
    resends a lost frame tail; aioquic announces 25 ms but acknowledges within 1 ms."""

    async def scenario() -> float:
        async with open_session("127.0.0.1", wt_node[1], ORIGIN) as client:
            assert await client.status == 200
            return float(client._quic._loss.max_ack_delay)

    assert asyncio.run(scenario()) == NODE_MAX_ACK_DELAY_MS / 1000


def test_pings_are_answered_on_the_control_stream(wt_node: tuple[ServerThread, int]) -> None:
    async def scenario() -> None:
        async with open_session("127.0.0.1", wt_node[1], ORIGIN) as client:
            assert await client.status == 200
            client.open_control(Ping(7, 1.5).serialize())
            assert isinstance(parse(await client.control()), Hello)
            pong = parse(await client.control())
            assert isinstance(pong, Pong)
            assert pong.nonce == 7

    asyncio.run(scenario())


def test_a_reset_frame_is_dropped_and_never_answered(wt_node: tuple[ServerThread, int]) -> None:
    """Latest frame wins across the wire: the page resets the stream of a frame a newer
    one superseded; the node forgets it (no RESULT, no DROPPED) and answers the newer."""

    async def scenario() -> None:
        async with open_session("127.0.0.1", wt_node[1], ORIGIN) as client:
            stream = await _handshake(client)
            rgba, w, h = rgba_photo("chelsea")
            old = stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=2.0)
            new = stream.encode_frame(rgba, w, h, capture_ms=3.0, now_ms=4.0)
            old_id = parse(old).frame_id  # type: ignore[union-attr]
            half = len(old) // 2
            superseded = client.send_frame(old[:half], end=False)
            client.reset_frame(superseded)
            client.send_frame(new)
            answer = parse(await client.answer())
            assert isinstance(answer, Result)
            assert answer.frame_id != old_id
            # The node is idle again: a ping's answer comes, and no answer for the old one.
            client.send_control(Ping(9, 0.0).serialize())
            assert isinstance(parse(await client.control()), Pong)
            assert client.answers.empty()

    abandoned = _readyz(wt_node[0])["wt_frames_abandoned"]
    asyncio.run(scenario())
    assert _readyz(wt_node[0])["wt_frames_abandoned"] == abandoned + 1  # type: ignore[operator]


def test_the_node_stops_the_oldest_of_too_many_uploading_frames(
    wt_node: tuple[ServerThread, int], node_settings: NodeSettings
) -> None:
    """Latest frame wins from the node's side too: one frame more than
    wt_max_frame_streams uploading at once, and the node sends STOP_SENDING for the
    oldest; it is never answered, the newest is."""

    async def scenario() -> None:
        async with open_session("127.0.0.1", wt_node[1], ORIGIN) as client:
            stream = await _handshake(client)
            rgba, w, h = rgba_photo("chelsea")
            first = parse(stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=1.0))
            assert isinstance(first, Frame)
            count = node_settings.wt_max_frame_streams + 1
            frames = [replace(first, frame_id=100 + i).serialize() for i in range(count)]
            ids = [client.send_frame(f[:100], end=False) for f in frames]
            await asyncio.wait_for(client.stop_sending_seen.wait(), 30)
            assert client.stopped == {ids[0]}
            client.finish_frame(ids[-1], frames[-1][100:])
            answer = parse(await client.answer())
            assert isinstance(answer, Result)
            assert answer.frame_id == 100 + count - 1
            for stream_id in ids[1:-1]:
                client.reset_frame(stream_id)
            client.send_control(Ping(2, 0.0).serialize())
            assert isinstance(parse(await client.control()), Pong)
            assert client.answers.empty()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("origin", "path", "status"),
    [
        ("https://evil.example", "/wt", 403),
        (ORIGIN, "/ws", 404),
        (ORIGIN, "/wt/../admin", 404),
    ],
)
def test_bad_origin_or_path_is_refused(
    wt_node: tuple[ServerThread, int], origin: str, path: str, status: int
) -> None:
    async def scenario() -> None:
        async with open_session("127.0.0.1", wt_node[1], origin, path) as client:
            assert await client.status == status

    asyncio.run(scenario())


def test_an_oversized_frame_closes_the_session(
    node_settings: NodeSettings,
) -> None:
    settings = replace(node_settings, max_message_bytes=64 * 1024)
    with ServerThread(create_app(settings), max_message_bytes=settings.max_message_bytes) as server:
        port = _readyz(server)["wt_port"]
        assert isinstance(port, int)

        async def scenario() -> None:
            async with open_session("127.0.0.1", port, ORIGIN) as client:
                await _handshake(client)
                client.send_frame(b"ES\x01\x02" + bytes(70 * 1024))
                await asyncio.wait_for(client.terminated.wait(), 30)

        asyncio.run(scenario())


def test_frames_without_auth_on_a_token_node_are_refused(wt_node: tuple[ServerThread, int]) -> None:
    """The same policy as /ws: on this anonymous loopback node a bad message type counts
    as refused and is answered with an ERROR on the control stream."""

    async def scenario() -> None:
        async with open_session("127.0.0.1", wt_node[1], ORIGIN) as client:
            await _handshake(client)
            client.send_control(Welcome(0, 0, "x").serialize())
            error = parse(await client.control())
            assert isinstance(error, Error)
            assert error.code == ErrorCode.UNEXPECTED_MESSAGE

    asyncio.run(scenario())


def test_webtransport_can_be_turned_off(node_settings: NodeSettings) -> None:
    settings = replace(node_settings, is_webtransport_enabled=False)
    with ServerThread(create_app(settings)) as server:
        assert "wt_port" not in _readyz(server)


def test_the_websocket_welcome_offers_webtransport(wt_node: tuple[ServerThread, int]) -> None:
    """A page on /ws learns where the node's WebTransport endpoint is, and the hash to pin."""
    from websockets.sync.client import connect

    server, port = wt_node
    with connect(server.ws_url, compression=None, open_timeout=10) as ws:
        assert isinstance(parse(ws.recv(timeout=10)), Hello)
        ws.send(NodeStream().auth(""))
        welcome = parse(ws.recv(timeout=10))
    assert isinstance(welcome, Welcome)
    assert welcome.wt_port == port
    assert welcome.wt_cert_sha256 == _readyz(server)["wt_cert_sha256"]


def _peer_sha256(client: WtClient) -> str:
    from cryptography.hazmat.primitives import serialization

    certificate = client._quic.tls._peer_certificate
    assert certificate is not None
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_the_node_renews_its_certificate_and_announces_the_new_hash(
    node_settings: NodeSettings,
) -> None:
    """Halfway through its validity the node makes a new certificate: new sessions get it
    and pages learn its hash; a session opened before keeps working."""
    settings = replace(node_settings, wt_cert_validity_days=0.0001)  # renewed after ~4 s
    app = create_app(settings)
    with ServerThread(app) as server:
        port = _readyz(server)["wt_port"]
        assert isinstance(port, int)
        first = _readyz(server)["wt_cert_sha256"]
        rotated = threading.Event()

        async def scenario() -> None:
            async with open_session("127.0.0.1", port, ORIGIN) as before:
                await _handshake(before)
                assert _peer_sha256(before) == first
                app.state.node.webtransport.on_rotated = lambda _hashed: rotated.set()
                assert await asyncio.to_thread(rotated.wait, 60)
                after_hash = _readyz(server)["wt_cert_sha256"]
                assert after_hash != first
                async with open_session("127.0.0.1", port, ORIGIN) as after:
                    await _handshake(after)
                    assert _peer_sha256(after) == after_hash
                before.send_control(Ping(5, 0.0).serialize())
                assert isinstance(parse(await before.control()), Pong)

        asyncio.run(scenario())


def test_a_pinnable_certificate_file_is_served_and_announced(
    node_settings: NodeSettings, tmp_path: Path
) -> None:
    from edgesight.certs import issue_webtransport

    issued = issue_webtransport(tmp_path, ["node.lan"], days=5)
    settings = replace(node_settings, wt_cert=issued.cert, wt_key=issued.key)
    with ServerThread(create_app(settings)) as server:
        body = _readyz(server)
        assert body["wt_cert_sha256"] == issued.sha256_hex
        port = body["wt_port"]
        assert isinstance(port, int)

        async def scenario() -> None:
            async with open_session("127.0.0.1", port, ORIGIN) as client:
                await _handshake(client)
                assert _peer_sha256(client) == issued.sha256_hex

        asyncio.run(scenario())


def test_a_policy_close_ends_the_session_then_the_connection(
    wt_node: tuple[ServerThread, int], node_settings: NodeSettings
) -> None:
    """Too many refused messages: the same ERROR as on /ws, the session closed with the
    WebSocket close code, and the QUIC connection ended by the node."""

    async def scenario() -> None:
        async with open_session("127.0.0.1", wt_node[1], ORIGIN) as client:
            await _handshake(client)
            for _ in range(node_settings.max_refused_messages + 1):
                client.send_control(Welcome(0, 0, "x").serialize())
            errors = [
                parse(await client.control()) for _ in range(node_settings.max_refused_messages + 1)
            ]
            last = errors[-1]
            assert isinstance(last, Error)
            assert last.code == ErrorCode.TOO_MANY_ERRORS
            await asyncio.wait_for(client.terminated.wait(), 30)

    asyncio.run(scenario())


def test_one_address_cannot_hold_every_quic_connection(node_settings: NodeSettings) -> None:
    settings = replace(node_settings, max_connections_per_address=2)
    with ServerThread(create_app(settings)) as server:
        port = _readyz(server)["wt_port"]
        assert isinstance(port, int)

        async def scenario() -> None:
            async with (
                open_session("127.0.0.1", port, ORIGIN) as first,
                open_session("127.0.0.1", port, ORIGIN) as second,
            ):
                assert await first.status == 200
                assert await second.status == 200
                with pytest.raises(ConnectionError):
                    async with open_session("127.0.0.1", port, ORIGIN) as third:
                        await third.status

        asyncio.run(scenario())


def test_webtransport_settings_are_read_and_checked() -> None:
    from gpu_backend.settings import SettingsError

    settings = NodeSettings.from_env({"EDGESIGHT_WEBTRANSPORT": "0", "EDGESIGHT_WT_PORT": "4433"})
    assert not settings.is_webtransport_enabled
    assert settings.wt_port == 4433
    assert settings.wt_answer_datagrams  # the default
    assert not NodeSettings.from_env({"EDGESIGHT_WT_ANSWER_DATAGRAMS": "0"}).wt_answer_datagrams
    with pytest.raises(SettingsError, match="EDGESIGHT_WT_ANSWER_DATAGRAMS"):
        NodeSettings.from_env({"EDGESIGHT_WT_ANSWER_DATAGRAMS": "sometimes"})
    with pytest.raises(SettingsError, match="EDGESIGHT_WT_CERT_VALIDITY_DAYS"):
        NodeSettings.from_env({"EDGESIGHT_WT_CERT_VALIDITY_DAYS": "14"})
    with pytest.raises(SettingsError, match="EDGESIGHT_WT_PORT"):
        NodeSettings.from_env({"EDGESIGHT_WT_PORT": "70000"})
    with pytest.raises(SettingsError, match="EDGESIGHT_WT_KEY"):
        NodeSettings(wt_cert=Path(__file__))


def test_tokens_and_their_refresh_work_over_webtransport(
    token_node: tuple[ServerThread, TokenSigner],
) -> None:
    """The same access policy as /ws: AUTH with the web app's token -> WELCOME naming the
    identity; a fresh token while streaming -> WELCOME again, frames go on; a token for
    another identity closes the session."""
    server, signer = token_node
    port = _readyz(server)["wt_port"]
    assert isinstance(port, int)

    async def scenario() -> None:
        async with open_session("127.0.0.1", port, PAGE) as client:
            assert await client.status == 200
            stream = NodeStream(token=signer.issue("alice", PAGE, lifetime_s=60).token)
            client.open_control(Ping(1, 0.0).serialize())
            events = stream.receive(await client.control(), now_ms=0.0)  # HELLO
            for message in stream.data_to_send():
                client.send_control(message)
            while not any(isinstance(e, Ready) for e in events):
                events += stream.receive(await client.control(), now_ms=0.0)
            (ready,) = [e for e in events if isinstance(e, Ready)]
            assert ready.welcome is not None
            assert ready.welcome.identity == "alice"
            stream.set_token(signer.issue("alice", PAGE, lifetime_s=60).token)
            for message in stream.data_to_send():
                client.send_control(message)
            refreshed = parse(await client.control())
            assert isinstance(refreshed, Welcome)
            rgba, w, h = rgba_photo("chelsea")
            client.send_frame(stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=1.0))
            assert isinstance(parse(await client.answer()), Result)
            client.send_control(Auth(signer.issue("mallory", PAGE).token, 1).serialize())
            refused = parse(await client.control())
            assert isinstance(refused, Error)
            assert refused.code == ErrorCode.AUTH_FAILED
            await asyncio.wait_for(client.terminated.wait(), 30)

    asyncio.run(scenario())


_ = token_node  # a fixture, used by name
