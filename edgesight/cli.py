"""``edgesight``: run the web app, an inference node, or both on this machine.

    edgesight serve    web app + one local inference node (the default model, CPU or CUDA)
    edgesight node     one inference node
    edgesight webapp   the web app alone, pointing pages at the nodes you name

Flags override EDGESIGHT_* environment variables, which override the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import uvicorn

from gpu_backend import NodeError
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from webapp import WebappError
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings

from .serving import make_server

__all__ = ["build_parser", "main"]

log = logging.getLogger("edgesight")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def _add_node_flags(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        f"--{prefix}host",
        dest="node_host",
        help="node bind address (EDGESIGHT_NODE_HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        f"--{prefix}port",
        dest="node_port",
        type=_port,
        help="node port (EDGESIGHT_NODE_PORT, default 8001)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="path to the .onnx model; model.json must "
        "sit beside it (EDGESIGHT_MODEL, default: the bundled nanodet-g-416)",
    )
    parser.add_argument(
        "--name",
        dest="node_name",
        help="node name shown to users (EDGESIGHT_NODE_NAME, default local-cpu)",
    )
    parser.add_argument(
        "--provider",
        choices=("auto", "cpu", "cuda"),
        help="execution provider (EDGESIGHT_PROVIDER, default auto)",
    )
    parser.add_argument(
        "--device",
        dest="device_id",
        type=int,
        help="CUDA device index (EDGESIGHT_DEVICE, default 0)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="web app + one local inference node")
    serve.add_argument("--host", help="web app bind address (EDGESIGHT_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="web app port (EDGESIGHT_PORT, default 8000)")
    _add_node_flags(serve, prefix="node-")

    node = commands.add_parser("node", help="one inference node")
    _add_node_flags(node)
    node.add_argument("--site", help="location label shown to users (EDGESIGHT_SITE)")
    node.add_argument(
        "--public-url",
        help="ws:// URL browsers use to reach this node "
        "(EDGESIGHT_PUBLIC_URL, default ws://HOST:PORT/ws)",
    )
    node.add_argument(
        "--registry-url",
        help="web app to register with, http://HOST:PORT (EDGESIGHT_REGISTRY_URL); "
        "needs EDGESIGHT_REGISTRY_SECRET",
    )

    web = commands.add_parser("webapp", help="the web app alone")
    web.add_argument("--host", help="bind address (EDGESIGHT_HOST, default 127.0.0.1)")
    web.add_argument("--port", type=_port, help="port (EDGESIGHT_PORT, default 8000)")
    web.add_argument(
        "--node-url",
        dest="node_urls",
        action="append",
        help="ws:// URL of a node; repeat for several (EDGESIGHT_NODE_URLS, comma-separated)",
    )
    return parser


def _node_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> NodeSettings:
    return NodeSettings.from_env(
        environ,
        host=args.node_host,
        port=args.node_port,
        model_path=args.model,
        node_name=args.node_name,
        provider=args.provider,
        device_id=args.device_id,
        site=getattr(args, "site", None),
        public_url=getattr(args, "public_url", None),
        registry_url=getattr(args, "registry_url", None),
    )


def _local_node_url(node: NodeSettings) -> str:
    host = "{hostname}" if node.host in ("0.0.0.0", "::") else node.host
    return node.public_url or f"ws://{host}:{node.port}/ws"


def _with_own_registry(
    node: NodeSettings, args: argparse.Namespace, environ: Mapping[str, str]
) -> NodeSettings:
    """``serve``: with a registry secret configured, the local node heartbeats to its own
    web app, so the page sees its load; without one, the static node URL lists it."""
    web = WebappSettings.from_env(environ, host=args.host, port=args.port)
    if not web.registry_secret or node.registry_url:
        return node
    host = "127.0.0.1" if web.host in ("0.0.0.0", "::") else web.host
    return replace(
        node,
        registry_url=f"http://{host}:{web.port}",
        registry_secret=web.registry_secret,
        public_url=_local_node_url(node),  # the same URL as the static entry it replaces
    )


async def _serve_all(servers: Sequence[uvicorn.Server]) -> None:
    # Each uvicorn server installs its own signal handlers and only the last one sees
    # Ctrl+C, so when any server stops, stop the others too.
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "debug":  # httpx logs every request: one line per heartbeat
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        servers = []
        if args.command in ("serve", "node"):
            node = _node_settings(args, env)
            if args.command == "serve":
                node = _with_own_registry(node, args, env)
            servers.append(
                make_server(create_node_app(node), node.host, node.port, node.max_message_bytes)
            )
        if args.command in ("serve", "webapp"):
            overrides: dict[str, object] = {"host": args.host, "port": args.port}
            if args.command == "webapp" and args.node_urls:
                overrides["node_urls"] = tuple(args.node_urls)
            if args.command == "serve" and "EDGESIGHT_NODE_URLS" not in env:
                overrides["node_urls"] = (_local_node_url(node),)
            web = WebappSettings.from_env(env, **overrides)
            servers.append(make_server(create_webapp(web), web.host, web.port, 64 * 1024))
            log.info("open http://%s:%d in a browser", web.host, web.port)
    except (NodeError, WebappError, ValueError) as exc:
        parser.exit(2, f"edgesight: error: {exc}\n")
    asyncio.run(_serve_all(servers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
