"""A node under attack (issue 8, "a node that no single client can take down"): its memory
and an authorised client's connect-to-first-result time while hostile clients try to take
it down, on loopback.

Starts a real node (``edgesight node``, shipped limits, 1 intra-op thread) and measures an
authorised client (connect, HELLO, AUTH, WELCOME, one frame, its RESULT) first alone, then
during each attack, while sampling the node's RSS from /proc:

    nonreader  clients that flood PINGs and never read a byte (reconnecting when closed);
               the unguarded node grew ~8 MB/s here
    junk       clients that flood small bad messages (a RESULT type from a client) and
               reconnect when closed; it used to log one line per message and slow others
               to 4.5-9 s
    idle       1000 WebSocket connections that complete the upgrade and then say nothing
               (no AUTH); 32 of them used to lock every real user out
    scanbomb   (issue 17) 16 streams from 4 addresses, each keeping 2 frames in flight:
               valid progressive JPEGs of 170,000 tiny scans (2 MB, 3.6 s of CPU each to
               decode); one address with 4 such streams had pushed a JPEG client's median
               from 25 ms to 15 s
    costly     (issue 17) the same streams with frames under every limit but as costly to
               decode as a 416x416 JPEG gets (noise at quality 100, 4:4:4, ~700 KB,
               ~15 ms), cut short by 64 bytes: libjpeg-turbo decodes all of it before it
               finds the end missing, so each costs a whole decode and no inference
    malformed  (issue 17) 8 clients sending requests whose chunked body is malformed, one
               after the other, as fast as they get answers; each used to cost a
               traceback of ~45 lines (105 MB of log per 30 s); the log's growth is measured
    trickle    (issue 17) 1,100 connections from 11 addresses that send request headers,
               then a body one byte a second (reconnecting when cut); they used to be
               held for ever and lock every client out

The authorised client sends a raw frame in the issue 8 scenarios and a normal JPEG (the
photo at quality 75, through the node's decode queue) in ``quiet-jpeg`` and the issue 17
ones, which are compared with ``quiet-jpeg``.

Attackers come from other loopback addresses (127.0.0.2 and up) than the authorised
client (127.0.0.1), as they would from other machines; each address stays under the
node's per-address connection cap. Every loop is bounded by the scenario's duration.

    .venv/bin/python bench/attacks.py --seconds 10
    .venv/bin/python bench/attacks.py --seconds 10 --attack-mb-s 10 \
        --scenarios quiet-jpeg,scanbomb,costly --result-name attacks-decode.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import itertools
import logging
import multiprocessing
import os
import resource
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from harness import (  # noqa: E402
    RESULTS,
    ServerProcess,
    cpu_seconds,
    free_port,
    machine,
    summary,
    write_result,
)
from PIL import Image as PILImage  # noqa: E402
from websockets.asyncio.client import connect as connect_async  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from pyodide_client.protocol import (  # noqa: E402
    Auth,
    Dtype,
    Frame,
    FrameEncoding,
    Hello,
    Image,
    Ping,
    Result,
    Welcome,
    parse,
)
from tests.jpeg_scans import scan_bomb  # noqa: E402
from tests.raw_ws import message  # noqa: E402

log = logging.getLogger("bench.attacks")
FRAME = Frame(1, 0.0, Dtype.UINT8, (3, 416, 416), bytes(3 * 416 * 416)).serialize()


def jpeg_frame(payload: bytes, frame_id: int = 1) -> bytes:
    return Image(frame_id, 0.0, FrameEncoding.JPEG, 416, 416, 0, 0, payload).serialize()


def photo_jpeg() -> bytes:
    """A normal client's frame: the photo at 416x416, quality 75 (about 25 KB)."""
    from skimage import data

    out = io.BytesIO()
    PILImage.fromarray(data.chelsea()).resize((416, 416)).save(out, "JPEG", quality=75)
    return out.getvalue()


