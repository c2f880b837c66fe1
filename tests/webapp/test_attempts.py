"""Guessing, as an attacker would (issue 17, item 4): parallel guesses against a real
server get only the limit checked, and one address's guesses do not lock the real user
out of another address."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from edgesight.serving import ServerThread
from webapp.app import create_app
from webapp.settings import WebappSettings
from webapp.users import Users

PASSWORD = "correct horse battery"
GUESSES = 60
# Slower than the other tests' KDF on purpose: each check takes long enough that parallel
# guesses overlap, as they would against the real default cost.
SLOW_N = 2**14


def _settings(tmp_path: Path, n: int) -> WebappSettings:
    users_file = tmp_path / "users.json"
    users = Users()
    users.set_password("alice", PASSWORD, n=n)
    users.save(users_file)
    return WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "key.pem",
        users_file=users_file,
        auth_modes=("users",),
    )


def test_parallel_guesses_get_only_the_limit_checked(tmp_path: Path) -> None:
    with ServerThread(create_app(_settings(tmp_path, SLOW_N))) as server:
        start = threading.Barrier(GUESSES)

        def guess(i: int) -> int:
            with httpx.Client(base_url=server.http_url, timeout=60) as client:
                start.wait()
                form = {"user": "alice", "password": f"guess {i}"}
                return client.post("/login", data=form).status_code

        with ThreadPoolExecutor(max_workers=GUESSES) as pool:
            statuses = list(pool.map(guess, range(GUESSES)))
    # 401: the password was checked (and wrong); 429: refused before any check
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == GUESSES - 5


def test_wrong_guesses_from_one_address_do_not_stop_the_user_at_another(
    tmp_path: Path,
) -> None:
    app = create_app(_settings(tmp_path, 2**10))
    attacker = TestClient(app, base_url="https://edge.example", client=("10.6.6.6", 4000))
    user = TestClient(app, base_url="https://edge.example", client=("10.0.0.1", 4000))
    statuses = [
        attacker.post("/login", data={"user": "alice", "password": f"guess {i}"}).status_code
        for i in range(20)
    ]
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}
    signed_in = user.post(
        "/login", data={"user": "alice", "password": PASSWORD}, follow_redirects=False
    )
    assert signed_in.status_code == 303
    assert user.get("/", follow_redirects=False).status_code == 200
    # and the attacker's address stays limited, even with the right password
    assert attacker.post("/login", data={"user": "alice", "password": PASSWORD}).status_code == (
        429
    )


@pytest.mark.parametrize("count", [1, 2])
def test_a_right_password_clears_the_users_own_failures_there(tmp_path: Path, count: int) -> None:
    app = create_app(_settings(tmp_path, 2**10))
    client = TestClient(app, base_url="https://edge.example", client=("10.0.0.1", 4000))
    for _ in range(4):
        assert client.post("/login", data={"user": "alice", "password": "nope"}).status_code == (
            401
        )
    for _ in range(count):
        ok = client.post(
            "/login", data={"user": "alice", "password": PASSWORD}, follow_redirects=False
        )
        assert ok.status_code == 303
    # the typo-prone user gets a fresh allowance after signing in
    for _ in range(5):
        assert client.post("/login", data={"user": "alice", "password": "nope"}).status_code == (
            401
        )


def test_a_guessing_flood_costs_a_bounded_number_of_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(_settings(tmp_path, 2**10))
    attacker = TestClient(app, base_url="https://edge.example", client=("10.6.6.6", 4000))
    with caplog.at_level(logging.WARNING, logger="webapp.signin_routes"):
        statuses = [
            attacker.post("/login", data={"user": "alice", "password": f"g{i}"}).status_code
            for i in range(200)
        ]
    assert statuses.count(401) == 5
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6, lines  # five wrong passwords, and the limit reached
    assert "limit per user and address reached" in lines[-1]
