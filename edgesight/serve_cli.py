"""``edgesight serve|node|webapp``: their flags, and the servers they assemble and run.

``serve`` runs the web app and one local node that trusts it (its pages' origins, its token
key, its registry); ``node`` and ``webapp`` run one of the two. Each server gets its TLS
context (or a warning for plain http off loopback), its listening socket bound before it
starts (a port in use is an error naming its flag and variable), and a line once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gpu_backend import NodeError
from gpu_backend.app import create_app as create_node_app
from gpu_backend.heartbeat import node_id, registry_ssl_context
from gpu_backend.loopback import LOOPBACK_NAMES, is_loopback_host
from gpu_backend.settings import NodeSettings
from gpu_backend.tokens import load_public_key
from webapp import WebappError
from webapp.app import create_app as create_webapp
from webapp.node_identity import NodeCredentials
from webapp.settings import WebappSettings
from webapp.tokens import TokenSigner

from .access_cli import with_state_defaults
from .lifecycle import Server, StartupFailed, run_servers
from .serving import ServerLimits, make_server, serve
from .startup import bind_listener
from .tls import CertificateReloader, TlsError, insecure_bind_warning, server_context

__all__ = ["SERVE_COMMANDS", "add_serve_commands", "run_serve_command"]

log = logging.getLogger("edgesight")  # the CLI's own lines, as before the split

SERVE_COMMANDS = ("serve", "node", "webapp")


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
    parser.add_argument(
        "--allow-anonymous",
        action="store_const",
        const=True,
        help="let clients stream without a token even when listening beyond loopback "
        "(EDGESIGHT_ALLOW_ANONYMOUS; default: only on loopback); logged at start",
    )
    parser.add_argument(
        "--token-public-key",
        help="the web app's token public key, a PEM file (EDGESIGHT_TOKEN_PUBLIC_KEY; "
        "default: fetched from the registry at start)",
    )


def _path(text: str) -> Path:
    return Path(text).expanduser()  # "~/..." inside quotes reaches us unexpanded


def _add_tls_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--tls-cert",
        type=_path,
        help=f"PEM certificate (chain) for HTTPS/WSS on {what}; reloaded when the file "
        "changes (EDGESIGHT_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key", type=_path, help="PEM private key of --tls-cert (EDGESIGHT_TLS_KEY)"
    )


def _add_ca_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-file",
        type=_path,
        help="PEM CA certificate(s) the node trusts for an https registry "
        "(EDGESIGHT_CA_FILE, default: the system's trust store)",
    )


def add_serve_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="web app + one local inference node")
    serve.add_argument("--host", help="web app bind address (EDGESIGHT_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="web app port (EDGESIGHT_PORT, default 8000)")
    _add_node_flags(serve, prefix="node-")
    _add_tls_flags(serve, "the web app and the node")
    _add_ca_flag(serve)

    node = commands.add_parser("node", help="one inference node")
    _add_node_flags(node)
    _add_tls_flags(node, "the node")
    _add_ca_flag(node)
    node.add_argument("--site", help="location label shown to users (EDGESIGHT_SITE)")
    node.add_argument(
        "--public-url",
        help="ws:// or wss:// URL browsers use to reach this node "
        "(EDGESIGHT_PUBLIC_URL, default ws[s]://HOST:PORT/ws)",
    )
    node.add_argument(
        "--registry-url",
        help="web app to register with, https://HOST:PORT or http://HOST:PORT "
        "(EDGESIGHT_REGISTRY_URL); needs EDGESIGHT_NODE_CREDENTIAL (edgesight enrol)",
    )

    web = commands.add_parser("webapp", help="the web app alone")
    web.add_argument("--host", help="bind address (EDGESIGHT_HOST, default 127.0.0.1)")
    web.add_argument("--port", type=_port, help="port (EDGESIGHT_PORT, default 8000)")
    web.add_argument(
        "--node-url",
        dest="node_urls",
        action="append",
        help="ws:// or wss:// URL of a node; repeat for several "
        "(EDGESIGHT_NODE_URLS, comma-separated)",
    )
    _add_tls_flags(web, "the web app")


def _node_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> NodeSettings:
    return NodeSettings.from_env(
        environ,
        allow_anonymous=args.allow_anonymous,
        token_public_key=args.token_public_key,
        host=args.node_host,
        port=args.node_port,
        model_path=args.model,
        node_name=args.node_name,
        provider=args.provider,
        device_id=args.device_id,
        site=getattr(args, "site", None),
        public_url=getattr(args, "public_url", None),
        registry_url=getattr(args, "registry_url", None),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        ca_file=args.ca_file,
    )


def _local_node_url(node: NodeSettings) -> str:
    host = "{hostname}" if node.host in ("0.0.0.0", "::") else node.host
    scheme = "wss" if node.is_tls else "ws"
    return node.public_url or f"{scheme}://{host}:{node.port}/ws"


def _webapp_origins(web: WebappSettings) -> tuple[str, ...]:
    """The origins of the pages a web app serves: its node accepts those."""
    if web.host in ("0.0.0.0", "::"):  # any of this machine's names
        hosts: tuple[str, ...] = ("*",)
    elif is_loopback_host(web.host):
        hosts = LOOPBACK_NAMES
    else:
        hosts = (f"[{web.host}]" if ":" in web.host else web.host,)
    return tuple(f"{scheme}://{host}:{web.port}" for scheme in ("http", "https") for host in hosts)


def _with_own_registry(
    node: NodeSettings, args: argparse.Namespace, environ: Mapping[str, str]
) -> NodeSettings:
    """``serve``: the local node accepts the pages of its own web app; with a registry
    secret configured it heartbeats to that web app, so the page sees its load (enrolled
    with its own credential, made here from the web app's key); without one, the static
    node URL lists it."""
    web = WebappSettings.from_env(
        environ, host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key
    )
    if not node.allowed_origins:
        node = replace(node, allowed_origins=_webapp_origins(web))
    if not web.registry_secret or node.registry_url:
        return node
    host = "127.0.0.1" if web.host in ("0.0.0.0", "::") else web.host
    if ":" in host:
        host = f"[{host}]"
    # Over TLS the node checks the web app's certificate for 127.0.0.1: `edgesight certs`
    # always includes it; with another certificate, set EDGESIGHT_REGISTRY_URL.
    scheme = "https" if web.is_tls else "http"
    signer = TokenSigner.from_file(web.token_key_path, web.cluster_name, web.token_lifetime_s)
    return replace(
        node,
        registry_url=f"{scheme}://{host}:{web.port}",
        node_credential=NodeCredentials(signer.enrolment_key()).issue(node_id(node)),
        public_url=_local_node_url(node),  # the same URL as the static entry it replaces
    )


# the server, its certificate reloader, its bound socket, and what it is for the log
Served = tuple[Server, CertificateReloader | None, socket.socket, str]


async def _say_when_up(servers: Sequence[Served]) -> None:
    """One line per server once it serves (uvicorn says nothing for sockets it was given;
    it exposes readiness only as a flag)."""
    waiting = list(servers)
    while waiting:
        for served in [s for s in waiting if s[0].started]:
            server, _, sock, what = served
            host, port = sock.getsockname()[:2]
            is_node = what == "the node"
            scheme = ("wss" if is_node else "https") if server.config.ssl else ""
            scheme = scheme or ("ws" if is_node else "http")
            path = "/ws" if is_node else ""
            log.info("%s is listening on %s://%s:%d%s", what, scheme, host, port, path)
            waiting.remove(served)
        await asyncio.sleep(0.05)  # uvicorn offers a `started` flag, no event, to wait on


async def _run(servers: Sequence[Served]) -> None:
    announcer = asyncio.create_task(_say_when_up(servers))
    try:
        runs = [
            (server, serve(server, reloader, sockets=[sock]))
            for server, reloader, sock, _ in servers
        ]
        await run_servers(runs)
    finally:
        announcer.cancel()


def _own_public_key(args: argparse.Namespace, environ: Mapping[str, str]) -> Ed25519PublicKey:
    """``serve``: the local node checks tokens with its own web app's key, read from the
    key file (created now if missing) rather than fetched from a server not yet up."""
    web = WebappSettings.from_env(environ, host=args.host, port=args.port)
    signer = TokenSigner.from_file(web.token_key_path, web.cluster_name, web.token_lifetime_s)
    return load_public_key(signer.public_key_pem(), str(web.token_key_path))


def _tls(
    what: str, host: str, port: int, cert: Path | None, key: Path | None
) -> tuple[ssl.SSLContext | None, CertificateReloader | None]:
    """The server's TLS context and its reloader, or a warning and plain http."""
    if cert is None or key is None:
        warning = insecure_bind_warning(what, host, port)
        if warning:
            log.warning("%s", warning)
        return None, None
    context = server_context(cert, key)
    return context, CertificateReloader(context, cert, key)


def run_serve_command(
    args: argparse.Namespace, environ: Mapping[str, str], parser: argparse.ArgumentParser
) -> int:
    try:
        servers = _servers(args, environ)
    except (NodeError, WebappError, TlsError, ValueError) as exc:
        parser.exit(2, f"edgesight: error: {exc}\n")
    try:
        asyncio.run(_run(servers))
    except StartupFailed as exc:
        parser.exit(1, f"edgesight: error: {exc}\n")
    except KeyboardInterrupt:  # before the servers took over the signals
        return 130
    return 0


def _servers(args: argparse.Namespace, environ: Mapping[str, str]) -> list[Served]:
    env = with_state_defaults(environ) if args.command in ("serve", "webapp") else environ
    servers: list[Served] = []
    node = None
    if args.command in ("serve", "node"):
        node_served, node = _node_server(args, env)
        servers.append(node_served)
    if args.command in ("serve", "webapp"):
        servers.append(_webapp_server(args, env, node))
    return servers


def _node_server(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Served, NodeSettings]:
    node = _node_settings(args, env)
    public_key = None
    if args.command == "serve":
        node = _with_own_registry(node, args, env)
        public_key = _own_public_key(args, env)
    if node.registry_url.startswith("https://"):
        registry_ssl_context(node)  # a bad CA file stops start-up here, not later
    context, reloader = _tls("the node", node.host, node.port, node.tls_cert, node.tls_key)
    app = create_node_app(node, public_key=public_key)
    limits = ServerLimits(
        header_timeout_s=node.header_timeout_s,
        max_connections_per_address=node.max_connections_per_address,
        close_timeout_s=node.close_timeout_s,
        body_timeout_s=node.body_timeout_s,
        min_body_rate_bytes_per_s=node.min_body_rate_bytes_per_s,
    )
    server = make_server(app, node.host, node.port, node.max_message_bytes, context, limits)
    flag = "--node-port or EDGESIGHT_NODE_PORT"
    if args.command == "node":
        flag = "--port or EDGESIGHT_NODE_PORT"
    node_socket = bind_listener(node.host, node.port, "the node", flag)
    return (server, reloader, node_socket, "the node"), node


def _webapp_server(
    args: argparse.Namespace, env: Mapping[str, str], node: NodeSettings | None
) -> Served:
    """``node``: the local node of ``serve``, which the page lists and whose model the
    page's in-browser fallback runs."""
    overrides: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
    }
    if args.command == "webapp" and args.node_urls:
        overrides["node_urls"] = tuple(args.node_urls)
    if node is not None and "EDGESIGHT_NODE_URLS" not in env:
        overrides["node_urls"] = (_local_node_url(node),)
    if node is not None and "EDGESIGHT_MODEL_DIR" not in env:
        # the page's in-browser fallback runs the model the node serves
        overrides["model_dir"] = node.model_path.parent
    web = WebappSettings.from_env(env, **overrides)
    context, reloader = _tls("the web app", web.host, web.port, web.tls_cert, web.tls_key)
    web_limits = ServerLimits(
        body_timeout_s=web.body_timeout_s,
        min_body_rate_bytes_per_s=web.min_body_rate_bytes_per_s,
    )
    server = make_server(create_webapp(web), web.host, web.port, 64 * 1024, context, web_limits)
    port_flag = "--port or EDGESIGHT_PORT"
    web_socket = bind_listener(web.host, web.port, "the web app", port_flag)
    scheme = "https" if web.is_tls else "http"
    log.info("open %s://%s:%d in a browser", scheme, web.host, web.port)
    return server, reloader, web_socket, "the web app"