def costly_jpeg() -> bytes:
    """As costly to decode as a 416x416 JPEG within every limit gets (noise, quality 100,
    4:4:4), without its last 64 bytes: refused only after a whole decode."""
    pixels = np.random.default_rng(17).integers(0, 256, (416, 416, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "JPEG", quality=100, subsampling="4:4:4")
    return out.getvalue()[:-64]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def first_result_s(port: int, auth: bool = True, frame: bytes = FRAME) -> float:
    """An authorised client: connect -> HELLO -> AUTH -> WELCOME -> FRAME -> RESULT (a
    node from before AUTH: connect -> HELLO -> FRAME -> RESULT)."""
    started = time.perf_counter()
    url = f"ws://127.0.0.1:{port}/ws"
    with connect(url, compression=None, max_size=None, open_timeout=30) as conn:
        assert isinstance(parse(conn.recv(timeout=30)), Hello)
        if auth:
            conn.send(Auth("").serialize())
            assert isinstance(parse(conn.recv(timeout=30)), Welcome)
        conn.send(frame)
        result = parse(conn.recv(timeout=30))
        assert isinstance(result, Result), result
    return time.perf_counter() - started


def _upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that never reads
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(_upgrade_request(port))
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


class Attack:
    """Runs attacker coroutines in a process of their own (their CPU must not slow the
    authorised client's thread here through the GIL) until stopped."""

    def __init__(self, name: str, port: int, mb_per_s: float = 50.0) -> None:
        self.name = name
        self.port = port
        self.mb_per_s = mb_per_s  # all its connections together
        self._stop = multiprocessing.Event()
        self._connections = multiprocessing.Value("q", 0)  # opened, over the whole attack
        self._open = multiprocessing.Value("q", 0)  # open now (idle sockets)
        self._sent = multiprocessing.Value("q", 0)
        self._process = multiprocessing.Process(target=self._run, name=name, daemon=True)

    @property
    def connections(self) -> int:
        return int(self._connections.value)

    @property
    def open(self) -> int:
        return int(self._open.value)

    @property
    def sent_bytes(self) -> int:
        return int(self._sent.value)

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def start(self) -> Attack:
        self._process.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.kill()

    def _run(self) -> None:
        raise_fd_limit()
        logging.getLogger("asyncio").setLevel(logging.ERROR)  # writes to aborted sockets
        asyncio.run(self._main())

    def _count(self, counter: Any, delta: int) -> None:
        with counter.get_lock():
            counter.value += delta

    async def _main(self) -> None:
        raise NotImplementedError

    async def _flood(self, source: str, payload: bytes, share: int) -> None:
        """Connect, send ``payload`` over and over without reading, reconnect when cut;
        at ``1 / share`` of the attack's bandwidth."""
        pause_s = len(payload) * share / (self.mb_per_s * 1e6)
        while not self._stop.is_set():
            writer = None
            try:
                _, writer = await _open(self.port, source)
                self._count(self._connections, 1)
                while not self._stop.is_set():
                    writer.write(payload)
                    self._count(self._sent, len(payload))
                    await asyncio.wait_for(writer.drain(), 1.0)
                    await asyncio.sleep(pause_s)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                pass
            finally:
                if writer is not None:
                    writer.transport.abort()


class NonReader(Attack):
    async def _main(self) -> None:
        pings = message(Ping(1, 0.0).serialize()) * 512
        await asyncio.gather(*(self._flood(f"127.0.0.{2 + i}", pings, 8) for i in range(8)))


class Junk(Attack):
    async def _main(self) -> None:
        junk = message(b"ES\x01\x03" + b"\xff" * 32) * 512  # RESULTs, which clients never send
        await asyncio.gather(*(self._flood(f"127.0.0.{2 + i}", junk, 8) for i in range(8)))


class Idle(Attack):
    """``count`` sockets that upgrade and then say nothing; reopened when the node closes
    them (at its handshake deadline), so the count holds for the whole attack."""

    def __init__(self, name: str, port: int, count: int) -> None:
        super().__init__(name, port)
        self.count = count

    async def _main(self) -> None:
        per_address = 100  # under the node's 128 connections per address
        await asyncio.gather(
            *(self._hold(f"127.0.1.{1 + i // per_address}") for i in range(self.count))
        )

    async def _hold(self, source: str) -> None:
        while not self._stop.is_set():
            writer = None
            try:
                reader, writer = await _open(self.port, source)
                self._count(self._connections, 1)
                self._count(self._open, 1)
                try:
                    while not self._stop.is_set():  # until the node closes it
                        try:
                            if not await asyncio.wait_for(reader.read(4096), 0.5):
                                break
                        except TimeoutError:
                            continue
                finally:
                    self._count(self._open, -1)
            except (OSError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.05)  # the node refused: try again a little later
            finally:
                if writer is not None:
                    writer.transport.abort()


class Pictures(Attack):
    """``streams`` authorised streams from ``addresses`` loopback addresses, each keeping
    ``in_flight`` copies of one JPEG frame in flight (another on every answer), at the
    attack's bandwidth in all; a closed stream reconnects."""

    def __init__(
        self,
        name: str,
        port: int,
        payload: bytes,
        mb_per_s: float,
        streams: int = 16,
        addresses: int = 4,
        in_flight: int = 2,
    ) -> None:
        super().__init__(name, port, mb_per_s)
        self.payload = payload
        self.streams = streams
        self.addresses = addresses
        self.in_flight = in_flight

    async def _main(self) -> None:
        await asyncio.gather(
            *(self._stream(f"127.0.0.{2 + i % self.addresses}") for i in range(self.streams))
        )

    async def _stream(self, source: str) -> None:
        url = f"ws://127.0.0.1:{self.port}/ws"
        pause_s = len(self.payload) * self.streams / (self.mb_per_s * 1e6)
        ids = itertools.count(1)
        while not self._stop.is_set():
            try:
                async with connect_async(
                    url, compression=None, max_size=None, open_timeout=10, local_addr=(source, 0)
                ) as ws:
                    self._count(self._connections, 1)
                    await ws.recv()  # HELLO
                    await ws.send(Auth("").serialize())
                    await ws.recv()  # WELCOME (or OVERLOADED: the close follows)
                    for _ in range(self.in_flight):
                        await ws.send(jpeg_frame(self.payload, next(ids)))
                        self._count(self._sent, len(self.payload))
                    while not self._stop.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), 1.0)  # RESULT or ERROR
                        except TimeoutError:
                            continue
                        await asyncio.sleep(pause_s)
                        await ws.send(jpeg_frame(self.payload, next(ids)))
                        self._count(self._sent, len(self.payload))
            except (OSError, ConnectionClosed, TimeoutError):
                await asyncio.sleep(0.05)


