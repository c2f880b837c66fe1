"""edgesight on Ray: the placement rule without Ray, and the whole scenario on a real
local Ray cluster inside a loopback-only network namespace (tests/ray/ray_scenario.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from edgesight.ray_nodes import ClusterSpec, Placement, RayError, desired_placements, public_url

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("ray_scenario.py")


def machine(node_id: str, host: str, gpus: int, alive: bool = True) -> dict[str, Any]:
    return {
        "NodeID": node_id,
        "NodeManagerAddress": host,
        "Alive": alive,
        "Resources": {"CPU": 4.0, "GPU": float(gpus)} if gpus else {"CPU": 4.0},
    }


SPEC = ClusterSpec(registry_url="https://web:8000")


def test_one_node_per_gpu_on_every_machine_with_ports_per_host() -> None:
    machines = [
        machine("aaaa", "10.0.0.1", 2),
        machine("bbbb", "10.0.0.2", 1),
        machine("cc", "10.0.0.3", 0),
    ]
    placed = desired_placements(SPEC, machines, {})
    assert [(p.key, p.host, p.port, p.kind) for p in placed] == [
        ("aaaa-gpu0", "10.0.0.1", 8001, "gpu"),
        ("aaaa-gpu1", "10.0.0.1", 8002, "gpu"),
        ("bbbb-gpu0", "10.0.0.2", 8001, "gpu"),
    ]
    assert all(p.gpu_fraction == 1.0 for p in placed)
    assert placed[0].node_id == "ray-aaaa-gpu0"
    assert public_url(SPEC, placed[0]) == "ws://10.0.0.1:8001/ws"


def test_two_raylets_on_one_host_get_different_ports() -> None:
    placed = desired_placements(
        SPEC, [machine("a", "127.0.0.1", 1), machine("b", "127.0.0.1", 1)], {}
    )
    assert [p.port for p in placed] == [8001, 8002]


def test_kept_placements_keep_their_ports_and_dead_machines_lose_theirs() -> None:
    first = desired_placements(SPEC, [machine("a", "h", 1), machine("b", "h", 1)], {})
    current = {p.key: p for p in first}
    again = desired_placements(
        SPEC, [machine("a", "h", 1, alive=False), machine("b", "h", 1)], current
    )
    assert [(p.key, p.port) for p in again] == [("b-gpu0", 8002)]
    joined = desired_placements(
        SPEC, [machine("b", "h", 1), machine("c", "h", 1)], {p.key: p for p in again}
    )
    assert [(p.key, p.port) for p in joined] == [("b-gpu0", 8002), ("c-gpu0", 8001)]


def test_per_gpu_shares_and_cpu_nodes_round_robin() -> None:
    spec = ClusterSpec(registry_url="http://web:8000", per_gpu=2, cpu_nodes=3)
    placed = desired_placements(spec, [machine("a", "h1", 1), machine("b", "h2", 0)], {})
    assert [(p.key, p.host, p.port, p.gpu_fraction) for p in placed] == [
        ("a-gpu0.0", "h1", 8001, 0.5),
        ("a-gpu0.1", "h1", 8002, 0.5),
        ("cpu0", "h1", 8003, 0.0),
        ("cpu1", "h2", 8001, 0.0),
        ("cpu2", "h1", 8004, 0.0),
    ]


def test_tls_settings_make_wss_urls_and_templates_apply() -> None:
    env = {"EDGESIGHT_TLS_CERT": "c.pem", "EDGESIGHT_TLS_KEY": "k.pem"}
    spec = ClusterSpec(
        registry_url="https://web", env=env, url_template="{scheme}://{host}.lan:{port}/ws"
    )
    placement = Placement("a-gpu0", "a", "10.0.0.1", 9000, "gpu", 1.0)
    assert public_url(spec, placement) == "wss://10.0.0.1.lan:9000/ws"
    v6 = Placement("a-gpu0", "a", "fd00::1", 9000, "gpu", 1.0)
    assert public_url(SPEC, v6) == "ws://[fd00::1]:9000/ws"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"registry_url": "web:8000"}, "--registry-url: expected the web app's http(s):// URL"),
        ({"per_gpu": 0}, "--per-gpu: expected 1 to 16, got 0"),
        ({"cpu_nodes": -1}, "--cpu-nodes: expected 0 to 256, got -1"),
        ({"url_template": "ws://x/ws"}, "--public-url-template: expected {host} in it"),
    ],
)
def test_bad_specs_say_what_was_expected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RayError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ClusterSpec(**{"registry_url": "http://web:8000", **overrides})


def _listening_beyond_loopback() -> set[str]:
    """This host namespace's TCP listeners on anything but loopback."""
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    local = {line.split()[3] for line in out.splitlines() if line.strip()}
    return {a for a in local if not a.startswith(("127.", "[::1]", "[::ffff:127."))}


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root (CI runs as root)")
def test_ray_up_places_restarts_follows_and_removes_nodes() -> None:
    if shutil.which("ip") is None or shutil.which("ss") is None:
        pytest.fail("the Ray test needs iproute2 (ip, ss): apt-get install iproute2")
    namespace = f"es-ray-{os.getpid()}"
    before = _listening_beyond_loopback()
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(
            ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True
        )
        with tempfile.TemporaryDirectory(prefix="esray") as private:
            env = {
                **os.environ,
                "RAY_TMPDIR": private,  # Ray's default /tmp/ray is shared by every user
                "HOME": private,  # so is ~/.ray (its token file)
                "RAY_USAGE_STATS_ENABLED": "0",
                "PYTHONUNBUFFERED": "1",
            }
            run = subprocess.run(
                ["ip", "netns", "exec", namespace, sys.executable, str(SCENARIO)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300,
            )
        steps = "\n".join(line for line in run.stdout.splitlines() if line.startswith("["))
        assert run.returncode == 0, f"scenario failed:\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
        assert '{"ok": true}' in run.stdout, run.stdout[-4000:]
        print(steps)
    finally:
        pids = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:  # whatever the scenario left: Ray's processes stay with the namespace
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "del", namespace], check=False)
    escaped = _listening_beyond_loopback() - before
    assert not escaped, f"something the Ray test started listens beyond loopback: {escaped}"
