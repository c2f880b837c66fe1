"""``edgesight``: run the web app, an inference node, or both on this machine.

    edgesight serve    web app + one local inference node (the default model, CPU or CUDA)
    edgesight node     one inference node
    edgesight webapp   the web app alone, pointing pages at the nodes you name
    edgesight certs    a local CA and server certificates for HTTPS/WSS on a LAN or kiosk
    edgesight model    import a YOLO-family ONNX detector; make an INT8 variant of a model
    edgesight users    who may sign in: add NAME, kiosk NAME, remove NAME, list
    edgesight token    print a stream token for a tool (signed with the web app's key)
    edgesight ray      place, restart and follow nodes on a Ray cluster (optional extra)

Flags override EDGESIGHT_* environment variables, which override the defaults. The web
app's token signing key and users file live in EDGESIGHT_STATE_DIR (default
$XDG_STATE_HOME/edgesight or ~/.local/state/edgesight) unless EDGESIGHT_TOKEN_KEY and
EDGESIGHT_USERS_FILE name other files.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from gpu_backend import NodeError
from webapp import WebappError

from . import certs
from .access_cli import add_access_commands, run_access_command
from .certs_cli import add_certs_command, run_certs_command
from .model_cli import add_model_commands, run_model_command
from .ray_cli import add_ray_commands, run_ray_command
from .serve_cli import SERVE_COMMANDS, add_serve_commands, run_serve_command
from .startup import quiet_uvicorn
from .tls import TlsError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_commands(commands)
    add_certs_command(commands)
    add_model_commands(commands)
    add_access_commands(commands)
    add_ray_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "debug":  # httpx logs every request: one line per heartbeat
        logging.getLogger("httpx").setLevel(logging.WARNING)
        quiet_uvicorn()
    if args.command == "model":
        return run_model_command(args, parser)
    if args.command == "ray":
        return run_ray_command(args, parser)
    if args.command in SERVE_COMMANDS:
        return run_serve_command(args, env, parser)
    try:
        if args.command == "certs":
            return run_certs_command(args, env)
        return run_access_command(args, env)  # users, token, enrol
    except (NodeError, WebappError, TlsError, certs.CertsError, ValueError) as exc:
        parser.exit(2, f"edgesight: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