class Malformed(Attack):
    """``clients`` loops of: connect, a GET whose chunked body is malformed, read the
    answer (h11's 400) until the node closes; again."""

    REQUEST = (
        b"GET /readyz HTTP/1.1\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nnot a chunk\r\n"
    )

    def __init__(self, name: str, port: int, clients: int = 8) -> None:
        super().__init__(name, port)
        self.clients = clients

    async def _main(self) -> None:
        await asyncio.gather(*(self._loop(f"127.0.0.{2 + i}") for i in range(self.clients)))

    async def _loop(self, source: str) -> None:
        while not self._stop.is_set():
            writer = None
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(source, 0)
                )
                self._count(self._connections, 1)
                writer.write(self.REQUEST)
                self._count(self._sent, len(self.REQUEST))
                await asyncio.wait_for(reader.read(), 5.0)  # until the node closes
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
            finally:
                if writer is not None:
                    writer.transport.abort()


class Trickle(Attack):
    """``count`` connections from ``addresses`` addresses: request headers, then a body
    (10 MB declared) one byte a second; a connection the node cuts is opened again."""

    HEAD = b"GET /readyz HTTP/1.1\r\nHost: node\r\nContent-Length: 10000000\r\n\r\n"

    def __init__(self, name: str, port: int, count: int = 1100, addresses: int = 11) -> None:
        super().__init__(name, port)
        self.count = count
        self.addresses = addresses

    async def _main(self) -> None:
        per_address = -(-self.count // self.addresses)  # 100: under the 128 per address
        await asyncio.gather(
            *(self._hold(f"127.0.2.{1 + i // per_address}") for i in range(self.count))
        )

    async def _hold(self, source: str) -> None:
        while not self._stop.is_set():
            writer = None
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(source, 0)
                )
                self._count(self._connections, 1)
                self._count(self._open, 1)
                try:
                    writer.write(self.HEAD)
                    while not self._stop.is_set() and not reader.at_eof():
                        writer.write(b"x")
                        self._count(self._sent, 1)
                        await writer.drain()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(reader.read(4096), 1.0)
                finally:
                    self._count(self._open, -1)
            except OSError:
                await asyncio.sleep(0.5)  # refused or cut: try again a little later
            finally:
                if writer is not None:
                    writer.transport.abort()


