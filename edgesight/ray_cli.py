"""``edgesight ray up|status|down``: the Ray commands' flags and their one-line errors.
The work is in edgesight.ray_nodes (Ray is imported only when one of these runs)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

__all__ = ["add_ray_commands", "run_ray_command"]


def add_ray_commands(commands: Any) -> None:
    ray = commands.add_parser(
        "ray",
        help="place, restart and follow nodes on a Ray cluster (pip install 'edgesight[ray]')",
        description="Ray Core is the control plane; browsers stream to the nodes directly.",
    )
    actions = ray.add_subparsers(dest="ray_command", required=True)
    up = actions.add_parser(
        "up",
        help="start a supervisor that places one node per GPU on every Ray machine",
        description="Every EDGESIGHT_* variable set here (model, batching, TLS, tokens, "
        "registry secret) reaches the nodes unchanged.",
    )
    up.add_argument("--address", required=True, help="the Ray cluster (HOST:PORT or 'auto')")
    up.add_argument(
        "--registry-url",
        required=True,
        help="the web app the nodes register with (http[s]://HOST:PORT)",
    )
    up.add_argument("--per-gpu", type=int, help="node processes per GPU (default 1)")
    up.add_argument("--cpu-nodes", type=int, help="CPU-only nodes to place as well (default 0)")
    up.add_argument("--port-base", type=int, help="first port on each machine (default 8001)")
    up.add_argument(
        "--public-url-template",
        dest="url_template",
        help="how browsers reach a node, with {scheme} {host} {port} "
        "(default {scheme}://{host}:{port}/ws)",
    )
    up.add_argument(
        "--bind", help="node bind address (default: each machine's address in the Ray cluster)"
    )
    for name, text in (
        ("status", "placement and health of the nodes"),
        ("down", "deregister and stop every node, then the supervisor"),
    ):
        command = actions.add_parser(name, help=text)
        command.add_argument("--address", required=True, help="the Ray cluster (HOST:PORT)")
        if name == "status":
            command.add_argument("--json", action="store_true", help="print JSON")


def _table(result: dict[str, Any]) -> str:
    lines = [f"{'node id':<34} {'kind':<4} {'url':<36} {'state':<10} pid"]
    for node in result["nodes"]:
        lines.append(
            f"{node['node_id']:<34} {node['kind']:<4} {node['url']:<36} "
            f"{node['state']:<10} {node.get('pid', '-')}"
        )
    if not result["nodes"]:
        lines.append("(no nodes: the cluster has no GPUs and --cpu-nodes is 0)")
    if result.get("events"):
        lines += ["", "recent events:", *(f"  {e}" for e in result["events"][-10:])]
    return "\n".join(lines) + "\n"


def run_ray_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import ray_nodes

    try:
        if args.ray_command == "up":
            spec = ray_nodes.spec_from(
                args.registry_url,
                os.environ,
                per_gpu=args.per_gpu,
                cpu_nodes=args.cpu_nodes,
                port_base=args.port_base,
                url_template=args.url_template,
                bind=args.bind,
            )
            started = time.monotonic()
            result = ray_nodes.up(args.address, spec)
            sys.stdout.write(_table(result))
            sys.stdout.write(
                f"supervisor up in {time.monotonic() - started:.1f} s; "
                "nodes register with the web app as they finish loading\n"
            )
        elif args.ray_command == "status":
            result = ray_nodes.status(args.address)
            text = json.dumps(result, indent=2) + "\n" if args.json else _table(result)
            sys.stdout.write(text)
        else:
            stopped = ray_nodes.down(args.address)
            sys.stdout.write(f"stopped and deregistered {stopped} nodes; supervisor removed\n")
    except ray_nodes.RayError as exc:
        parser.exit(2, f"edgesight: error: {exc}\n")
    return 0
