"""A Ray-placed node vs a standalone node: one-stream round trip in the same run, and the
time from a node actor's death to a client drawing boxes from it again.

Runs inside a loopback-only network namespace it creates (root needed; Ray would
otherwise open listeners on the routable address even with --node-ip-address=127.0.0.1), with a
private RAY_TMPDIR and HOME. A local Ray cluster (head + one worker with one fake GPU),
the web app's registry, `edgesight ray up`, and a standalone `edgesight node` subprocess
with the same settings; frames alternate between the two nodes in blocks so machine noise
hits both alike.

    .venv/bin/python bench/ray_nodes.py --frames 300 --kills 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import edgesight_node, free_port, machine, summary, write_result  # noqa: E402

log = logging.getLogger("bench.ray_nodes")
SECRET = "ray-bench-secret-0123456789abcdef"
INSIDE = "EDGESIGHT_BENCH_IN_NETNS"


def reexec_in_namespace() -> int:
    namespace = f"es-raybench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(
            ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True
        )
        with tempfile.TemporaryDirectory(prefix="esray") as private:
            env = {
                **os.environ,
                INSIDE: "1",
                "RAY_TMPDIR": private,
                "HOME": private,
                "RAY_USAGE_STATS_ENABLED": "0",
                "PYTHONUNBUFFERED": "1",
            }
            argv = ["ip", "netns", "exec", namespace, sys.executable, *sys.argv]
            return subprocess.run(argv, env=env, cwd=ROOT, check=False).returncode
    finally:
        for pid in subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True
        ).stdout.split():
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def round_trips(urls: dict[str, str], frames: int, block: int) -> dict[str, list[float]]:
    """Round trips per node over one connection each, alternating blocks of frames."""
    from websockets.sync.client import connect

    from pyodide_client.stream import Detections, NodeStream
    from tests.handshake import handshake
    from tests.media import rgba_photo

    rgba, w, h = rgba_photo("astronaut")
    sockets: dict[str, Any] = {}
    streams: dict[str, NodeStream] = {}
    for name, url in urls.items():
        socket = connect(url, compression=None, max_size=None, open_timeout=30)
        stream = NodeStream(max_in_flight=1)
        handshake(socket, stream, 30.0)
        sockets[name], streams[name] = socket, stream

    def one(name: str) -> float:
        stream, socket = streams[name], sockets[name]
        message = stream.encode_frame(rgba, w, h, 0.0, 0.0)
        t0 = time.perf_counter()
        socket.send(message)
        while True:
            events = stream.receive(socket.recv(timeout=30), 0.0)
            if any(isinstance(e, Detections) for e in events):
                return (time.perf_counter() - t0) * 1000.0

    samples: dict[str, list[float]] = {name: [] for name in urls}
    for name in urls:  # warm-up
        for _ in range(10):
            one(name)
    while min(len(v) for v in samples.values()) < frames:
        for name in urls:
            samples[name].extend(one(name) for _ in range(block))
    for socket in sockets.values():
        socket.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ray_nodes.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.environ.get(INSIDE) != "1":
        sys.exit(reexec_in_namespace())

    import httpx
    import ray
    from ray.cluster_utils import Cluster
    from websockets.exceptions import WebSocketException

    from edgesight import ray_nodes
    from edgesight.serving import ServerThread
    from tests.media import rgba_photo
    from tests.ray.client import detect_once
    from webapp.app import create_app as create_webapp
    from webapp.settings import WebappSettings

    web = WebappSettings(port=0, registry_secret=SECRET, heartbeat_interval_s=0.5)
    settings = {
        "EDGESIGHT_INTRA_OP_THREADS": "1",
        "EDGESIGHT_MAX_BATCH_WAIT_MS": "2",
        "EDGESIGHT_MAX_IN_FLIGHT": "2",
        "EDGESIGHT_MAX_BATCH_SIZE": "8",
    }
    with ServerThread(create_webapp(web)) as webapp:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
        cluster.add_node(num_cpus=1, num_gpus=1)
        standalone = edgesight_node(free_port(), threads=1).start()
        try:
            spec = ray_nodes.spec_from(
                webapp.http_url,
                {**settings, "EDGESIGHT_REGISTRY_SECRET": SECRET},
                port_base=19001,
                interval_s=0.5,
            )
            (placed,) = ray_nodes.up(cluster.address, spec)["nodes"]

            def registered() -> str | None:
                listing = httpx.get(f"{webapp.http_url}/api/nodes", timeout=5).json()
                nodes = listing.get("nodes", listing) if isinstance(listing, dict) else listing
                urls = [n["url"] for n in nodes if n.get("id") == placed["node_id"]]
                return urls[0] if urls else None

            deadline = time.monotonic() + 120
            while (ray_url := registered()) is None and time.monotonic() < deadline:
                time.sleep(0.2)  # the registry offers state to poll, not events
            assert ray_url, "the Ray-placed node never registered"
            log.info("round trips: ray %s vs standalone port %d", ray_url, standalone.port)
            samples = round_trips(
                {"ray": ray_url, "standalone": f"ws://127.0.0.1:{standalone.port}/ws"},
                args.frames,
                args.block,
            )
            rgba, w, h = rgba_photo("chelsea")
            recoveries: list[float] = []
            for _ in range(args.kills):
                pid = next(n["pid"] for n in ray_nodes.status(cluster.address)["nodes"])
                killed = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                while True:  # the client's view: reconnect until boxes come back
                    try:
                        labels, _ = detect_once(ray_url, rgba, w, h, timeout_s=5)
                    except (OSError, TimeoutError, AssertionError, WebSocketException) as exc:
                        log.debug("not back yet: %s", exc)
                        time.sleep(0.05)
                        continue
                    if "cat" in labels:
                        break
                recoveries.append((time.perf_counter() - killed) * 1000.0)
                log.info("node back with boxes %.0f ms after SIGKILL", recoveries[-1])
            ray_nodes.down(cluster.address)
        finally:
            standalone.stop()
            ray.shutdown()
            cluster.shutdown()

    ray_stats, alone_stats = summary(samples["ray"]), summary(samples["standalone"])
    result = {
        "command": "python bench/ray_nodes.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "ray_placed_round_trip": ray_stats,
        "standalone_round_trip": alone_stats,
        "ratio_median": round(ray_stats["p50_ms"] / alone_stats["p50_ms"], 3),
        "ratio_mean": round(ray_stats["mean_ms"] / alone_stats["mean_ms"], 3),
        "death_to_boxes_ms": summary(recoveries, digits=0),
    }
    write_result(args.out, result)
    log.info(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
