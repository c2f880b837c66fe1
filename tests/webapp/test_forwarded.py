"""Proxy headers (issue 17, item 7): an identity header is believed only from a configured
proxy, judged by the TCP peer, never by X-Forwarded-For, which the client writes. Tested
without a proxy against real uvicorn, and behind a real nginx deployed as a user would:
basic auth at the proxy, the user in X-Forwarded-User, TRUSTED_PROXIES=127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from edgesight.serving import ServerThread
from tests.daemons import free_port
from webapp.app import create_app
from webapp.forwarded import _forwarded_client as forwarded_client
from webapp.forwarded import parse_networks
from webapp.settings import SettingsError, WebappSettings

NGINX = Path("/usr/sbin/nginx")
# A browser on another machine, as the web app sees it: another loopback address.
REMOTE = "127.0.0.2"


def _settings(tmp_path: Path, trusted: tuple[str, ...]) -> WebappSettings:
    return WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "key.pem",
        auth_modes=("proxy-header",),
        trusted_proxies=trusted,
    )


def test_the_client_is_the_rightmost_address_no_trusted_proxy_vouches_for() -> None:
    trusted = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    assert forwarded_client("203.0.113.9", trusted) == "203.0.113.9"
    # the client prepended a lie; the proxies appended the truth
    assert forwarded_client("10.0.0.1, 203.0.113.9, 10.2.3.4", trusted) == "203.0.113.9"
    assert forwarded_client("10.0.0.1", trusted) == "10.0.0.1"  # all proxies: the first
    assert forwarded_client("not-an-ip", trusted) is None
    assert forwarded_client("", trusted) is None


def test_forwarded_headers_from_an_untrusted_peer_change_nothing(tmp_path: Path) -> None:
    # issue 17: on 127.0.0.1, with proxies 10.0.0.0/8 trusted, a client that says it is
    # 10.0.0.1 and names admin got a token for admin (uvicorn believed X-Forwarded-For).
    with ServerThread(create_app(_settings(tmp_path, ("10.0.0.0/8",)))) as server:
        spoofed = httpx.post(
            f"{server.http_url}/api/token",
            headers={
                "X-Forwarded-For": "10.0.0.1",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-User": "admin",
            },
        )
        page = httpx.get(
            f"{server.http_url}/",
            headers={"X-Forwarded-For": "10.0.0.1", "X-Forwarded-User": "admin"},
        )
    assert spoofed.status_code == 401
    assert page.status_code == 401
    assert "strict-transport-security" not in page.headers  # nor is it https


def test_behind_a_trusted_proxy_the_scheme_and_client_are_the_forwarded_ones(
    tmp_path: Path,
) -> None:
    app = create_app(_settings(tmp_path, ("10.0.0.0/8",)))
    proxy = TestClient(app, base_url="http://edge.example", client=("10.0.0.5", 4000))
    page = proxy.get(
        "/",
        headers={
            "X-Forwarded-User": "carol",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
        },
    )
    assert page.status_code == 200
    assert page.headers["strict-transport-security"].startswith("max-age=")


@pytest.fixture
def nginx_port() -> int:
    """A port for nginx; a failure, not a skip, when nginx is missing."""
    if not NGINX.is_file():
        pytest.fail(
            f"nginx not found at {NGINX}: the web app is tested behind a real reverse proxy; "
            "install it (apt-get install nginx; scripts/test.sh does)"
        )
    return free_port()


def _start_nginx(folder: Path, port: int, upstream_port: int) -> subprocess.Popen[bytes]:
    (folder / "htpasswd").write_text("alice:{PLAIN}alice-proxy-pass\n")
    (folder / "nginx.conf").write_text(
        f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_basic "edgesight";
            auth_basic_user_file {folder}/htpasswd;
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-User $remote_user;
        }}
    }}
}}
"""
    )
    process = subprocess.Popen(
        # -e: the start-up error log too, which would otherwise be /var/log/nginx's
        [
            str(NGINX),
            "-p",
            str(folder),
            "-c",
            str(folder / "nginx.conf"),
            "-e",
            str(folder / "error.log"),
            "-g",
            "daemon off;",
        ],
        stderr=subprocess.PIPE,
    )
    return process


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    # nginx prints nothing when it is ready: the first answer on its port is the signal;
    # refused connects are retried on a short poll, bounded.
    poll = threading.Event()  # never set
    for _ in range(3000):
        if process.poll() is not None:
            assert process.stderr is not None
            pytest.fail(f"nginx exited: {process.stderr.read().decode()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return
        except httpx.ConnectError:
            poll.wait(0.01)
    pytest.fail("nginx did not start listening")


def test_behind_nginx_the_proxys_user_is_believed_and_nobody_elses(
    tmp_path: Path, nginx_port: int
) -> None:
    port = nginx_port
    # The README's setup: the proxy on this machine, TRUSTED_PROXIES=127.0.0.1. The
    # browser is elsewhere (REMOTE): nginx appends its address to X-Forwarded-For, which
    # made uvicorn report REMOTE as the peer, and every request got 401.
    with ServerThread(create_app(_settings(tmp_path, ("127.0.0.1",)))) as web:
        process = _start_nginx(tmp_path, port, web.port)
        try:
            _wait_for_port(port, process)
            remote = httpx.HTTPTransport(local_address=REMOTE)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", transport=remote, timeout=10
            ) as browser:
                origin = {"Origin": f"http://127.0.0.1:{port}"}
                alice = ("alice", "alice-proxy-pass")
                signed = browser.post("/api/token", headers=origin, auth=alice)
                assert signed.status_code == 200, signed.text
                assert signed.json()["identity"] == "alice"
                # a user header of the browser's own is replaced by the proxy's
                claimed = browser.post(
                    "/api/token",
                    headers={**origin, "X-Forwarded-User": "admin", "X-Forwarded-For": "127.0.0.1"},
                    auth=alice,
                )
                assert claimed.json()["identity"] == "alice"
                assert browser.get("/").status_code == 401  # nginx: no basic auth, no page
            # around the proxy, straight to the web app, from the remote address
            with httpx.Client(
                base_url=web.http_url, transport=httpx.HTTPTransport(local_address=REMOTE)
            ) as around:
                bypass = around.post(
                    "/api/token",
                    headers={"X-Forwarded-User": "admin", "X-Forwarded-For": "127.0.0.1"},
                )
                assert bypass.status_code == 401
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_trusted_proxies_are_checked_in_every_mode() -> None:
    with pytest.raises(SettingsError, match="EDGESIGHT_TRUSTED_PROXIES"):
        WebappSettings.from_env({"EDGESIGHT_TRUSTED_PROXIES": "10.0.0.0/33"})
