"""What a token per node costs the web app (issue 17): ``POST /api/token`` answering the
cluster token alone vs the cluster token plus one token per node the page lists.

A real web app (uvicorn on loopback, in-memory registry) with ``--registered`` enrolled
nodes; one client POSTs /api/token as a page does, alternating between ``?nodes=`` (no
node: the old answer's cost) and ``?nodes=`` naming ``--asked`` registered ids (a page's
list: at most EDGESIGHT_LIST_NODES_MAX, 16), timed from the request to the parsed answer.

    .venv/bin/python bench/node_tokens.py --requests 300 --registered 1000 --asked 16
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import machine, summary, write_result  # noqa: E402

from edgesight.serving import ServerThread  # noqa: E402
from webapp.app import create_app  # noqa: E402
from webapp.node_identity import NodeCredentials  # noqa: E402
from webapp.node_tokens import NodeTokens  # noqa: E402
from webapp.registry import NodeRegistry  # noqa: E402
from webapp.registry_store import MemoryStore, NodeEntry  # noqa: E402
from webapp.settings import WebappSettings  # noqa: E402
from webapp.tokens import TokenSigner  # noqa: E402


def heartbeat(node_id: str) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "url": f"ws://{node_id}.example:8001/ws",
        "name": node_id,
        "provider": "CPUExecutionProvider",
        "device": "cpu",
        "model": "nanodet-g-416",
        "model_sha256": "ab" * 32,
        "streams": 0,
        "max_streams": 32,
        "queue_depth": 0,
        "inference_ms": 10.0,
    }


def run(requests: int, registered: int, asked: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "token-key.pem"
        enrol = NodeCredentials(TokenSigner.from_file(key_path, "edgesight", 300).enrolment_key())
        settings = WebappSettings(
            port=0,
            node_urls=(),
            token_key_path=key_path,
            heartbeat_interval_s=60.0,  # nobody expires during the run
            missed_heartbeats=100,
            registry_max_nodes=max(registered, 1),
        )
        ids = [f"node-{i:04d}" for i in range(registered)]
        with ServerThread(create_app(settings)) as web, httpx.Client(base_url=web.http_url) as http:
            for node_id in ids:
                auth = {"Authorization": f"Bearer {enrol.issue(node_id)}"}
                answer = http.post("/api/nodes/register", json=heartbeat(node_id), headers=auth)
                answer.raise_for_status()
            queries = {"cluster token only": "", f"+ {asked} node tokens": ",".join(ids[:asked])}
            times_ms: dict[str, list[float]] = {name: [] for name in queries}
            sizes: dict[str, int] = {}
            origin = {"Origin": web.http_url}
            for _ in range(requests):  # alternate, so machine noise hits both alike
                for name, nodes in queries.items():
                    started_s = time.perf_counter()
                    response = http.post(f"/api/token?nodes={nodes}", headers=origin)
                    body = response.json()
                    times_ms[name].append((time.perf_counter() - started_s) * 1000)
                    sizes[name] = len(response.content)
                    assert len(body["node_tokens"]) == (asked if nodes else 0)
    return {
        "registered": registered,
        "asked": asked,
        "requests": requests,
        "answers": {
            name: {**summary(samples, 3), "bytes": sizes[name]}
            for name, samples in times_ms.items()
        },
    }


def in_process(requests: int, registered: int, asked: int) -> dict[str, Any]:
    """The same two answers' signing and registry work without HTTP: ``signer.issue``
    once, and ``NodeTokens.issue`` for ``asked`` of ``registered`` ids (memory store)."""
    signer = TokenSigner(Ed25519PrivateKey.generate(), "edgesight", lifetime_s=300)
    registry = NodeRegistry(MemoryStore(), heartbeat_interval_s=60.0, max_nodes=registered)
    ids = [f"node-{i:04d}" for i in range(registered)]
    node_tokens = NodeTokens(registry, signer)

    async def measure() -> tuple[list[float], list[float]]:
        for node_id in ids:
            await registry.heartbeat(NodeEntry.parse(heartbeat(node_id)))
        cluster_ms, per_node_ms = [], []
        query = ",".join(ids[:asked])
        for _ in range(requests):
            started_s = time.perf_counter()
            signer.issue("alice", "http://127.0.0.1:8000")
            middle_s = time.perf_counter()
            issued = await node_tokens.issue("alice", "http://127.0.0.1:8000", query)
            ended_s = time.perf_counter()
            assert len(issued) == asked
            cluster_ms.append((middle_s - started_s) * 1000)
            per_node_ms.append((ended_s - middle_s) * 1000)
        return cluster_ms, per_node_ms

    cluster_ms, per_node_ms = asyncio.run(measure())
    return {
        "cluster token (signer.issue)": summary(cluster_ms, 3),
        f"{asked} node tokens (NodeTokens.issue)": summary(per_node_ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--registered", type=int, default=1000)
    parser.add_argument("--asked", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/node_tokens.json")
    args = parser.parse_args()
    result = {
        "machine": machine(),
        **run(args.requests, args.registered, args.asked),
        "in_process": in_process(args.requests, args.registered, args.asked),
    }
    write_result(args.out, result)
    for name, figures in [*result["answers"].items(), *result["in_process"].items()]:
        size = f", {figures['bytes']} bytes" if "bytes" in figures else ""
        sys.stdout.write(f"{name}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms{size}\n")


if __name__ == "__main__":
    main()
