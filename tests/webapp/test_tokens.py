"""Issuing stream tokens: the signing key file, /api/token and /api/token-key."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gpu_backend.tokens import TokenVerifier, load_public_key
from webapp.app import create_app
from webapp.settings import SettingsError, WebappSettings
from webapp.tokens import TokenKeyError, TokenSigner

BASE = "http://testserver"


def _settings(tmp_path: Path, **changes: object) -> WebappSettings:
    return WebappSettings(
        node_urls=("ws://127.0.0.1:9999/ws",),
        token_key_path=tmp_path / "state" / "token-key.pem",
        **changes,  # type: ignore[arg-type]
    )


def test_the_key_file_is_created_private_on_first_start_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "token-key.pem"
    first = TokenSigner.from_file(path, "edgesight", 300)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = TokenSigner.from_file(path, "edgesight", 300)
    assert again.public_key_pem() == first.public_key_pem()


def test_a_readable_key_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token-key.pem"
    TokenSigner.from_file(path, "edgesight", 300)
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="webapp.tokens"):
        TokenSigner.from_file(path, "edgesight", 300)
    assert "chmod 600" in caplog.text


def test_a_key_file_that_is_not_a_key_is_refused_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "token-key.pem"
    path.write_text("hello")
    with pytest.raises(TokenKeyError, match=r"EDGESIGHT_TOKEN_KEY: .* not an unencrypted PEM"):
        TokenSigner.from_file(path, "edgesight", 300)


def test_the_token_endpoint_issues_a_token_a_node_accepts(tmp_path: Path) -> None:
    client = TestClient(create_app(_settings(tmp_path, cluster_name="lab")), base_url=BASE)
    pem = client.get("/api/token-key")
    assert pem.status_code == 200
    assert pem.content.startswith(b"-----BEGIN PUBLIC KEY-----")
    response = client.post("/api/token", headers={"Origin": BASE})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["identity"] == "anonymous"
    assert body["audience"] == "lab"
    assert 300 <= body["expires_in_s"] <= 301  # exp is whole seconds, rounded up
    verifier = TokenVerifier(load_public_key(pem.content, "test"), ["lab"])
    grant = verifier.authenticate(body["token"], BASE)
    assert grant.identity == "anonymous"
    assert grant.expires_in_s is not None
    assert 290 < grant.expires_in_s <= 301


def test_tokens_are_issued_only_to_the_web_apps_own_pages(tmp_path: Path) -> None:
    client = TestClient(create_app(_settings(tmp_path)), base_url=BASE)
    refused = client.post("/api/token", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert "own pages" in refused.json()["error"]
    assert client.get("/api/token").status_code == 405  # a POST, never a cacheable GET


def test_the_page_config_names_the_token_url(tmp_path: Path) -> None:
    client = TestClient(create_app(_settings(tmp_path)))
    assert '"token_url": "/api/token"' in client.get("/").text


def test_token_lifetime_is_checked_naming_the_key() -> None:
    with pytest.raises(SettingsError, match="EDGESIGHT_TOKEN_LIFETIME_S"):
        WebappSettings.from_env({"EDGESIGHT_TOKEN_LIFETIME_S": "7200"})
    settings = WebappSettings.from_env(
        {"EDGESIGHT_TOKEN_LIFETIME_S": "60", "EDGESIGHT_TOKEN_KEY": "/tmp/k.pem"}
    )
    assert settings.token_lifetime_s == 60.0
    assert settings.token_key_path == Path("/tmp/k.pem")
