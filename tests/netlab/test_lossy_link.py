"""A real node in namespace B, a client in namespace A that streams as a page does (Nagle
off, as browsers have it), and a link with loss and delay between them (issue 16). These
tests assert behaviour, not timings: frames keep flowing at 5 % loss, K grows with the
round trip and shrinks back, and two frames in flight come back without waiting on each
other. The one duration they compare is the lab's own round trip, a physical bound: a
result held back by Nagle's algorithm cannot reach the client sooner than a round trip
after the one before it."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator

import pytest

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from pyodide_client.encoding import EncodingSettings
from pyodide_client.inflight import InFlightSettings
from pyodide_client.node_link import STALL_MAX_MS
from tests.cluster.frame_sender import FrameSender
from tests.conftest import MODEL_PATH
from tests.media import rgba_photo
from tests.null_engine import null_engine

from .conftest import from_a
from .lab import ADDRESS_B, Lab, LinkShape
from .netns import inside

JPEG = EncodingSettings(mode="jpeg")  # about 17 KB a frame: 13 segments
RTT_MS = 100.0
PHOTO = rgba_photo("chelsea")


def sender(lab: Lab, node: ServerThread, **options: object) -> FrameSender:
    rgba, width, height = PHOTO
    sock = from_a(lab, node.port)
    return FrameSender(node.ws_url, rgba, width, height, encoding=JPEG, sock=sock, **options)  # type: ignore[arg-type]


def test_frames_keep_flowing_at_5_percent_loss(lab: Lab, lab_node: ServerThread) -> None:
    lab.shape(LinkShape(loss=0.05))
    before = lab.dropped_packets()
    with sender(lab, lab_node) as client:
        done = client.run_for(4.0, fps=30.0)
    assert lab.dropped_packets() > before, "the lab dropped nothing: no loss was tested"
    answered = [sent for sent in done if sent.encoding == "jpeg"]
    assert len(answered) >= 20, f"{len(answered)} frames answered in 4 s"
    waits = [b.done_ms - a.done_ms for a, b in itertools.pairwise(answered)]
    # retransmission timeouts stall single frames; none stalls the stream long enough for
    # the page to give the node up
    assert max(waits) < STALL_MAX_MS, waits


def test_k_grows_with_the_round_trip_and_shrinks_back(lab: Lab, lab_node: ServerThread) -> None:
    lab.shape(LinkShape())
    adaptive = {"max_in_flight": 8, "in_flight": InFlightSettings(target_fps=30.0)}
    with sender(lab, lab_node, **adaptive) as client:
        client.run_for(1.5, fps=30.0)
        assert client.max_window == 1  # a near node: one frame in flight
        lab.shape(LinkShape(round_trip_ms=RTT_MS))
        client.run_for(3.0, fps=30.0)  # the near round trips age out; K grows after 1 s
        assert client.stream.window >= 3
        far = client.run_for(2.0, fps=30.0)
        # more answers than one frame per round trip allows: frames overlapped
        assert len(far) > 2.0 * 1000 / RTT_MS, f"{len(far)} frames answered in 2 s"
        lab.shape(LinkShape())
        client.run_for(2.0, fps=30.0)
        assert client.stream.window == 1


def result_gaps_ms(lab: Lab, node: ServerThread, pairs: int = 3) -> list[float]:
    """For each of ``pairs`` bursts of two frames: how long after the first result the
    second came."""
    gaps = []
    with sender(lab, node, max_in_flight=2) as client:
        client.send_one()  # warm: the connection's first frame leaves slow start behind
        for _ in range(pairs):
            first, second = client.send_burst(2)
            gaps.append(second.done_ms - first.done_ms)
    return gaps


def test_two_frames_in_flight_come_back_without_waiting_for_an_ack(
    lab: Lab, lab_node: ServerThread
) -> None:
    """The node answers frame 2 right after frame 1; with Nagle on, that small result
    waited for the client's ACK of the first, a round trip later (issue 16)."""
    lab.shape(LinkShape(round_trip_ms=RTT_MS))
    gaps = result_gaps_ms(lab, lab_node)
    assert sum(gap < RTT_MS for gap in gaps) >= 2, gaps


@pytest.fixture
def node_with_nagle(lab: Lab) -> Iterator[ServerThread]:
    """A node whose listener is made as before the fix: protocol 0, so asyncio leaves
    Nagle's algorithm on for its connections."""
    settings = NodeSettings(port=0, model_path=MODEL_PATH, node_name="nagle-node")
    app = create_node_app(settings, engine_factory=null_engine)
    with inside(lab.b):
        server = ServerThread(app, host=ADDRESS_B, max_message_bytes=settings.max_message_bytes)
        server.sock.close()
        server.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.sock.bind((ADDRESS_B, server.port))
    with server:
        yield server


def test_the_lab_reproduces_the_nagle_bug_the_fix_removes(
    lab: Lab, node_with_nagle: ServerThread
) -> None:
    """What the test above would see without the fix: every second result a round trip
    (and the client's delayed ACK) behind the first."""
    lab.shape(LinkShape(round_trip_ms=RTT_MS))
    gaps = result_gaps_ms(lab, node_with_nagle)
    assert all(gap >= RTT_MS for gap in gaps), gaps
