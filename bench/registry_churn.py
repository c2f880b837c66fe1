"""Registry churn: many nodes heartbeating while pages read ``GET /api/nodes``.

For each store (in-memory, then Redis), starts a real web app (``edgesight webapp``) in a
subprocess, and a simulator subprocess in which N nodes POST heartbeats every second (start
times spread over the first second). Once all N are listed, this process reads
``GET /api/nodes`` back to back at a fixed rate for the measuring window, timing each read,
and samples the web app's (and redis-server's) CPU time from /proc/<pid>/stat.

    .venv/bin/python bench/registry_churn.py --nodes 200 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789abcdef"
log = logging.getLogger("bench.registry_churn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def wait_until(check: Any, what: str, timeout_s: float, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)  # polling another process, bounded by the deadline


# -- the simulator (a subprocess) ------------------------------------------------------


def heartbeat_body(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "node_id": f"sim-{i:04d}",
        "url": f"ws://sim-{i:04d}.example:8001/ws",
        "name": f"simulated node {i}",
        "site": f"site-{i % 7}",
        "provider": "CUDAExecutionProvider" if i % 3 else "CPUExecutionProvider",
        "device": "cuda:0" if i % 3 else "cpu",
        "device_memory_bytes": 24 * 2**30,
        "model": "nanodet-g-416",
        "model_sha256": "ab" * 32,
        "streams": rng.randrange(0, 33),
        "max_streams": 32,
        "queue_depth": rng.randrange(0, 8),
        "inference_ms": round(rng.uniform(2, 30), 3),
    }


class Connection:
    """One node's keep-alive HTTP/1.1 connection: a few lines of asyncio instead of an HTTP
    client, so that the simulator's own CPU stays small next to the web app it loads."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {SECRET}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            status_line, *headers = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            length = next(
                int(h.split(b":", 1)[1]) for h in headers if h.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            raise
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def simulate(base_url: str, nodes: int, interval_s: float) -> dict[str, Any]:
    """Heartbeat ``nodes`` nodes, one connection each, until stdin closes; returns POST
    latencies and errors."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    latencies_ms: list[float] = []
    errors: dict[str, int] = {}
    url = httpx.URL(base_url)

    async def node(i: int) -> None:
        rng = random.Random(i)
        connection = Connection(url.host, url.port or 80)
        next_s = time.monotonic() + interval_s * i / nodes
        try:
            while not stop.is_set():
                await asyncio.sleep(max(0.0, next_s - time.monotonic()))
                next_s += interval_s
                body = json.dumps(heartbeat_body(i, rng)).encode()
                started = time.perf_counter()
                try:
                    status = await connection.post("/api/nodes/register", body)
                    kind = None if status in (200, 201) else str(status)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    kind = type(exc).__name__
                if kind:
                    errors[kind] = errors.get(kind, 0) + 1
                else:
                    latencies_ms.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()

    tasks = [asyncio.create_task(node(i)) for i in range(nodes)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"latencies_ms": latencies_ms, "errors": errors}


# -- the measuring side ------------------------------------------------------------------


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_until(answers, "redis-server", 20, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


def run_store(store: str, nodes: int, seconds: float, probe_hz: float) -> dict[str, Any]:
    redis_proc, redis_url = start_redis() if store == "redis" else (None, "")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "EDGESIGHT_REGISTRY_SECRET": SECRET,
        "EDGESIGHT_HEARTBEAT_INTERVAL_S": "1.0",
        "EDGESIGHT_NODE_URLS": "",
        **({"EDGESIGHT_REDIS_URL": redis_url} if redis_url else {}),
    }
    cmd = [sys.executable, "-m", "edgesight", "--log-level", "warning", "webapp"]
    web = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, env=env)
    sim: subprocess.Popen[str] | None = None
    try:
        probe = httpx.Client(base_url=base_url, timeout=10)

        def healthy() -> bool:
            try:
                return probe.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, "web app start", 60, web)
        sim = subprocess.Popen(
            [sys.executable, __file__, "--simulate", base_url, "--nodes", str(nodes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def all_listed() -> bool:
            return len(probe.get("/api/nodes").json()["nodes"]) == nodes

        wait_until(all_listed, f"{nodes} nodes listed", 60, sim)

        latencies_ms: list[float] = []
        counts: list[int] = []
        cpu_before = cpu_s(web.pid)
        redis_before = cpu_s(redis_proc.pid) if redis_proc else 0.0
        sim_before = cpu_s(sim.pid)
        started = time.monotonic()
        next_s = started
        while (now := time.monotonic()) < started + seconds:
            time.sleep(max(0.0, next_s - now))  # pacing the probe, not waiting on an event
            next_s += 1 / probe_hz
            t0 = time.perf_counter()
            response = probe.get("/api/nodes")
            latencies_ms.append((time.perf_counter() - t0) * 1000)
            counts.append(len(response.json()["nodes"]))
        wall_s = time.monotonic() - started
        web_cpu = (cpu_s(web.pid) - cpu_before) / wall_s * 100
        sim_cpu = (cpu_s(sim.pid) - sim_before) / wall_s * 100
        redis_cpu = (cpu_s(redis_proc.pid) - redis_before) / wall_s * 100 if redis_proc else None
        body_bytes = len(probe.get("/api/nodes").content)
        probe.close()

        out, _ = sim.communicate(input="", timeout=60)
        simulated = json.loads(out)
    finally:
        for proc in (sim, web, redis_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)

    ordered = sorted(latencies_ms)
    beats = sorted(simulated["latencies_ms"])
    return {
        "store": store,
        "gets": len(ordered),
        "get_p50_ms": percentile(ordered, 0.50),
        "get_p95_ms": percentile(ordered, 0.95),
        "get_p99_ms": percentile(ordered, 0.99),
        "get_max_ms": round(ordered[-1], 3),
        "listing_bytes": body_bytes,
        "listed_min": min(counts),
        "listed_max": max(counts),
        "webapp_cpu_percent": round(web_cpu, 1),
        "simulator_cpu_percent": round(sim_cpu, 1),
        "redis_cpu_percent": None if redis_cpu is None else round(redis_cpu, 1),
        "heartbeats_ok_total": len(beats),  # the simulator's whole run, warm-up included
        "heartbeat_p50_ms": percentile(beats, 0.50),
        "heartbeat_p99_ms": percentile(beats, 0.99),
        "heartbeat_errors": simulated["errors"],
        "measured_s": round(wall_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per store")
    parser.add_argument("--probe-hz", type=float, default=20.0, help="GET /api/nodes per second")
    parser.add_argument("--stores", default="memory,redis")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/registry_churn.json")
    parser.add_argument("--simulate", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.simulate:  # the simulator subprocess: results to stdout as JSON
        json.dump(asyncio.run(simulate(args.simulate, args.nodes, 1.0)), sys.stdout)
        return

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    results = [
        run_store(store, args.nodes, args.seconds, args.probe_hz)
        for store in args.stores.split(",")
    ]
    header = (
        f"{'store':<7} {'GET p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'GETs':>5} "
        f"{'listed':>9} {'web CPU':>8} {'redis':>6} {'beats':>6} {'beat p99':>9} errors"
    )
    log.info(
        "%d nodes heartbeating every 1 s; GET /api/nodes at %g Hz for %g s per store",
        args.nodes,
        args.probe_hz,
        args.seconds,
    )
    log.info(header)
    for r in results:
        redis_cpu = "-" if r["redis_cpu_percent"] is None else f"{r['redis_cpu_percent']}%"
        log.info(
            f"{r['store']:<7} {r['get_p50_ms']:>6.2f}ms {r['get_p95_ms']:>6.2f}ms "
            f"{r['get_p99_ms']:>6.2f}ms {r['get_max_ms']:>6.2f}ms {r['gets']:>5} "
            f"{r['listed_min']:>4}-{r['listed_max']:<4} {r['webapp_cpu_percent']:>7}% "
            f"{redis_cpu:>6} {r['heartbeats_ok_total']:>6} {r['heartbeat_p99_ms']:>7.2f}ms "
            f"{r['heartbeat_errors'] or 0}"
        )
    report = {
        "benchmark": "registry_churn",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "nodes": args.nodes,
        "heartbeat_interval_s": 1.0,
        "probe_hz": args.probe_hz,
        "seconds_per_store": args.seconds,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "web app, simulator, probe and redis-server share these CPUs",
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("written to %s", args.out)


if __name__ == "__main__":
    main()
