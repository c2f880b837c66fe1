"""``edgesight users|token``: who may sign in to the web app, and stream tokens for tools.

    edgesight users add NAME [--password-stdin]   add a user or set a password (scrypt)
    edgesight users kiosk NAME                     a kiosk's access key, shown once
    edgesight users remove NAME | list
    edgesight token --identity NAME                a token signed with the web app's key
    edgesight enrol NODE_ID                        a node's credential (issue 17)

The users file and the token key live in the state dir unless EDGESIGHT_USERS_FILE and
EDGESIGHT_TOKEN_KEY name other files (``with_state_defaults``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from webapp import WebappError
from webapp.node_identity import NodeCredentials
from webapp.settings import WebappSettings
from webapp.tokens import TokenSigner
from webapp.users import Users

__all__ = ["add_access_commands", "run_access_command", "state_dir", "with_state_defaults"]


def _say(text: str) -> None:
    """The command's answer, on stdout (logs go to stderr)."""
    sys.stdout.write(text + "\n")


def add_access_commands(commands: Any) -> None:
    _add_user_commands(commands)
    _add_enrol_command(commands)
    token = commands.add_parser(
        "token", help="print a stream token for a tool, signed with the web app's key"
    )
    token.add_argument("--identity", required=True, help="who the token names (sub)")
    token.add_argument(
        "--audience", help="a node id or the cluster name (default: EDGESIGHT_CLUSTER)"
    )
    token.add_argument("--lifetime-s", type=float, default=300.0, help="default 300")
    token.add_argument(
        "--origin", help="bind the token to pages of this origin (default: not bound)"
    )


def _add_enrol_command(commands: Any) -> None:
    enrol = commands.add_parser(
        "enrol",
        help="print the credential a node registers with (EDGESIGHT_NODE_CREDENTIAL), "
        "made with the web app's token key",
    )
    enrol.add_argument("node_id", help="the node's id (EDGESIGHT_NODE_ID), e.g. lab2-gpu0")


def _add_user_commands(commands: Any) -> None:
    users = commands.add_parser(
        "users", help="who may sign in (EDGESIGHT_USERS_FILE, default in the state dir)"
    )
    users.add_argument("--file", type=Path, help="the users file (EDGESIGHT_USERS_FILE)")
    actions = users.add_subparsers(dest="users_action", required=True)
    add = actions.add_parser("add", help="add a user, or set a user's password")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    kiosk = actions.add_parser("kiosk", help="make (or replace) a kiosk's access key")
    kiosk.add_argument("name")
    remove = actions.add_parser("remove", help="remove a user or kiosk")
    remove.add_argument("name")
    actions.add_parser("list", help="list users and kiosks")


def state_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("EDGESIGHT_STATE_DIR"):
        return Path(environ["EDGESIGHT_STATE_DIR"]).expanduser()
    if environ.get("XDG_STATE_HOME"):
        return Path(environ["XDG_STATE_HOME"]).expanduser() / "edgesight"
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".local" / "state" / "edgesight"


def with_state_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with the state dir's files as defaults for the key and users file."""
    env = dict(environ)
    env.setdefault("EDGESIGHT_TOKEN_KEY", str(state_dir(environ) / "token-key.pem"))
    env.setdefault("EDGESIGHT_USERS_FILE", str(state_dir(environ) / "users.json"))
    return env


def _users_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    path: Path = args.file or Path(with_state_defaults(environ)["EDGESIGHT_USERS_FILE"])
    users = Users.load(path)
    if args.users_action == "list":
        for name in sorted(users.users):
            _say(f"user   {name}")
        for name in sorted(users.kiosks):
            _say(f"kiosk  {name}")
        return 0
    if args.users_action == "remove":
        if users.users.pop(args.name, None) is None and users.kiosks.pop(args.name, None) is None:
            raise WebappError(f"no user or kiosk named {args.name!r} in {path}")
        users.save(path)
        _say(f"removed {args.name} from {path}")
        return 0
    if args.users_action == "kiosk":
        key = users.add_kiosk(args.name)
        users.save(path)
        _say(f"kiosk {args.name} added to {path}. Its access key (shown once):\n{key}")
        _say(f"Open the kiosk at https://WEBAPP/kiosk?key={key} (EDGESIGHT_AUTH=kiosk-key)")
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise WebappError("the two passwords differ; nothing changed")
    users.set_password(args.name, password)
    users.save(path)
    _say(f"user {args.name} saved in {path} (EDGESIGHT_AUTH=users, EDGESIGHT_USERS_FILE)")
    return 0


def _token_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    web = WebappSettings.from_env(with_state_defaults(environ))
    signer = TokenSigner.from_file(web.token_key_path, web.cluster_name, web.token_lifetime_s)
    issued = signer.issue(
        args.identity, args.origin, audience=args.audience, lifetime_s=args.lifetime_s
    )
    _say(issued.token)
    return 0


def _enrol_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    web = WebappSettings.from_env(with_state_defaults(environ))
    signer = TokenSigner.from_file(web.token_key_path, web.cluster_name, web.token_lifetime_s)
    if args.node_id == web.cluster_name:
        raise WebappError(
            f"node id {args.node_id!r} is the cluster name (EDGESIGHT_CLUSTER): pick another"
        )
    try:
        credential = NodeCredentials(signer.enrolment_key()).issue(args.node_id)
    except ValueError as exc:
        raise WebappError(f"node id: {exc}") from None
    _say(credential)
    sys.stderr.write(
        f"node {args.node_id} enrolled with {web.token_key_path}. On that node, keep the line "
        "above secret (mode 0600) as EDGESIGHT_NODE_CREDENTIAL in its environment file; "
        "it registers as that id only.\n"
    )
    return 0


def run_access_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.command == "users":
        return _users_command(args, environ)
    if args.command == "enrol":
        return _enrol_command(args, environ)
    return _token_command(args, environ)
