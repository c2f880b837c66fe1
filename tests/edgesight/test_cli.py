"""The `edgesight` command: help, and clear one-line errors for bad values."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import ssl
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgesight.certs import issue
from edgesight.cli import main
from edgesight.serving import ServerThread
from gpu_backend.tokens import TokenVerifier, load_public_key
from tests.signalling_store import SignallingStore
from webapp.app import create_app as create_webapp
from webapp.node_identity import NodeCredentials
from webapp.settings import WebappSettings
from webapp.tokens import TokenSigner
from webapp.users import Users


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesight", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["serve", "node", "webapp"])
def test_help_lists_the_flags_and_their_variables(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0
    assert "--port" in result.stdout
    assert "EDGESIGHT_" in result.stdout
    assert "--tls-cert" in result.stdout
    assert "EDGESIGHT_TLS_KEY" in result.stdout
    assert ("--ca-file" in result.stdout) is (command != "webapp")


def test_the_web_app_serves_https(tmp_path: Path) -> None:
    """`edgesight webapp` with a certificate answers over https."""
    issued = issue(tmp_path / "tls", [])
    port = _free_port()
    args = ["--log-level", "info", "webapp", "--port", str(port)]
    tls = ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key)]
    with _started([*args, *tls]) as proc:
        context = ssl.create_default_context(cafile=issued.ca_cert)
        body = _get(f"https://localhost:{port}/healthz", context, proc)
        assert json.loads(body) == {"status": "ok"}
    assert "open https://127.0.0.1:" in proc.stderr_text


def test_plain_http_beyond_loopback_is_warned_about_at_start(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """What the CLI does before binding (tests never bind beyond loopback)."""
    from edgesight.serve_cli import _tls

    with caplog.at_level(logging.WARNING, logger="edgesight"):
        assert _tls("the web app", "0.0.0.0", 8000, None, None) == (None, None)
        assert _tls("the node", "127.0.0.1", 8001, None, None) == (None, None)
    assert [r.getMessage()[:50] for r in caplog.records] == [
        "the web app serves plain http on 0.0.0.0:8000: bro"
    ]
    issued = issue(tmp_path / "tls", [])
    context, reloader = _tls("the node", "0.0.0.0", 8001, issued.cert, issued.key)
    assert context is not None
    assert reloader is not None
    assert reloader.cert == issued.cert


def test_a_tls_web_app_points_pages_at_wss_nodes_by_default(tmp_path: Path) -> None:
    issued = issue(tmp_path / "tls", [])
    env = {"EDGESIGHT_TLS_CERT": str(issued.cert), "EDGESIGHT_TLS_KEY": str(issued.key)}
    assert WebappSettings.from_env(env).node_urls == ("wss://{hostname}:8001/ws",)
    assert WebappSettings.from_env({}).node_urls == ("ws://{hostname}:8001/ws",)
    explicit = WebappSettings.from_env({**env, "EDGESIGHT_NODE_URLS": "ws://gpu:8001/ws"})
    assert explicit.node_urls == ("ws://gpu:8001/ws",)  # said explicitly: kept (the page
    # then names it as unusable from https)


class _Proc:
    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.stderr_text = ""


@contextlib.contextmanager
def _started(args: list[str]) -> Iterator[_Proc]:
    popen = subprocess.Popen(
        [sys.executable, "-m", "edgesight", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    proc = _Proc(popen)
    try:
        assert popen.stderr is not None
        for line in popen.stderr:  # start-up is over when uvicorn says so
            proc.stderr_text += line
            if "listening on" in line:  # printed once the server serves
                break
        yield proc
    finally:
        popen.send_signal(signal.SIGINT)
        popen.wait(timeout=30)
        assert popen.stderr is not None
        proc.stderr_text += popen.stderr.read()
        popen.stderr.close()


def _get(url: str, context: ssl.SSLContext, proc: _Proc) -> bytes:
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        return bytes(response.read())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("node", "--port", "99999"), {}, "expected a port from 0 to 65535, got 99999"),
        (("node", "--port", "http"), {}, "expected a port number, got 'http'"),
        (("node",), {"EDGESIGHT_NODE_PORT": "x"}, "EDGESIGHT_NODE_PORT: expected an integer"),
        (("node", "--model", "/nowhere/model.onnx"), {}, "model file not found: /nowhere"),
        (("node", "--provider", "tpu"), {}, "invalid choice: 'tpu'"),
        (("webapp", "--node-url", "http://a/ws"), {}, "expected a URL starting ws:// or wss://"),
        (("serve",), {"EDGESIGHT_MAX_BATCH_SIZE": "0"}, "EDGESIGHT_MAX_BATCH_SIZE"),
        (("node", "--tls-cert", "/etc/hostname"), {}, "EDGESIGHT_TLS_KEY (tls_key): expected"),
        (("webapp", "--tls-key", "/etc/hostname"), {}, "EDGESIGHT_TLS_CERT (tls_cert): expected"),
        (
            ("webapp",),
            {"EDGESIGHT_TLS_CERT": "/nowhere.pem", "EDGESIGHT_TLS_KEY": "/nowhere-key.pem"},
            "EDGESIGHT_TLS_CERT: expected a PEM file, got '/nowhere.pem' (not found)",
        ),
        (
            ("webapp", "--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"),
            {},
            "cannot use certificate /etc/hostname with key /etc/hostname: expected a PEM",
        ),
        (("node", "--ca-file", "/nowhere.pem"), {}, "EDGESIGHT_CA_FILE (ca_file): expected"),
        (("node",), {"EDGESIGHT_ALLOWED_ORIGINS": "app.example"}, "EDGESIGHT_ALLOWED_ORIGINS"),
    ],
)
def test_bad_values_stop_with_a_message_naming_them(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    result = _run(*args, env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([], environ={})
    assert exit_info.value.code == 2


def test_users_add_writes_a_private_users_file_the_web_app_reads(tmp_path: Path) -> None:
    env = {"EDGESIGHT_STATE_DIR": str(tmp_path)}
    added = subprocess.run(
        [sys.executable, "-m", "edgesight", "users", "add", "alice", "--password-stdin"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    kiosk = _run("users", "kiosk", "lobby", env=env)
    assert kiosk.returncode == 0
    key = kiosk.stdout.splitlines()[1]
    path = tmp_path / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = Users.load(path)
    assert users.check_password("alice", "correct horse battery")
    assert users.kiosk_for_key(key) == "lobby"
    assert "correct horse" not in path.read_text()
    listed = _run("users", "list", env=env)
    assert listed.stdout.split() == ["user", "alice", "kiosk", "lobby"]
    short = _run("users", "add", "bob", "--password-stdin", env=env)
    assert short.returncode == 2
    assert "at least 8 characters" in short.stderr


def test_token_prints_a_token_signed_with_the_web_apps_key(tmp_path: Path) -> None:
    env = {"EDGESIGHT_STATE_DIR": str(tmp_path), "EDGESIGHT_CLUSTER": "lab"}
    result = _run("token", "--identity", "bench", env=env)
    assert result.returncode == 0, result.stderr
    signer = TokenSigner.from_file(tmp_path / "token-key.pem", "lab", 300)
    verifier = TokenVerifier(load_public_key(signer.public_key_pem(), "test"), ["lab"])
    assert verifier.authenticate(result.stdout.strip(), None).identity == "bench"


def test_enrol_prints_a_credential_the_web_app_accepts_for_that_node_only(
    tmp_path: Path,
) -> None:
    env = {"EDGESIGHT_STATE_DIR": str(tmp_path), "EDGESIGHT_CLUSTER": "lab"}
    result = _run("enrol", "lab2-gpu0", env=env)
    assert result.returncode == 0, result.stderr
    credential = result.stdout.strip()
    assert credential.startswith("esn1.lab2-gpu0.")
    assert "EDGESIGHT_NODE_CREDENTIAL" in result.stderr
    signer = TokenSigner.from_file(tmp_path / "token-key.pem", "lab", 300)
    assert NodeCredentials(signer.enrolment_key()).node_id(credential) == "lab2-gpu0"

    for bad, expected in (("lab", "cluster name"), ("bad id", "node id")):
        refused = _run("enrol", bad, env=env)
        assert refused.returncode == 2
        assert expected in refused.stderr
        assert "Traceback" not in refused.stderr


def test_serve_lets_its_web_app_pages_use_its_node() -> None:
    from edgesight.cli import build_parser
    from edgesight.serve_cli import _node_settings, _with_own_registry

    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "8100"])
    node = _with_own_registry(_node_settings(args, {}), args, {})
    assert node.origin_policy.allows("http://kiosk.lan:8100")
    assert not node.origin_policy.allows("http://kiosk.lan:8200")


@pytest.mark.parametrize(
    ("sig", "times"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGHUP, 1), (signal.SIGINT, 2)],
)
@pytest.mark.parametrize("command", ["node", "webapp"])
def test_a_signal_stops_a_server_cleanly(command: str, sig: signal.Signals, times: int) -> None:
    """Once: a graceful stop; twice (an impatient Ctrl+C): no waiting for clients, but
    still the app's own shutdown and no traceback."""
    args = ["--log-level", "info", command, "--port", str(_free_port())]
    popen = subprocess.Popen(
        [sys.executable, "-m", "edgesight", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert popen.stderr is not None
    with popen.stderr:
        for line in popen.stderr:
            if "listening on" in line:  # printed once the server serves
                break
        for _ in range(times):
            popen.send_signal(sig)
        assert popen.wait(timeout=30) == 0
        rest = popen.stderr.read()
    assert "Application shutdown complete" in rest
    assert "Traceback" not in rest


def test_sighup_deregisters_a_node_before_it_exits() -> None:
    """Issue 17: SIGHUP (a closed terminal) killed a node, whose entry then lingered until
    it expired. Now it stops like SIGTERM: deregistered, exit 0."""
    secret = "0123456789abcdef0123"
    store = SignallingStore()
    settings = WebappSettings(node_urls=(), registry_secret=secret, missed_heartbeats=100)
    with ServerThread(create_webapp(settings, registry_store=store)) as web:
        args = ["node", "--port", str(_free_port()), "--registry-url", web.http_url]
        popen = subprocess.Popen(
            [sys.executable, "-m", "edgesight", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/bin:/bin", "EDGESIGHT_REGISTRY_SECRET": secret},
        )
        assert popen.stderr is not None
        with popen.stderr:
            assert store.registered.wait(timeout=60)
            popen.send_signal(signal.SIGHUP)
            assert popen.wait(timeout=30) == 0
            rest = popen.stderr.read()
        assert store.removed.is_set()
        assert web_nodes(web) == []
    assert "Traceback" not in rest


def web_nodes(web: ServerThread) -> list[object]:
    with urllib.request.urlopen(web.http_url + "/api/nodes", timeout=30) as response:
        nodes: list[object] = json.load(response)["nodes"]
    return nodes


def test_a_web_app_without_its_redis_stops_with_one_line() -> None:
    env = {
        "EDGESIGHT_REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0",  # nothing listens
        "EDGESIGHT_REGISTRY_SECRET": "0123456789abcdef0123",
    }
    result = _run("--log-level", "warning", "webapp", "--port", str(_free_port()), env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("edgesight: error: Redis at redis://")
    assert "Traceback" not in result.stderr
    assert "never retrieved" not in result.stderr


def test_tls_paths_expand_a_quoted_tilde() -> None:
    from edgesight.cli import build_parser

    args = build_parser().parse_args(["node", "--tls-cert", "~/c.pem", "--ca-file", "~/ca.pem"])
    assert args.tls_cert == Path.home() / "c.pem"
    assert args.ca_file == Path.home() / "ca.pem"
