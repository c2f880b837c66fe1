"""The adaptive encoding behind a bandwidth-limited link (issue 9), end to end: a real node
(real model) behind the test proxy's token bucket, and a client that sends frames as the
page does (tests/cluster/frame_sender.py). Unlimited, the client goes raw after its first
probe; limited to 20 Mbit/s (a raw frame needs 125 at 30 fps) it moves to JPEG and keeps
finding the cat; lifted, a probe finds the room and it goes back to raw.

Every wait is bounded by a frame count, not by time: the policy's moves are events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgesight.serving import ServerThread
from pyodide_client.encoding import EncodingSettings
from pyodide_client.protocol import FrameEncoding, encodings_mask
from tests.cluster.frame_sender import FrameSender, Sent
from tests.cluster.latency_proxy import LatencyProxy
from tests.media import rgba_photo

# Short probe intervals keep the test brief; the policy is the page's otherwise.
POLICY = EncodingSettings(probe_interval_ms=300.0, max_probe_interval_ms=600.0)
LIMITED_MBIT = 20.0
MAX_FRAMES = 60  # frames any one move may take


@pytest.fixture
def proxy(node_server: ServerThread) -> Iterator[LatencyProxy]:
    with LatencyProxy(node_server.port, delay_ms=2.0) as running:
        yield running


def send_until(sender: FrameSender, encoding: str) -> list[Sent]:
    """Frames until one travels as ``encoding``; fails after MAX_FRAMES."""
    sent: list[Sent] = []
    for _ in range(MAX_FRAMES):
        sent.append(sender.send_one())
        if sent[-1].encoding == encoding and sender.stream.encoding.encoding.name.lower() == (
            encoding
        ):
            return sent
    pytest.fail(f"no {encoding} frame in {MAX_FRAMES}: {[s.encoding for s in sent]}")


def test_auto_goes_compressed_behind_a_slow_link_and_back_to_raw_when_lifted(
    proxy: LatencyProxy,
) -> None:
    rgba, width, height = rgba_photo("chelsea")
    with FrameSender(proxy.ws_url, rgba, width, height, encoding=POLICY) as sender:
        assert sender.welcome_encodings == encodings_mask(
            [FrameEncoding.RAW, FrameEncoding.JPEG, FrameEncoding.WEBP]
        )
        first = sender.send_one()
        assert first.encoding == "jpeg"  # auto starts compressed
        assert "cat" in first.labels

        send_until(sender, "raw")  # the first probe finds a fast link
        assert "link carries raw frames" in sender.stream.encoding.note

        proxy.rate_mbit = LIMITED_MBIT
        slow = send_until(sender, "jpeg")
        assert any(s.encoding == "raw" for s in slow)  # it noticed from raw frames
        assert "too slow for raw" in sender.stream.encoding.note
        later = [sender.send_one() for _ in range(8)]
        compressed = [s for s in later if s.encoding == "jpeg"]
        assert len(compressed) >= 6  # the others are probes, one raw frame each
        assert sender.stream.encoding.encoding is FrameEncoding.JPEG
        assert all("cat" in s.labels for s in later)
        assert all(s.size_bytes < 40_000 for s in compressed)

        proxy.rate_mbit = None
        back = send_until(sender, "raw")
        assert all("cat" in s.labels for s in back if s.labels)


@pytest.mark.parametrize("mode", ["raw", "jpeg", "webp"])
def test_a_pinned_encoding_holds_whatever_the_link(proxy: LatencyProxy, mode: str) -> None:
    rgba, width, height = rgba_photo("chelsea")
    proxy.rate_mbit = 50.0
    with FrameSender(
        proxy.ws_url, rgba, width, height, encoding=EncodingSettings(mode=mode)
    ) as sender:
        sent = [sender.send_one() for _ in range(3)]
    assert [s.encoding for s in sent] == [mode] * 3
    assert all("cat" in s.labels for s in sent)
