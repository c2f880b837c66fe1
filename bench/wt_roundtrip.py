"""WebTransport (QUIC) vs wss on loopback: frame round trip and the node's CPU per frame,
side by side in one run (issue 16).

Starts one real node (``edgesight node``) with a certificate from ``edgesight certs`` (an
ECDSA P-256 server certificate from a fresh CA), which serves wss on its TCP port and
WebTransport on the same UDP port number with the same certificate. One client of each
kind (websockets' asyncio client; aioquic's, tests/wt_client.py, both trusting only that
CA) sends the letterboxed astronaut photo one frame at a time (K = 1), alternating blocks
between them so that machine noise hits both alike: raw FRAMEs (519 KB) and JPEG IMAGEs
(q75). The node's CPU time is read from /proc per block and divided by the block's frames.

    .venv/bin/python bench/wt_roundtrip.py --frames 200
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import ServerProcess, cpu_seconds, free_port, machine, summary, write_result  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

from edgesight.certs import issue  # noqa: E402
from pyodide_client.protocol import (  # noqa: E402
    Auth,
    Dtype,
    Frame,
    FrameEncoding,
    Hello,
    Ping,
    Result,
    Welcome,
    encodings_mask,
    parse,
)
from tests.parity import encode_picture, raw_input  # noqa: E402
from tests.wt_client import WtClient, open_session  # noqa: E402

log = logging.getLogger("bench.wt_roundtrip")
ALL = encodings_mask(list(FrameEncoding))
# One frame's round trip: send it, wait for its answer.
RoundTrip = Callable[[bytes], Awaitable[bytes]]


def _messages() -> dict[str, Callable[[int], bytes]]:
    tensor, letterbox = raw_input("astronaut")
    jpeg = encode_picture(tensor, letterbox, FrameEncoding.JPEG, 0.75)
    payload = tensor.tobytes()
    from dataclasses import replace

    return {
        "raw": lambda i: Frame(i, 0.0, Dtype.UINT8, tensor.shape, payload).serialize(),
        "jpeg": lambda i: replace(jpeg, frame_id=i).serialize(),
    }


@asynccontextmanager
async def _wss(url: str, context: ssl.SSLContext) -> AsyncIterator[RoundTrip]:
    async with ws_connect(url, ssl=context, compression=None, max_size=None) as ws:
        assert isinstance(parse(await ws.recv()), Hello)
        await ws.send(Auth("", ALL).serialize())
        assert isinstance(parse(await ws.recv()), Welcome)

        async def round_trip(message: bytes) -> bytes:
            await ws.send(message)
            answer = await ws.recv()
            assert isinstance(answer, bytes)
            return answer

        yield round_trip


@asynccontextmanager
async def _wt(port: int, cadata: bytes) -> AsyncIterator[RoundTrip]:
    async with open_session("localhost", port, None, cadata=cadata) as client:
        assert isinstance(client, WtClient)
        assert await client.status == 200
        client.open_control(Ping(1, 0.0).serialize())
        assert isinstance(parse(await client.control()), Hello)
        await client.control()  # PONG
        client.send_control(Auth("", ALL).serialize())
        assert isinstance(parse(await client.control()), Welcome)

        async def round_trip(message: bytes) -> bytes:
            client.send_frame(message)
            return await client.answer()

        yield round_trip


async def _run(args: argparse.Namespace, port: int, pid: int, cadata: bytes) -> dict[str, object]:
    context = ssl.create_default_context(cadata=cadata.decode())
    messages = _messages()
    results: dict[str, object] = {}
    async with _wss(f"wss://localhost:{port}/ws", context) as wss, _wt(port, cadata) as wt:
        links = {"wss": wss, "wt": wt}
        for kind, make in messages.items():
            times: dict[str, list[float]] = {"wss": [], "wt": []}
            cpu: dict[str, float] = {"wss": 0.0, "wt": 0.0}
            frame_id = 1
            for link in links.values():  # warm-up, not counted
                for _ in range(10):
                    await link(make(frame_id))
                    frame_id += 1
            for _block in range(args.frames // args.block):
                for name, link in links.items():
                    cpu0 = cpu_seconds(pid)
                    for _ in range(args.block):
                        message = make(frame_id)
                        frame_id += 1
                        started = time.perf_counter()
                        answer = parse(await link(message))
                        times[name].append((time.perf_counter() - started) * 1000.0)
                        assert isinstance(answer, Result), answer
                    cpu[name] += cpu_seconds(pid) - cpu0
            results[kind] = {
                "bytes": len(make(0)),
                **{
                    name: {
                        "round_trip_ms": summary(times[name]),
                        "node_cpu_ms_per_frame": round(1000.0 * cpu[name] / len(times[name]), 2),
                    }
                    for name in links
                },
            }
            log.info("%s: %s", kind, results[kind])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per transport and kind")
    parser.add_argument("--block", type=int, default=25, help="frames per alternating block")
    parser.add_argument("--threads", type=int, default=1, help="the node's intra-op threads")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "wt_roundtrip.json"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        issued = issue(Path(tmp) / "certs", ["localhost"])
        port = free_port()
        argv = [sys.executable, "-m", "edgesight", "--log-level", "warning", "node"]
        argv += ["--port", str(port), "--tls-cert", str(issued.cert), "--tls-key", str(issued.key)]
        env = {
            "EDGESIGHT_INTRA_OP_THREADS": str(args.threads),
            "EDGESIGHT_MAX_BATCH_WAIT_MS": "0",
            "EDGESIGHT_MAX_MESSAGES_PER_S": "10000",
            "EDGESIGHT_IDLE_TIMEOUT_S": "600",  # a slow block of one must not close the other
        }
        with ServerProcess(argv, port, env, name="node") as node:
            results = asyncio.run(_run(args, port, node.pid, issued.ca_cert.read_bytes()))
    write_result(
        args.out,
        {"machine": machine(), "frames": args.frames, "block": args.block, "results": results},
    )


if __name__ == "__main__":
    main()