def measure(
    pid: int,
    port: int,
    seconds: float,
    attack: Attack | None,
    auth: bool = True,
    frame: bytes = FRAME,
    log_path: Path | None = None,
) -> dict[str, object]:
    """Sample the node's RSS and the authorised client's time for ``seconds``."""
    log_before = log_path.stat().st_size if log_path is not None else 0
    rss_before = rss_mb(pid)
    cpu_before_s, wall_before_s = cpu_seconds(pid), time.monotonic()
    attacker_cpu_before_s = 0.0
    if attack is not None:
        attack.start()
        attacker_cpu_before_s = cpu_seconds(attack.pid)
    if attack is not None:
        threading.Event().wait(1.0)  # let the attack get going before the first user
    times: list[float] = []
    refused = 0  # the node answered with something other than a RESULT (OVERLOADED)
    rss: list[float] = [rss_before]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            times.append(first_result_s(port, auth, frame) * 1000.0)
        except (OSError, TimeoutError) as exc:  # the node did not serve within 30 s
            log.warning("authorised client failed: %r", exc)
            times.append(30_000.0)
        except AssertionError as exc:  # the node answered, but not with a RESULT
            log.warning("authorised client refused: %s", exc)
            refused += 1
        rss.append(rss_mb(pid))
        threading.Event().wait(0.25)  # a user every quarter second, not a flood of them
    node_cpu = (cpu_seconds(pid) - cpu_before_s) / (time.monotonic() - wall_before_s)
    extra: dict[str, object] = {"node_cpu_percent": round(100 * node_cpu)}
    if attack is not None:
        extra["attacker_connections"] = attack.connections
        if isinstance(attack, Idle | Trickle):
            extra["sockets_open_at_end"] = attack.open
        if attack.sent_bytes:
            extra["attacker_sent_mb"] = round(attack.sent_bytes / 1e6, 1)
        attacker_cpu = (cpu_seconds(attack.pid) - attacker_cpu_before_s) / seconds
        extra["attacker_cpu_percent"] = round(100 * attacker_cpu)
        attack.stop()
    if log_path is not None:  # the node's log (stdout and stderr) over the scenario
        extra["log_growth_kb"] = round((log_path.stat().st_size - log_before) / 1024, 1)
    served = {**summary(times, digits=1), "max_ms": round(max(times), 1)} if times else {}
    return {
        "first_result": served,
        "authorised_client_refused": refused,
        "rss_before_mb": round(rss_before, 1),
        "rss_max_mb": round(max(rss), 1),
        "rss_growth_mb": round(max(rss) - rss_before, 1),
        **extra,
    }


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario")
    parser.add_argument("--idle", type=int, default=1000, help="idle sockets")
    parser.add_argument(
        "--attack-mb-s",
        type=float,
        default=50.0,
        help="flooders' bandwidth, MB/s in all (on a shared 2-core box an unthrottled "
        "flooder measures the box's CPU, not the node)",
    )
    parser.add_argument(
        "--node-src",
        type=Path,
        help="run the node from this source tree instead (e.g. `git archive` of the commit "
        "before issue 8's node work: dd6072f), for before/after numbers",
    )
    parser.add_argument(
        "--node-has-auth",
        action="store_true",
        help="the --node-src tree has AUTH (issue 8 and later): clients send it",
    )
    parser.add_argument(
        "--scenarios",
        default="quiet,nonreader,junk,idle,quiet-jpeg,scanbomb,costly,malformed,trickle",
        help="comma-separated subset",
    )
    parser.add_argument("--bomb-scans", type=int, default=170_000, help="scanbomb's scans")
    parser.add_argument(
        "--node-log-level", default="warning", help="the node's --log-level (info: as shipped)"
    )
    parser.add_argument("--result-name", default="", help="results file name (.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    raise_fd_limit()
    port = free_port()
    argv = [sys.executable, "-m", "edgesight", "--log-level", args.node_log_level, "node"]
    auth = args.node_src is None or args.node_has_auth
    if args.node_src is not None:  # its packages first on the path; it has no AUTH step
        src = str(args.node_src.resolve())
        run = (
            f"import runpy, sys; sys.path.insert(0, {src!r}); "
            "runpy.run_module('edgesight', run_name='__main__')"
        )
        argv = [sys.executable, "-c", run, *argv[3:]]
    env = {"EDGESIGHT_INTRA_OP_THREADS": "1", "EDGESIGHT_MAX_BATCH_WAIT_MS": "0"}
    photo = jpeg_frame(photo_jpeg())
    mb_s = args.attack_mb_s
    scenarios: list[tuple[str, Callable[[], Attack | None], bytes]] = [
        ("quiet", lambda: None, FRAME),
        ("nonreader", lambda: NonReader("nonreader", port, mb_s), FRAME),
        ("junk", lambda: Junk("junk", port, mb_s), FRAME),
        ("idle", lambda: Idle("idle", port, args.idle), FRAME),
        ("quiet-jpeg", lambda: None, photo),
        (
            "scanbomb",
            lambda: Pictures("scanbomb", port, scan_bomb(args.bomb_scans), mb_s),
            photo,
        ),
        ("costly", lambda: Pictures("costly", port, costly_jpeg(), mb_s), photo),
        ("malformed", lambda: Malformed("malformed", port), FRAME),
        ("trickle", lambda: Trickle("trickle", port), FRAME),
    ]
    results: dict[str, object] = {}
    log_dir = tempfile.TemporaryDirectory(prefix="attacks-")
    node_log = Path(log_dir.name) / "node.log"  # the node's output, measured per scenario
    server = ServerProcess([*argv, "--port", str(port)], port, env, name="node", output=node_log)
    with log_dir, server as node:
        first_result_s(port, auth)  # warm-up: the first frame on a fresh node
        for name, make, frame in scenarios:
            if name not in args.scenarios.split(","):
                continue
            log.info("scenario %s for %.0f s", name, args.seconds)
            results[name] = measure(node.pid, port, args.seconds, make(), auth, frame, node_log)
            log.info("%s: %s", name, results[name])
    name = args.result_name or ("attacks.json" if args.node_src is None else "attacks-before.json")
    write_result(RESULTS / name, {"machine": machine(), "seconds": args.seconds, **results})


if __name__ == "__main__":
    main()
