"""One camera over a lossy, distant link (issue 16): fps, round-trip percentiles, frames
over 200 ms and node CPU per frame, at each loss rate and added round trip, with one
frame in flight (K = 1) and with K adapted to the link (pyodide_client/inflight.py).

The link is the tests' network lab (tests/netlab/lab.py): two network namespaces joined by
a veth pair (MTU 1500, offloads off), loss in transit by iptables ``statistic`` in each
namespace's INPUT chain, delay by netem or, on a kernel without it, the lab's per-packet
TUN delay line (half the round trip each way). The node is bench/null_node.py (an engine
that answers at once: the link is what is measured) in namespace B; the client streams
from namespace A as the page does (tests/cluster/frame_sender.py: Nagle off, the page's
NodeStream and encoding policy), 30 fps, the astronaut photo in a 640x480 frame as JPEG
(about 17 KB, 13 segments). Encoding ``auto`` with raw probes off, so both K modes send
JPEG, and the adaptive mode's smaller frames on a lossy link come from its frame cap.

Each point opens a new connection (fresh congestion state), warms up for ``--warmup-s``,
then streams ``--seconds``. Needs root (network namespaces), ip, tc and iptables.

``--lossy-segments``: a lossy link's frame cap in TCP segments (default: the page's).

``--transport``: ``ws`` is the WebSocket data plane in the clear, ``wss`` the same over TLS
(a certificate from ``edgesight certs`` for B's address, a fresh CA per run: what a page
uses, and what WebTransport, always TLS 1.3, compares with). ``wt`` (WebTransport over
QUIC) is the same node's WebTransport endpoint (UDP, same host, same certificate) and
tests/cluster/wt_sender.py's client: the page's framing, one stream per frame, latest frame
wins (a frame still uploading when a newer one goes is reset; ``frames_reset``; which
ones: ``--wt-rule``). ``wt-streams`` is ``wt`` with the node's answer datagrams off
(``--no-answer-datagrams``: answers on their streams only, as before they had a datagram
copy), on a node process of its own. Several transports run point by point, side by side
(wss and wt share one node process).

    sudo .venv/bin/python bench/lossy_link.py [--seconds 10] [--loss 0 0.5 1 2 5]
        [--rtt-ms 0 20 50 100] [--k 1 auto] [--transport wss wt wt-streams]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import RESULTS, camera_frames, cpu_seconds, machine, table, write_result  # noqa: E402

from edgesight.certs import issue  # noqa: E402
from pyodide_client.encoding import EncodingSettings  # noqa: E402
from pyodide_client.inflight import SEGMENT_BYTES, InFlightSettings  # noqa: E402
from tests.cluster.frame_sender import FrameSender  # noqa: E402
from tests.cluster.wt_sender import RULES, WtFrameSender  # noqa: E402
from tests.netlab.lab import ADDRESS_B, Lab, LinkShape, missing_tools  # noqa: E402
from tests.netlab.netns import inside  # noqa: E402

log = logging.getLogger("bench.lossy_link")

FPS = 30.0
SLOW_MS = 200.0  # "frames over 200 ms": a retransmission timeout's worth
ADAPTIVE_MAX_IN_FLIGHT = 8
# auto, but no raw probe within a run: both modes send JPEG at the policy's quality
JPEG_ONLY_AUTO = EncodingSettings(mode="auto", probe_interval_ms=1e9, max_probe_interval_ms=1e9)


class Node:
    """bench/null_node.py inside namespace B; ``port`` once it listens. Given a
    certificate and key, it serves wss:// and ``client_context`` trusts its CA."""

    def __init__(self, lab: Lab, tls: tuple[Path, Path, Path] | None = None, *extra: str) -> None:
        argv = [sys.executable, str(ROOT / "bench" / "null_node.py")]
        argv += ["--host", ADDRESS_B, "--port", "0", *extra]
        self.client_context: ssl.SSLContext | None = None
        self.ca_pem: bytes | None = None  # what the WebTransport client trusts
        if tls is not None:
            cert, key, ca = tls
            argv += ["--tls-cert", str(cert), "--tls-key", str(key)]
            self.client_context = ssl.create_default_context(cafile=ca)
            self.ca_pem = ca.read_bytes()
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", lab.b, *argv],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until it listens (or dies)
        if not line.startswith("ready "):
            self.process.kill()
            raise SystemExit(f"the null node did not start: {line!r}")
        self.port, self.wt_port = (int(word) for word in line.split()[1:3])

    def cpu_s(self) -> float:
        return cpu_seconds(self.process.pid)  # ip netns exec execs: the same pid

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def open_sender(
    transport: str, lab: Lab, node: Node, k: str, args: argparse.Namespace
) -> FrameSender:
    """A client in namespace A streaming to ``node`` (the transport's) over ``transport``."""
    rgba, width, height = camera_frames()[0]
    adaptive = k.startswith("auto")
    # auto-fastest: K for the fastest round trip even on a lossy link (the rule before
    # lossy_quantile), for a side-by-side comparison
    quantile = 0.0 if k == "auto-fastest" else InFlightSettings.lossy_quantile
    policy: dict[str, Any] = {
        "encoding": JPEG_ONLY_AUTO,
        "max_in_flight": ADAPTIVE_MAX_IN_FLIGHT if adaptive else int(k),
        "in_flight": InFlightSettings(
            target_fps=FPS,
            lossy_quantile=quantile,
            lossy_frame_bytes=args.lossy_segments * SEGMENT_BYTES,
        )
        if adaptive
        else None,
    }
    if transport.startswith("wt"):
        if node.wt_port == 0:
            raise SystemExit("--transport wt: the null node serves no WebTransport")
        return WtFrameSender(
            ADDRESS_B,
            node.wt_port,
            rgba,
            width,
            height,
            namespace=lab.a,
            cadata=node.ca_pem,
            rule=args.wt_rule,
            **policy,
        )
    with inside(lab.a):
        sock = socket.create_connection((ADDRESS_B, node.port), timeout=10)
    return FrameSender(
        f"{transport}://{ADDRESS_B}:{node.port}/ws",
        rgba,
        width,
        height,
        sock=sock,
        ssl_context=node.client_context,
        **policy,
    )


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def link_fields(lab: Lab, shape: LinkShape) -> dict[str, Any]:
    """A point's link: its loss, added round trip and how the delay was made."""
    return {
        "loss_percent": round(shape.loss * 100, 2),
        "added_rtt_ms": shape.round_trip_ms,
        "delay": lab.delay,
    }


