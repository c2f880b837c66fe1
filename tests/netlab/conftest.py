"""The network lab's fixtures: one lab (two namespaces, a veth pair) per test module, and
a real node inside namespace B with an engine that answers at once (the link is what these
tests look at). The client side connects from inside namespace A (``from_a``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from tests.conftest import MODEL_PATH
from tests.null_engine import null_engine

from .lab import ADDRESS_B, Lab, made_lab
from .netns import inside

lab = pytest.fixture(scope="module", name="lab")(made_lab)


@pytest.fixture(scope="module")
def lab_node(lab: Lab) -> Iterator[ServerThread]:
    """A node listening on B's address, made as ``edgesight node`` makes its listener."""
    settings = NodeSettings(port=0, model_path=MODEL_PATH, node_name="lab-node")
    app = create_node_app(settings, engine_factory=null_engine)
    with inside(lab.b):  # the listener is B's; its connections stay B's
        server = ServerThread(app, host=ADDRESS_B, max_message_bytes=settings.max_message_bytes)
    with server:
        yield server


def from_a(lab: Lab, port: int) -> socket.socket:
    """A TCP connection to B's ``port`` made from inside namespace A."""
    with inside(lab.a):
        return socket.create_connection((ADDRESS_B, port), timeout=10)
