"""TLS cost on loopback: frame round trip over wss vs ws, and a new connection's time to
its first result, in the same run.

Starts two real nodes (``edgesight node``) with the same settings, one plain and one with
a certificate from ``edgesight certs`` (a fresh CA in a temporary directory), and sends
the letterboxed astronaut photo one frame at a time (K = 1 in flight), alternating blocks
between the two so that machine noise hits both alike. Both nodes require stream tokens
(EDGESIGHT_TOKEN_PUBLIC_KEY, no anonymous use), so every connection presents a token signed
as the web app signs them. Then, alternating again, it opens new connections and times TCP
+ TLS + WebSocket handshake, the HELLO, the AUTH/WELCOME and the first RESULT. A third
measurement takes inference (and its noise) out: the same frame bytes echoed by a bare
WebSocket app under edgesight's own uvicorn settings, ws vs wss.

    .venv/bin/python bench/tls_roundtrip.py --frames 400 --connections 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from harness import ServerProcess, free_port, machine, summary, write_result  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket  # noqa: E402
from websockets.asyncio.client import connect as aconnect  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

from edgesight.certs import issue  # noqa: E402
from edgesight.serving import ServerThread  # noqa: E402
from edgesight.tls import server_context  # noqa: E402
from pyodide_client.stream import Detections, NodeStream, Ready, Welcomed  # noqa: E402
from tests.media import rgba_photo  # noqa: E402
from webapp.tokens import TokenSigner  # noqa: E402

Link = tuple[ClientConnection, NodeStream]
log = logging.getLogger("bench.tls_roundtrip")
Photo = tuple[bytes, int, int]


def _node(
    port: int, threads: int, tls: tuple[Path, Path] | None, public_key: Path
) -> ServerProcess:
    argv = [sys.executable, "-m", "edgesight", "--log-level", "warning", "node"]
    argv += ["--port", str(port)]
    if tls is not None:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    env = {
        "EDGESIGHT_INTRA_OP_THREADS": str(threads),
        "EDGESIGHT_MAX_BATCH_WAIT_MS": "0",
        "EDGESIGHT_TOKEN_PUBLIC_KEY": str(public_key),
        "EDGESIGHT_ALLOW_ANONYMOUS": "0",
    }
    return ServerProcess(argv, port, env, name="wss node" if tls else "ws node")


def _authorise(ws: ClientConnection, stream: NodeStream, token: str) -> None:
    ws.send(stream.auth(token))
    (event,) = stream.receive(ws.recv(timeout=30), 0.0)
    assert isinstance(event, Ready | Welcomed), event


@contextmanager
def _stream(url: str, context: ssl.SSLContext | None, token: str) -> Iterator[Link]:
    with connect(url, ssl=context, compression=None, max_size=None, open_timeout=30) as ws:
        stream = NodeStream(max_in_flight=1)
        stream.receive(ws.recv(timeout=30), 0.0)
        _authorise(ws, stream, token)
        yield ws, stream


JPEG_FRAME_BYTES = 24_000  # docs/benchmarks.md / NOTES: a 416x416 JPEG q75 is 23-29 KB
MESSAGE_BYTES: set[int] = set()  # sizes of the frames sent (raw uint8: one size)


def _round_trip_ms(ws: ClientConnection, stream: NodeStream, photo: Photo) -> float:
    rgba, w, h = photo
    message = stream.encode_frame(rgba, w, h, 0.0, 0.0)
    MESSAGE_BYTES.add(len(message))
    t0 = time.perf_counter()
    ws.send(message)
    reply = ws.recv(timeout=30)
    elapsed_ms = (time.perf_counter() - t0) * 1000
    (event,) = stream.receive(reply, 0.0)
    assert isinstance(event, Detections), event
    return elapsed_ms


async def _first_result(
    url: str, context: ssl.SSLContext | None, token: str, photo: Photo
) -> dict[str, float]:
    """A new connection: open (TCP + TLS + upgrade), HELLO, WELCOME, first RESULT.

    The asyncio client here: websockets' sync client reads and writes one TLS socket from
    two threads, and about 1 in 100 of its new wss connections lost the upgrade request
    right after the TLS 1.3 handshake (the node answered 408 after its header timeout);
    the asyncio client never did in 300 tries, and browsers have their own TLS stack."""
    rgba, w, h = photo
    t0 = time.perf_counter()
    async with aconnect(url, ssl=context, compression=None, max_size=None) as ws:
        opened = time.perf_counter()
        stream = NodeStream(max_in_flight=1)
        stream.receive(await ws.recv(), 0.0)
        hello = time.perf_counter()
        await ws.send(stream.auth(token))
        (ready,) = stream.receive(await ws.recv(), 0.0)
        assert isinstance(ready, Ready | Welcomed), ready
        welcome = time.perf_counter()
        await ws.send(stream.encode_frame(rgba, w, h, 0.0, 0.0))
        (event,) = stream.receive(await ws.recv(), 0.0)
        first = time.perf_counter()
    assert isinstance(event, Detections), event
    return {
        "open_ms": (opened - t0) * 1000,
        "hello_ms": (hello - t0) * 1000,
        "welcome_ms": (welcome - t0) * 1000,
        "first_result_ms": (first - t0) * 1000,
    }


async def _first_results(
    urls: dict[str, str],
    contexts: dict[str, ssl.SSLContext | None],
    token: str,
    photo: Photo,
    count: int,
) -> dict[str, list[dict[str, float]]]:
    firsts: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    for _ in range(count):  # alternating, so that noise hits both alike
        for name in urls:
            firsts[name].append(
                await asyncio.wait_for(_first_result(urls[name], contexts[name], token, photo), 60)
            )
    return firsts


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for data in websocket.iter_bytes():
        await websocket.send_bytes(data)


def _echo_round_trips(
    tls: tuple[Path, Path], context: ssl.SSLContext, size: int, count: int, block: int
) -> dict[str, list[float]]:
    """The frame's bytes there and back through a bare echo app, ws vs wss blocks."""
    app = Starlette(routes=[WebSocketRoute("/ws", _echo)])
    payload = bytes(range(256)) * (size // 256 + 1)
    payload = payload[:size]
    samples: dict[str, list[float]] = {"ws": [], "wss": []}
    with (
        ServerThread(app, max_message_bytes=8 * size) as plain,
        ServerThread(app, max_message_bytes=8 * size, ssl_context=server_context(*tls)) as safe,
        connect(plain.ws_url, compression=None, max_size=None) as ws,
        connect(safe.ws_url, ssl=context, compression=None, max_size=None) as wss,
    ):
        links = {"ws": ws, "wss": wss}
        for _ in range(3):  # warm
            for link in links.values():
                link.send(payload)
                link.recv(timeout=30)
        while len(samples["wss"]) < count:
            for name, link in links.items():
                for _ in range(block):
                    t0 = time.perf_counter()
                    link.send(payload)
                    link.recv(timeout=30)
                    samples[name].append((time.perf_counter() - t0) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per transport")
    parser.add_argument("--block", type=int, default=25, help="frames per alternating block")
    parser.add_argument("--connections", type=int, default=40, help="new connections each")
    parser.add_argument("--threads", type=int, default=1, help="node intra-op threads")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/tls_roundtrip.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    photo: Photo = rgba_photo("astronaut")
    with tempfile.TemporaryDirectory() as tmp:
        issued = issue(Path(tmp) / "tls", [])
        # Tokens as the web app issues them (Ed25519, audience = the cluster, 10 min).
        signer = TokenSigner(Ed25519PrivateKey.generate(), "edgesight", lifetime_s=600)
        public_key = Path(tmp) / "token-key.pem"
        public_key.write_bytes(signer.public_key_pem())
        token = signer.issue("bench", None).token
        context = ssl.create_default_context(cafile=issued.ca_cert)
        ws_port, wss_port = free_port(), free_port()
        urls = {"ws": f"ws://127.0.0.1:{ws_port}/ws", "wss": f"wss://127.0.0.1:{wss_port}/ws"}
        contexts: dict[str, ssl.SSLContext | None] = {"ws": None, "wss": context}
        with (
            _node(ws_port, args.threads, None, public_key),
            _node(wss_port, args.threads, (issued.cert, issued.key), public_key),
            _stream(urls["ws"], None, token) as plain,
            _stream(urls["wss"], context, token) as secure,
        ):
            links = {"ws": plain, "wss": secure}
            round_trips: dict[str, list[float]] = {"ws": [], "wss": []}
            for ws, stream in links.values():  # warm both
                for _ in range(10):
                    _round_trip_ms(ws, stream, photo)
            while len(round_trips["wss"]) < args.frames:
                for name, (ws, stream) in links.items():
                    for _ in range(args.block):
                        round_trips[name].append(_round_trip_ms(ws, stream, photo))
            firsts = asyncio.run(_first_results(urls, contexts, token, photo, args.connections))
        (size,) = MESSAGE_BYTES
        # the raw frame, and about what a JPEG frame of the same photo weighs (IMAGE, q75)
        echoes = {
            n: _echo_round_trips((issued.cert, issued.key), context, n, args.frames, args.block)
            for n in (size, JPEG_FRAME_BYTES)
        }

    rt = {name: summary(samples) for name, samples in round_trips.items()}
    echo = {
        str(n): {name: summary(samples) for name, samples in by_name.items()}
        for n, by_name in echoes.items()
    }
    new = {
        name: {key: summary([f[key] for f in samples]) for key in samples[0]}
        for name, samples in firsts.items()
    }
    result = {
        "command": "python bench/tls_roundtrip.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "frame_message_bytes": sorted(MESSAGE_BYTES),
        "round_trip": rt,
        "ratio_median": round(rt["wss"]["p50_ms"] / rt["ws"]["p50_ms"], 3),
        "ratio_p95": round(rt["wss"]["p95_ms"] / rt["ws"]["p95_ms"], 3),
        "echo_round_trip_by_message_bytes": echo,
        "echo_extra_ms_median": {
            n: round(e["wss"]["p50_ms"] - e["ws"]["p50_ms"], 3) for n, e in echo.items()
        },
        "new_connection": new,
        "tls_open_extra_ms_median": round(
            new["wss"]["open_ms"]["p50_ms"] - new["ws"]["open_ms"]["p50_ms"], 2
        ),
        "auth_ms_median": {
            name: round(v["welcome_ms"]["p50_ms"] - v["hello_ms"]["p50_ms"], 2)
            for name, v in new.items()
        },
    }
    write_result(args.out, result)
    log.info(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