def round_trips(ordered: list[float], wall_s: float) -> dict[str, Any]:
    """A point's frames, fps, round-trip percentiles and frames over 200 ms, from its
    answered frames' round trips (sorted) over ``wall_s``."""
    return {
        "frames": len(ordered),
        "fps": round(len(ordered) / wall_s, 1),
        "p50_ms": round(percentile(ordered, 0.5), 1),
        "p95_ms": round(percentile(ordered, 0.95), 1),
        "p99_ms": round(percentile(ordered, 0.99), 1),
        "max_ms": round(ordered[-1], 1) if ordered else 0.0,
        "over_200ms": sum(1 for ms in ordered if ms > SLOW_MS),
    }


def point(
    lab: Lab, node: Node, transport: str, shape: LinkShape, k: str, args: argparse.Namespace
) -> dict[str, Any]:
    lab.shape(shape)
    with open_sender(transport, lab, node, k, args) as sender:
        sender.run_for(args.warmup_s, FPS)
        dropped0, cpu0 = lab.dropped_packets(), node.cpu_s()
        start = time.monotonic()
        done = sender.run_for(args.seconds, FPS)
        wall_s = time.monotonic() - start
        cpu_s = node.cpu_s() - cpu0
        dropped = lab.dropped_packets() - dropped0
        window = sender.max_window
        is_wt = isinstance(sender, WtFrameSender)
        reset = sender.frames_reset if is_wt else 0
        by_datagram = sender.client.datagram_answers if is_wt and sender.client else 0
    answered = [s for s in done if s.encoding != "lost"]
    ordered = sorted(s.round_trip_ms for s in answered)
    n = len(answered)
    return {
        "transport": transport,
        "k": k,
        "max_k": window,
        **link_fields(lab, shape),
        **round_trips(ordered, wall_s),
        "frame_kb": round(sum(s.size_bytes for s in answered) / max(1, n) / 1000, 1),
        "node_cpu_ms_per_frame": round(1000 * cpu_s / max(1, n), 2),
        "packets_dropped": dropped,
        "wt_rule": args.wt_rule if transport.startswith("wt") else "",
        "lossy_segments": args.lossy_segments,
        "frames_reset": reset,  # WebTransport: superseded while uploading (latest wins)
        "answers_by_datagram": by_datagram,  # WebTransport: the datagram copy came first
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--transport", choices=("ws", "wss", "wt", "wt-streams"), nargs="+", default=["wss"]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--loss", type=float, nargs="+", default=[0, 0.5, 1, 2, 5])
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0, 20, 50, 100])
    parser.add_argument(
        "--k",
        nargs="+",
        default=["1", "auto"],
        help="1..8, auto, or auto-fastest (K for the fastest round trip on lossy links too)",
    )
    parser.add_argument(
        "--wt-rule",
        choices=RULES,
        default="page",
        help="which older frames still uploading a newer one resets (tests/cluster/wt_sender.py)",
    )
    parser.add_argument(
        "--lossy-segments",
        type=int,
        default=InFlightSettings.lossy_frame_bytes // SEGMENT_BYTES,
        help="a lossy link's frame cap in TCP segments (inflight.py's lossy_frame_bytes)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "lossy_link.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic's per-connection lines
    reason = missing_tools()
    if reason is not None:
        raise SystemExit(reason)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with Lab() as lab, tempfile.TemporaryDirectory(prefix="lossy-link-") as tmp:
        nodes: dict[str, Node] = {}
        try:
            # wss and wt: one node serving both with one certificate (TCP and UDP, same
            # host), so that its CPU per frame compares like for like
            issued = issue(Path(tmp) / "tls", [ADDRESS_B])
            tls = (issued.cert, issued.key, issued.ca_cert)
            if {"wss", "wt"} & set(args.transport):
                nodes["wss"] = nodes["wt"] = Node(lab, tls)
            if "wt-streams" in args.transport:
                nodes["wt-streams"] = Node(lab, tls, "--no-answer-datagrams")
            if "ws" in args.transport:
                nodes["ws"] = Node(lab)
            for rtt_ms in args.rtt_ms:
                for loss in args.loss:
                    for transport in args.transport:
                        for k in args.k:
                            shape = LinkShape(loss=loss / 100, round_trip_ms=rtt_ms)
                            node = nodes[transport]
                            row = point(lab, node, transport, shape, k, args)
                            log.info("%s", row)
                            rows.append(row)
        finally:
            for node in set(nodes.values()):
                node.stop()
    result = {
        "machine": machine(),
        "command": "bench/lossy_link.py " + " ".join(sys.argv[1:]),
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "camera_fps": FPS,
        "seconds_per_point": args.seconds,
        "points": rows,
    }
    write_result(args.out, result)
    keys = ["transport", "k", "added_rtt_ms", "loss_percent", "fps", "p50_ms", "p95_ms"]
    keys += ["p99_ms", "max_ms", "over_200ms", "max_k", "frame_kb", "node_cpu_ms_per_frame"]
    keys += ["frames_reset", "answers_by_datagram"]
    sys.stdout.write(table(keys, [[row[key] for key in keys] for row in rows]) + "\n")


if __name__ == "__main__":
    main()
