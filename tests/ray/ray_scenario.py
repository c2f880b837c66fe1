"""The Ray scenario, run by tests/ray/test_ray_nodes.py inside a loopback-only network
namespace (so that nothing Ray or the nodes open can listen beyond loopback), with a
private RAY_TMPDIR and HOME (Ray's default temp dir and token file are shared).

A real local Ray cluster of three raylets (head without GPUs, two workers with one fake
GPU each), a real web app with its registry, and `edgesight ray up`: the supervisor places
one node per GPU; a client detects through one; a killed node actor comes back and
re-registers; a removed raylet's node is deregistered; `ray down` leaves nothing.
Prints one line per step; any failed check raises with a message saying what came.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgesight import ray_nodes  # noqa: E402
from edgesight.serving import ServerThread  # noqa: E402
from tests.media import rgba_photo  # noqa: E402
from tests.ray.client import detect_once  # noqa: E402
from webapp.app import create_app as create_webapp  # noqa: E402
from webapp.settings import WebappSettings  # noqa: E402

SECRET = "ray-scenario-secret-0123456789"
T = TypeVar("T")
started = time.monotonic()


def step(text: str) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = 60.0) -> T:
    """Poll ``check`` until it returns a value; the registry and Ray only offer state to
    poll, not events to wait on, so this is bounded by a deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    web = WebappSettings(
        port=0, registry_secret=SECRET, heartbeat_interval_s=0.5, missed_heartbeats=4
    )
    with ServerThread(create_webapp(web)) as webapp:
        registry = f"{webapp.http_url}/api/nodes"

        def listed() -> dict[str, dict[str, Any]]:
            nodes = httpx.get(registry, timeout=5).json()
            nodes = nodes.get("nodes", nodes) if isinstance(nodes, dict) else nodes
            return {n["id"]: n for n in nodes if str(n.get("id", "")).startswith("ray-")}

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
        worker_a = cluster.add_node(num_cpus=1, num_gpus=1)
        worker_b = cluster.add_node(num_cpus=1, num_gpus=1)
        step(f"Ray cluster of 3 raylets at {cluster.address}")
        try:
            env = {
                "EDGESIGHT_REGISTRY_SECRET": SECRET,
                "EDGESIGHT_INTRA_OP_THREADS": "1",
                "EDGESIGHT_MAX_BATCH_WAIT_MS": "0",
            }
            spec = ray_nodes.spec_from(webapp.http_url, env, port_base=18001, interval_s=0.5)
            result = ray_nodes.up(cluster.address, spec)
            placed = {n["node_id"]: n for n in result["nodes"]}
            assert len(placed) == 2, f"expected one node per fake GPU (2), got {sorted(placed)}"
            assert {n["kind"] for n in placed.values()} == {"gpu"}, placed
            ports = sorted(n["port"] for n in placed.values())
            assert ports == [18001, 18002], f"two nodes on one host need two ports: {ports}"
            step(f"ray up placed {sorted(placed)}")

            nodes = wait_for("both nodes registered", lambda: len(listed()) == 2 and listed())
            step(f"registered: {sorted((k, v['url']) for k, v in nodes.items())}")

            rgba, width, height = rgba_photo("chelsea")
            victim_id = sorted(nodes)[0]
            labels, round_trip_ms = detect_once(nodes[victim_id]["url"], rgba, width, height)
            assert "cat" in labels, f"expected a cat in chelsea through {victim_id}, got {labels}"
            step(f"detected {labels} through {victim_id} in {round_trip_ms:.1f} ms")

            status = ray_nodes.status(cluster.address)
            by_id = {n["node_id"]: n for n in status["nodes"]}
            old_pid = by_id[victim_id]["pid"]
            assert all(n["state"] == "serving" for n in status["nodes"]), status["nodes"]
            killed_s = time.monotonic()
            os.kill(old_pid, signal.SIGKILL)
            step(f"killed node actor {victim_id} (pid {old_pid})")

            def restarted() -> dict[str, Any] | None:
                now = {n["node_id"]: n for n in ray_nodes.status(cluster.address)["nodes"]}
                node = now.get(victim_id, {})
                if node.get("state") == "serving" and node.get("pid") != old_pid:
                    return node
                return None

            again = wait_for("the killed node actor to be restarted", restarted)
            labels, _ = detect_once(listed()[victim_id]["url"], rgba, width, height)
            assert "cat" in labels, f"expected a cat from the restarted node, got {labels}"
            step(
                f"restarted as pid {again['pid']}, re-registered and detecting "
                f"{time.monotonic() - killed_s:.1f} s after the kill"
            )

            b_id = worker_b.node_id
            on_b = [k for k, n in placed.items() if n["ray_node_id"] == b_id]
            assert len(on_b) == 1, f"expected one node on worker B, got {on_b}"
            removed_s = time.monotonic()
            cluster.remove_node(worker_b)
            wait_for(f"{on_b[0]} deregistered", lambda: on_b[0] not in listed(), timeout_s=30)
            step(
                f"removed worker B: {on_b[0]} left the registry after "
                f"{time.monotonic() - removed_s:.1f} s"
            )
            assert worker_a.node_id != b_id

            stopped = ray_nodes.down(cluster.address)
            assert stopped == 1, f"expected the one node left to stop, got {stopped}"
            assert listed() == {}, f"expected an empty registry after down, got {listed()}"
            actors = [
                a
                for a in ray.util.list_named_actors(all_namespaces=True)
                if str(a.get("name", "")).startswith("edgesight")
            ]
            assert actors == [], f"expected no edgesight actors after down, got {actors}"
            step("ray down: registry empty, no edgesight actors alive")
            print(json.dumps({"ok": True}), flush=True)
        finally:
            ray.shutdown()
            cluster.shutdown()


if __name__ == "__main__":
    main()
