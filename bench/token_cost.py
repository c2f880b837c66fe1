"""What stream tokens cost: signing and verifying one, and a new connection's open -> first
RESULT on a node that requires tokens vs one that lets anonymous clients in.

Part 1 times ``TokenSigner.issue`` (the web app, per token request) and
``TokenVerifier.authenticate`` (the node, per AUTH) in this process. Part 2 starts two real
nodes (``edgesight node``) on loopback, one with ``--token-public-key`` and one without
(anonymous on loopback), and alternates new connections between them: open, HELLO, AUTH
(a token, or an empty one), WELCOME, one frame, its RESULT.

    .venv/bin/python bench/token_cost.py --tokens 2000 --connections 100
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.sync.client import connect
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import ServerProcess, free_port, machine, summary, write_result  # noqa: E402

from gpu_backend.tokens import TokenVerifier, load_public_key  # noqa: E402
from pyodide_client.stream import Detections, NodeStream, Ready  # noqa: E402
from tests.media import rgba_photo  # noqa: E402
from webapp.tokens import TokenSigner  # noqa: E402

ORIGIN = "http://127.0.0.1:8000"
log = logging.getLogger("bench.token_cost")


def time_tokens(count: int) -> dict[str, Any]:
    signer = TokenSigner(Ed25519PrivateKey.generate(), "edgesight", lifetime_s=300)
    verifier = TokenVerifier(load_public_key(signer.public_key_pem(), "bench"), ["edgesight"])
    issue_ms, verify_ms = [], []
    for _ in range(count):
        t0 = time.perf_counter()
        token = signer.issue("alice", ORIGIN).token
        t1 = time.perf_counter()
        verifier.authenticate(token, ORIGIN)
        t2 = time.perf_counter()
        issue_ms.append((t1 - t0) * 1000)
        verify_ms.append((t2 - t1) * 1000)
    return {
        "token_chars": len(token),
        "issue": summary(issue_ms, 4),
        "verify": summary(verify_ms, 4),
    }


def node(port: int, name: str, public_key: Path | None) -> ServerProcess:
    env = {"EDGESIGHT_NODE_NAME": name, "EDGESIGHT_INTRA_OP_THREADS": "1"}
    if public_key is not None:
        env["EDGESIGHT_TOKEN_PUBLIC_KEY"] = str(public_key)
    argv = [sys.executable, "-m", "edgesight", "--log-level", "warning", "node"]
    return ServerProcess([*argv, "--port", str(port)], port, env, name)


def first_result_ms(port: int, token: str) -> float:
    rgba, w, h = rgba_photo("astronaut")
    t0 = time.perf_counter()
    with connect(
        f"ws://127.0.0.1:{port}/ws", compression=None, max_size=None, origin=Origin(ORIGIN)
    ) as ws:
        stream = NodeStream(token=token)
        events = stream.receive(ws.recv(timeout=30), 0.0)
        for message in stream.data_to_send():
            ws.send(message)
        while not events:
            events = stream.receive(ws.recv(timeout=30), 0.0)
        if not isinstance(events[0], Ready) or events[0].welcome is None:
            raise RuntimeError(f"expected a WELCOME from the node, got {events}")
        ws.send(stream.encode_frame(rgba, w, h, 0.0, 0.0))
        while not any(isinstance(e, Detections) for e in events):
            events = stream.receive(ws.recv(timeout=30), 0.0)
        return (time.perf_counter() - t0) * 1000


def time_connections(count: int) -> dict[str, Any]:
    signer = TokenSigner(Ed25519PrivateKey.generate(), "edgesight", lifetime_s=300)
    with tempfile.TemporaryDirectory() as folder:
        public_key = Path(folder) / "token-key.pub.pem"
        public_key.write_bytes(signer.public_key_pem())
        with (
            node(free_port(), "token-node", public_key) as strict,
            node(free_port(), "anonymous-node", None) as anonymous,
        ):
            for _ in range(5):  # warm both
                first_result_ms(strict.port, signer.issue("alice", ORIGIN).token)
                first_result_ms(anonymous.port, "")
            with_token, without = [], []
            for _ in range(count):  # alternate, so machine noise hits both alike
                token = signer.issue("alice", ORIGIN).token
                with_token.append(first_result_ms(strict.port, token))
                without.append(first_result_ms(anonymous.port, ""))
    a, b = summary(with_token), summary(without)
    return {
        "token_node": a,
        "anonymous_node": b,
        "p50_ratio": round(float(a["p50_ms"]) / float(b["p50_ms"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=100, help="0: skip part 2")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/token_cost.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result: dict[str, Any] = {"machine": machine(), "tokens": time_tokens(args.tokens)}
    log.info("tokens: %s", result["tokens"])
    if args.connections:
        result["connections"] = time_connections(args.connections)
        log.info("connections: %s", result["connections"])
    write_result(args.out, result)


if __name__ == "__main__":
    main()
