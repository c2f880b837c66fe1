"""The door to the page: password sign-in, kiosk keys, a trusted proxy's header, the rate
limit, the session cookie, and the warning when the door is left open."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from edgesight.serving import ServerThread
from webapp.app import create_app
from webapp.attempts import Limited, LoginLimiter
from webapp.settings import SettingsError, WebappSettings
from webapp.signin import SESSION_COOKIE, SessionCodec
from webapp.users import Users, UsersFileError, hash_password, verify_password

BASE = "https://edge.example"
FAST_N = 2**10  # scrypt cost for tests; the real default is in each stored hash


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    users = Users()
    users.set_password("alice", "correct horse battery", n=FAST_N)
    users.save(path)
    return path


def _app(tmp_path: Path, users_file: Path | None, **changes: object) -> TestClient:
    settings = WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "key.pem",
        users_file=users_file,
        **changes,  # type: ignore[arg-type]
    )
    return TestClient(create_app(settings), base_url=BASE, follow_redirects=False)


def _sign_in(client: TestClient, user: str, password: str) -> int:
    response = client.post("/login", data={"user": user, "password": password, "next": "/"})
    return response.status_code


# -- the KDF and the users file ------------------------------------------------------------
def test_passwords_are_stored_as_scrypt_hashes_that_verify() -> None:
    stored = hash_password("s3cret-pass", n=FAST_N)
    assert stored.startswith(f"scrypt${FAST_N}$8$1$")
    assert "s3cret-pass" not in stored
    assert verify_password("s3cret-pass", stored)
    assert not verify_password("s3cret-Pass", stored)
    assert not verify_password("s3cret-pass", "scrypt$garbage")
    assert hash_password("s3cret-pass", n=FAST_N) != stored  # salted


def test_the_users_file_is_private_and_round_trips(users_file: Path) -> None:
    assert oct(users_file.stat().st_mode & 0o777) == "0o600"
    users = Users.load(users_file)
    assert users.check_password("alice", "correct horse battery")
    assert not users.check_password("bob", "correct horse battery")
    with pytest.raises(UsersFileError, match="at least 8 characters"):
        users.set_password("bob", "short")
    with pytest.raises(UsersFileError, match="expected a name"):
        users.set_password("../bob", "long enough pass")


# -- the door ------------------------------------------------------------------------------
def test_with_sign_in_on_the_page_redirects_to_the_form_and_tokens_are_refused(
    tmp_path: Path, users_file: Path
) -> None:
    client = _app(tmp_path, users_file, auth_modes=("users",))
    page = client.get("/kiosk")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fkiosk"
    form = client.get("/login")
    assert form.status_code == 200
    assert 'name="password"' in form.text
    assert client.post("/api/token", headers={"Origin": BASE}).status_code == 401
    assert client.get("/api/nodes").status_code == 401
    # what the page needs to boot without sign-in stays open
    assert client.get("/api/token-key").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_signing_in_sets_a_strict_http_only_secure_cookie_that_opens_the_page(
    tmp_path: Path, users_file: Path
) -> None:
    client = _app(tmp_path, users_file, auth_modes=("users",))
    response = client.post(
        "/login", data={"user": "alice", "password": "correct horse battery", "next": "/kiosk"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/kiosk"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for flag in ("httponly", "secure", "samesite=strict", "path=/"):
        assert flag in cookie
    assert client.get("/").status_code == 200
    token = client.post("/api/token", headers={"Origin": BASE})
    assert token.status_code == 200
    assert token.json()["identity"] == "alice"
    client.post("/logout")
    assert client.get("/").status_code == 303


def test_a_wrong_password_says_so_and_never_redirects_off_site(
    tmp_path: Path, users_file: Path
) -> None:
    client = _app(tmp_path, users_file, auth_modes=("users",))
    wrong = client.post("/login", data={"user": "alice", "password": "nope nope"})
    assert wrong.status_code == 401
    assert "Wrong user name or password." in wrong.text
    off_site = client.post(
        "/login",
        data={"user": "alice", "password": "correct horse battery", "next": "//evil.example/"},
    )
    assert off_site.headers["location"] == "/"


def test_a_forged_or_tampered_cookie_is_not_a_session(tmp_path: Path, users_file: Path) -> None:
    client = _app(tmp_path, users_file, auth_modes=("users",))
    other_key, _ = SessionCodec(b"another web app's secret", 3600).encode("alice", "user")
    client.cookies.set(SESSION_COOKIE, other_key)
    assert client.get("/").status_code == 303
    client.cookies.set(SESSION_COOKIE, "garbage.garbage")
    assert client.get("/").status_code == 303


def test_sessions_expire() -> None:
    clock = Clock()
    codec = SessionCodec(b"k" * 32, lifetime_s=60, clock=clock)
    value, session = codec.encode("alice", "user")
    assert codec.decode(value) == session
    clock.now_s += 61
    assert codec.decode(value) is None


def test_the_rate_limit_kicks_in_per_user_and_then_lets_go(
    tmp_path: Path, users_file: Path
) -> None:
    client = _app(tmp_path, users_file, auth_modes=("users",))
    for _ in range(5):
        assert _sign_in(client, "alice", "wrong guess") == 401
    limited = client.post("/login", data={"user": "alice", "password": "correct horse battery"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in limited.text


def test_the_limiter_counts_per_address_and_per_user_in_bounded_memory() -> None:
    clock = Clock()
    limiter = LoginLimiter(
        per_user_address=3, per_address=5, per_user=8, window_s=60, max_entries=100, clock=clock
    )
    for i in range(5):  # five names from one address
        limiter.reserve_sign_in("10.0.0.1", f"user{i}")
    with pytest.raises(Limited) as limited:
        limiter.reserve_sign_in("10.0.0.1", "someone-else")
    assert limited.value.retry_after_s == 60
    limiter.reserve_sign_in("10.0.0.2", "user0")  # that user failed once only
    clock.now_s += 61
    limiter.reserve_sign_in("10.0.0.1", "someone-else")
    for i in range(10_000):  # a flood of made-up names and addresses
        limiter.reserve_sign_in(f"10.1.{i // 256}.{i % 256}", f"made-up-{i}")
    assert len(limiter) <= 100


def test_the_limiter_reserves_before_the_check_and_a_success_gives_back() -> None:
    limiter = LoginLimiter(per_user_address=3, per_address=20, per_user=100, clock=Clock())
    held = [limiter.reserve_sign_in("10.0.0.1", "alice") for _ in range(3)]  # in flight
    with pytest.raises(Limited):  # nothing has failed yet: the reservations count
        limiter.reserve_sign_in("10.0.0.1", "alice")
    limiter.signed_in(held[0])  # one of them was right: alice starts afresh there
    limiter.reserve_sign_in("10.0.0.1", "alice")


def test_one_address_cannot_lock_a_user_out_of_another_but_many_addresses_can() -> None:
    limiter = LoginLimiter(per_user_address=5, per_address=20, per_user=12, clock=Clock())
    for _ in range(5):
        limiter.reserve_sign_in("10.6.6.6", "alice")
    with pytest.raises(Limited):
        limiter.reserve_sign_in("10.6.6.6", "alice")
    limiter.reserve_sign_in("10.0.0.1", "alice")  # the real alice, elsewhere
    for host in range(2, 9):  # a botnet: the looser per-user limit stops it
        try:
            limiter.reserve_sign_in(f"10.7.7.{host}", "alice")
        except Limited:
            break
    else:
        pytest.fail("the per-user limit never applied")


def test_a_kiosk_key_signs_the_kiosk_in_once_and_leaves_the_address_bar(
    tmp_path: Path, users_file: Path
) -> None:
    users = Users.load(users_file)
    key = users.add_kiosk("lobby")
    users.save(users_file)
    client = _app(tmp_path, users_file, auth_modes=("kiosk-key",))
    assert client.get("/kiosk").status_code == 401
    assert client.get("/kiosk?key=wrong").status_code == 401
    entered = client.get(f"/kiosk?key={key}&camera=2")
    assert entered.status_code == 303
    assert entered.headers["location"] == "/kiosk?camera=2"
    assert "httponly" in entered.headers["set-cookie"].lower()
    assert client.get("/kiosk").status_code == 200
    assert client.post("/api/token", headers={"Origin": BASE}).json()["identity"] == "kiosk:lobby"
    # or the key as a header, for clients without cookies
    fresh = _app(tmp_path, users_file, auth_modes=("kiosk-key",))
    header = fresh.post("/api/token", headers={"Origin": BASE, "X-Edgesight-Key": key})
    assert header.json()["identity"] == "kiosk:lobby"


def test_a_proxy_header_is_believed_only_from_a_trusted_proxy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the test client's address is "testclient"; trust 127.0.0.1 only
    untrusted = _app(tmp_path, None, auth_modes=("proxy-header",), trusted_proxies=("127.0.0.1",))
    with caplog.at_level(logging.WARNING, logger="webapp.signin"):
        refused = untrusted.post(
            "/api/token", headers={"Origin": BASE, "X-Forwarded-User": "admin"}
        )
    assert refused.status_code == 401
    assert "not a trusted proxy" in caplog.text

    settings = WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "key.pem",
        auth_modes=("proxy-header",),
        trusted_proxies=("10.0.0.0/8",),
    )
    trusted = TestClient(create_app(settings), base_url=BASE, client=("10.1.2.3", 5000))
    ok = trusted.post("/api/token", headers={"Origin": BASE, "X-Forwarded-User": "carol"})
    assert ok.status_code == 200
    assert ok.json()["identity"] == "carol"
    assert trusted.get("/", headers={"X-Forwarded-User": "carol"}).status_code == 200


def test_sign_in_settings_are_checked_naming_the_key() -> None:
    with pytest.raises(SettingsError, match="EDGESIGHT_AUTH"):
        WebappSettings.from_env({"EDGESIGHT_AUTH": "password"})
    with pytest.raises(SettingsError, match="EDGESIGHT_AUTH"):
        WebappSettings.from_env({"EDGESIGHT_AUTH": "none,users"})
    with pytest.raises(SettingsError, match="EDGESIGHT_USERS_FILE"):
        WebappSettings.from_env({"EDGESIGHT_AUTH": "users"})
    with pytest.raises(SettingsError, match="EDGESIGHT_TRUSTED_PROXIES"):
        WebappSettings.from_env({"EDGESIGHT_AUTH": "proxy-header"})
    with pytest.raises(SettingsError, match="EDGESIGHT_TRUSTED_PROXIES"):
        WebappSettings.from_env(
            {"EDGESIGHT_AUTH": "proxy-header", "EDGESIGHT_TRUSTED_PROXIES": "10.0.0.300"}
        )
    both = WebappSettings.from_env(
        {"EDGESIGHT_AUTH": "users, kiosk-key", "EDGESIGHT_USERS_FILE": "/tmp/u.json"}
    )
    assert both.auth_modes == ("users", "kiosk-key")


def test_an_open_door_beyond_loopback_is_said_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="webapp.security"):
        _app(tmp_path, None, host="127.0.0.1")
        assert "sign-in is OFF" not in caplog.text
        _app(tmp_path, None, host="0.0.0.0")
    assert "WARNING: sign-in is OFF (EDGESIGHT_AUTH=none)" in caplog.text


def test_a_stray_key_parameter_is_no_kiosk_sign_in_where_kiosk_keys_are_off(
    tmp_path: Path, users_file: Path
) -> None:
    client = _app(tmp_path, users_file, auth_modes=("users",))
    page = client.get("/?key=whatever")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=")


# -- kiosk keys: out of logs, wrong ones limited (issue 17, item 6) -------------------------
def test_a_kiosk_key_never_reaches_the_access_log(
    tmp_path: Path, users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = Users.load(users_file)
    key = users.add_kiosk("lobby")
    users.save(users_file)
    settings = WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "key.pem",
        users_file=users_file,
        auth_modes=("kiosk-key",),
    )
    with (
        caplog.at_level(logging.INFO, logger="uvicorn.access"),
        ServerThread(create_app(settings)) as server,
    ):
        with httpx.Client(base_url=server.http_url, follow_redirects=True) as browser:
            entered = browser.get(f"/kiosk?camera=2&key={key}")
        wrong = httpx.get(f"{server.http_url}/kiosk?key=not-{key[:10]}")
    assert entered.status_code == 200  # followed the redirect to the clean URL, signed in
    assert entered.url.query == b"camera=2"
    assert wrong.status_code == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/kiosk?camera=2&key=[redacted]" in logged
    assert key not in logged
    assert key[:10] not in logged


def test_wrong_kiosk_keys_are_limited_per_address_with_sampled_log_lines(
    tmp_path: Path, users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = Users.load(users_file)
    key = users.add_kiosk("lobby")
    users.save(users_file)
    settings = WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "key.pem",
        users_file=users_file,
        auth_modes=("kiosk-key",),
    )
    app = create_app(settings)
    flood = TestClient(app, base_url=BASE, client=("10.6.6.6", 4000), follow_redirects=False)
    kiosk = TestClient(app, base_url=BASE, client=("10.0.0.7", 4000), follow_redirects=False)
    with caplog.at_level(logging.WARNING, logger="webapp.signin_routes"):
        statuses = [flood.get(f"/kiosk?key=guess{i}").status_code for i in range(500)]
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    refusals = [r for r in caplog.records if "kiosk key" in r.getMessage()]
    assert len(refusals) == 2  # the first, and the one that reached the limit
    assert kiosk.get(f"/kiosk?key={key}").status_code == 303  # another address: fine


def test_the_kiosk_source_and_head_requests_need_sign_in(tmp_path: Path, users_file: Path) -> None:
    source = tmp_path / "loop.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    client = _app(tmp_path, users_file, auth_modes=("users",), kiosk_source=source)
    assert client.get("/kiosk/source").status_code == 401
    assert client.head("/kiosk/source").status_code == 401
    assert client.head("/api/nodes").status_code == 401
    assert client.head("/").status_code == 303
    _sign_in(client, "alice", "correct horse battery")
    assert client.get("/kiosk/source").status_code == 200
    assert client.head("/api/nodes").status_code == 200


def test_hsts_is_sent_over_https_only(tmp_path: Path) -> None:
    https = _app(tmp_path, None)  # base_url https://edge.example
    assert https.get("/healthz").headers["strict-transport-security"] == "max-age=63072000"
    plain = TestClient(https.app, base_url="http://127.0.0.1:8000")
    assert "strict-transport-security" not in plain.get("/healthz").headers


def test_the_page_offers_sign_out_only_to_a_signed_in_person(
    tmp_path: Path, users_file: Path
) -> None:
    client = _app(tmp_path, users_file, auth_modes=("users",))
    _sign_in(client, "alice", "correct horse battery")
    page = client.get("/")
    assert 'action="/logout"' in page.text
    assert "Signed in as alice" in page.text
    assert 'action="/logout"' not in _app(tmp_path, None).get("/").text  # sign-in is off
    confirm = client.get("/logout")  # typed in: a button, and still signed in
    assert confirm.status_code == 200
    assert 'method="post" action="/logout"' in confirm.text
    assert client.get("/").status_code == 200
    client.post("/logout")
    assert client.get("/").status_code == 303
