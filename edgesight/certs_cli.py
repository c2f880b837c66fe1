"""``edgesight certs``: a local CA and server certificates for HTTPS/WSS (the work is in
edgesight.certs), and what to do with them, printed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from . import certs

__all__ = ["add_certs_command", "run_certs_command"]


def add_certs_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "certs",
        help="a local CA and server certificates for HTTPS/WSS",
        description="Create a local certificate authority (kept if it already exists) and "
        "a server certificate for the given host names and IP addresses (localhost, "
        "127.0.0.1 and ::1 are always added), then print how to trust the CA on a kiosk "
        "and how to serve with the certificate.",
    )
    command.add_argument(
        "hosts", nargs="*", metavar="HOST", help="host names and IP addresses browsers use"
    )
    command.add_argument(
        "--dir",
        dest="certs_dir",
        type=Path,
        help="where to keep the files (default $XDG_CONFIG_HOME/edgesight/tls, "
        "else ~/.config/edgesight/tls)",
    )
    command.add_argument(
        "--name",
        dest="cert_name",
        default=None,
        help="file name of the server certificate: NAME.pem, NAME-key.pem (default server, "
        "or webtransport with --webtransport)",
    )
    command.add_argument(
        "--webtransport",
        action="store_true",
        help="instead: a self-signed ECDSA P-256 certificate valid under 14 days that "
        "browsers pin by its SHA-256 for WebTransport (EDGESIGHT_WT_CERT/EDGESIGHT_WT_KEY)",
    )
    command.add_argument(
        "--days",
        type=float,
        default=10.0,
        help="validity of the --webtransport certificate, under 14 (default 10)",
    )


def run_certs_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    directory = (args.certs_dir or certs.default_directory(dict(environ))).expanduser()
    if args.webtransport:
        name = args.cert_name or "webtransport"
        pinned = certs.issue_webtransport(directory, args.hosts, name=name, days=args.days)
        sys.stdout.write(certs.webtransport_instructions(pinned))
        return 0
    issued = certs.issue(directory, args.hosts, name=args.cert_name or "server")
    sys.stdout.write(certs.trust_instructions(issued))
    return 0
