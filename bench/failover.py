"""Failover gap: how long a client goes without boxes when its node dies.

Starts three real nodes (``edgesight node`` subprocesses, ``NodeProcess`` from
playwright/conftest.py) on loopback and one client: ``BrowserClient`` driven exactly as the
page drives it (tests/cluster/driver.py: tick every 100 ms, probes, camera frames at
``--fps``), with the shipped routing settings and a static node list. Then, ``--kills``
times: wait until the client's current node has answered ``--steady`` frames and every
other node is usable again (answered a probe since its restart), SIGKILL the current node
(no close frame, as a crash or a pulled cable looks), and time the gap from the last box
from the dead node to the first box from the next one; restart the dead node on the same
port and go on. Also reported: kill -> first box, and frames lost per kill.

    .venv/bin/python bench/failover.py --kills 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import NodeProcess  # noqa: E402

from tests.cluster.driver import Driver, now_ms  # noqa: E402

log = logging.getLogger("bench.failover")


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def one_kill(driver: Driver, nodes: dict[str, NodeProcess], steady: int) -> dict[str, Any]:
    def current_answers() -> int:
        if not driver.readies or driver.client.node_url != driver.readies[-1][1]:
            return 0
        since_ms = driver.readies[-1][0]
        return sum(1 for r in driver.answered() if r.capture_ms >= since_ms)

    def others_usable() -> bool:  # each other node answered a probe since it came back
        router = driver.client.router
        return all(router.expected_ms(url) is not None for url in nodes)

    await driver.wait_for(lambda: current_answers() >= steady and others_usable(), 30)
    dead_url = driver.client.node_url
    assert dead_url is not None
    victim = nodes[dead_url]
    since_ms = driver.readies[-1][0]  # when the client connected to the node it will lose
    kill_ms = now_ms()
    await asyncio.to_thread(victim.kill)

    def next_box() -> bool:
        return any(r.url != dead_url and r.capture_ms > kill_ms for r in driver.answered())

    await driver.wait_for(next_box, timeout_s=30)
    last_dead = max(r.result_ms or 0 for r in driver.answered() if r.url == dead_url)
    first_next = min(
        (r for r in driver.answered() if r.url != dead_url and r.capture_ms > kill_ms),
        key=lambda r: r.result_ms or 0,
    )
    closed_ms = next(t for t, url, _ in driver.closes if url == dead_url and t >= kill_ms)
    connect_ms = next(t for t, a in driver.actions if a["do"] == "connect" and t >= kill_ms)
    ready_ms = next(t for t, url, _ in driver.readies if t >= kill_ms)
    restarted_ms = now_ms()
    await asyncio.to_thread(victim.start)  # the client keeps running meanwhile
    on_dead = [r for r in driver.records if r.url == dead_url and r.capture_ms >= since_ms]
    return {
        "killed": victim.name,
        "next": first_next.node,
        "gap_ms": round((first_next.result_ms or 0) - last_dead, 1),
        "kill_to_first_box_ms": round((first_next.result_ms or 0) - kill_ms, 1),
        # kill -> close seen -> connect action (next tick) -> HELLO -> first box
        "steps_ms": [
            round(t - kill_ms, 1)
            for t in (closed_ms, connect_ms, ready_ms, first_next.result_ms or 0)
        ],
        "lost_frames": sum(1 for r in on_dead if r.outcome == "lost"),
        "restart_s": round((now_ms() - restarted_ms) / 1000, 2),
    }


async def run(args: argparse.Namespace, nodes: dict[str, NodeProcess]) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    async with Driver(list(nodes), fps=args.fps, max_in_flight=args.max_in_flight) as driver:
        for i in range(args.kills):
            sample = await one_kill(driver, nodes, args.steady)
            log.info("kill %d: %s", i + 1, json.dumps(sample))
            samples.append(sample)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--fps", type=float, default=15.0, help="camera frame rate")
    parser.add_argument("--max-in-flight", type=int, default=2, help="the page's default")
    parser.add_argument("--steady", type=int, default=10, help="answers before each kill")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/failover.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    load_at_start = os.getloadavg()  # this VM is shared: others' work shows up here
    processes = [NodeProcess(f"node-{i}").start() for i in range(args.nodes)]
    nodes = {node.ws_url: node for node in processes}
    try:
        samples = asyncio.run(run(args, nodes))
    finally:
        for node in processes:
            node.stop()

    result = {
        "command": "python bench/failover.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"{len(os.sched_getaffinity(0))} cores, {platform.python_version()}, "
        f"onnxruntime {ort.__version__}, nodes on loopback",
        "load_average_1_5_15": {
            "start": [round(x, 2) for x in load_at_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "gap_last_box_to_next_box": summary([s["gap_ms"] for s in samples]),
        "kill_to_first_box": summary([s["kill_to_first_box_ms"] for s in samples]),
        "lost_frames_max": max(s["lost_frames"] for s in samples),
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
