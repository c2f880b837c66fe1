"""The lab itself does what it says: delay on every packet (TCP and UDP), loss in transit,
a rate limit, all inside its namespaces, and nothing left behind. Durations are compared
only with what the lab adds, which is a lower bound no machine can beat."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .lab import ADDRESS_B, Lab, LinkShape, skip_without_tools
from .netns import inside

RTT_MS = 60.0


@pytest.fixture(autouse=True)
def _needs_a_lab() -> None:
    skip_without_tools()


def host_links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def echo_server(lab: Lab) -> tuple[socket.socket, socket.socket]:
    """A TCP echo listener and a UDP echo socket on B's address (port 0 each)."""
    with inside(lab.b):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        tcp.bind((ADDRESS_B, 0))
        tcp.listen()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((ADDRESS_B, 0))

    def serve_tcp() -> None:
        conn, _ = tcp.accept()
        # the bulk-transfer test ends by closing with data unread on its side: a reset here
        # is its goodbye, not a failure
        with conn, contextlib.suppress(ConnectionResetError):
            while data := conn.recv(65536):
                conn.sendall(data[:1])  # one byte back per read: a round trip marker

    def serve_udp() -> None:
        data, peer = udp.recvfrom(2048)
        udp.sendto(data, peer)

    threading.Thread(target=serve_tcp, daemon=True).start()
    threading.Thread(target=serve_udp, daemon=True).start()
    return tcp, udp


def test_delay_reaches_tcp_and_udp_and_the_host_is_untouched() -> None:
    before = host_links()
    with Lab() as lab:
        lab.shape(LinkShape(round_trip_ms=RTT_MS))
        tcp, udp = echo_server(lab)
        with inside(lab.a):
            client = socket.create_connection(tcp.getsockname(), timeout=10)
            datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with client, datagram, tcp, udp:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = time.monotonic()
            client.sendall(b"x")
            assert client.recv(1) == b"x"
            tcp_ms = (time.monotonic() - start) * 1000
            datagram.settimeout(10)
            start = time.monotonic()
            datagram.sendto(b"ping", udp.getsockname())
            assert datagram.recvfrom(2048)[0] == b"ping"
            udp_ms = (time.monotonic() - start) * 1000
        assert lab.delay in ("delay line", "netem")
        assert tcp_ms >= RTT_MS * 0.95, tcp_ms  # 5 %: the delay line's timer rounding
        assert udp_ms >= RTT_MS * 0.95, udp_ms
        assert host_links() == before  # nothing of the lab in the host's namespace
    assert not any(Path("/var/run/netns").glob(f"{lab.a}*"))
    assert not any(Path("/var/run/netns").glob(f"{lab.b}*"))


def test_loss_drops_packets_in_transit_and_tcp_repairs_it() -> None:
    with Lab() as lab:
        lab.shape(LinkShape(loss=0.2))
        tcp, _ = echo_server(lab)
        with inside(lab.a):
            client = socket.create_connection(tcp.getsockname(), timeout=30)
        with client, tcp:
            for _ in range(20):
                client.sendall(b"y" * 4000)
                assert client.recv(1) == b"y"
        assert lab.dropped_packets() > 0


def test_a_rate_limit_holds_bulk_transfer_to_it() -> None:
    rate_mbit, sent_bytes = 4.0, 500_000
    with Lab() as lab:
        lab.shape(LinkShape(rate_mbit=rate_mbit))
        tcp, _ = echo_server(lab)
        with inside(lab.a):
            client = socket.create_connection(tcp.getsockname(), timeout=30)
        with client, tcp:
            start = time.monotonic()
            client.sendall(b"z" * sent_bytes)
            client.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass  # the echo's replies, until it has read everything and closed
            took_s = time.monotonic() - start
        # the token bucket's burst (32 kbit) aside, the bytes need their time at the rate
        assert took_s >= (sent_bytes - 4000) * 8 / (rate_mbit * 1e6) * 0.95, took_s
