"""Signed stream tokens, the web app's side: the signing key and issuing.

The web app holds an Ed25519 private key: read from ``EDGESIGHT_TOKEN_KEY`` (a PEM file),
created there with mode 0600 on first start when the file does not exist, or, without a
path, generated in memory for this process (tests; nodes must then be given the key
afresh after every restart). Nodes verify with the public key alone (``GET
/api/token-key``); the claim schema lives with the verifier in ``gpu_backend/tokens.py``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gpu_backend.tokens import ALGORITHM, ISSUER, MAX_LIFETIME_S

from . import WebappError

__all__ = ["IssuedToken", "TokenKeyError", "TokenSigner"]

log = logging.getLogger(__name__)


class TokenKeyError(WebappError):
    """A signing key file that cannot be read, created, or used."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    identity: str
    audience: str
    expires_in_s: float

    def as_json(self) -> dict[str, str | float]:
        return {
            "token": self.token,
            "identity": self.identity,
            "audience": self.audience,
            "expires_in_s": self.expires_in_s,
        }


def _create_key_file(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: two web apps starting at once must not overwrite each other's key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    except OSError as exc:
        raise TokenKeyError(
            f"EDGESIGHT_TOKEN_KEY: cannot create the token signing key {path}: {exc.strerror}"
        ) from exc
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    log.info("created the token signing key %s (mode 0600)", path)
    return key


def _read_key_file(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise TokenKeyError(
            f"EDGESIGHT_TOKEN_KEY: cannot read the token signing key {path}: {exc.strerror}"
        ) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the token signing key %s can be read by other users (mode %o): "
            "anyone who reads it can mint stream tokens; chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TokenKeyError(
            f"EDGESIGHT_TOKEN_KEY: {path} is not an unencrypted PEM private key"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise TokenKeyError(
            f"EDGESIGHT_TOKEN_KEY: {path} holds a {type(key).__name__}; expected an Ed25519 key"
        )
    return key


class TokenSigner:
    """Issues tokens for one audience (the cluster name) with one private key."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        audience: str,
        lifetime_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= lifetime_s <= MAX_LIFETIME_S:
            raise ValueError(f"token lifetime must be 1..{MAX_LIFETIME_S:.0f} s, got {lifetime_s}")
        self._key = private_key
        self.audience = audience
        self.lifetime_s = lifetime_s
        self._clock = clock

    @classmethod
    def from_file(
        cls,
        path: Path | None,
        audience: str,
        lifetime_s: float,
        clock: Callable[[], float] = time.time,
    ) -> TokenSigner:
        """The key at ``path`` (created when missing), or an in-memory key for None."""
        if path is None:
            key = Ed25519PrivateKey.generate()
        elif path.exists():
            key = _read_key_file(path)
        else:
            key = _create_key_file(path)
        return cls(key, audience, lifetime_s, clock)

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _derived(self, purpose: bytes) -> bytes:
        raw = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return hashlib.sha256(purpose + b"\0" + raw).digest()

    def session_secret(self) -> bytes:
        """A key for signing session cookies, derived from the private key so that
        sessions live as long as the key file does and need no second secret."""
        return self._derived(b"edgesight session cookie v1")

    def enrolment_key(self) -> bytes:
        """The key node credentials are made with (``node_identity.py``): derived like
        the session secret, for another purpose, so neither reveals the other."""
        return self._derived(b"edgesight node credential v1")

    def issue(
        self,
        identity: str,
        origin: str | None,
        *,
        audience: str | None = None,
        lifetime_s: float | None = None,
    ) -> IssuedToken:
        """A token for ``identity`` used from pages of ``origin`` (None: not bound to an
        origin, for tools)."""
        now_s = self._clock()
        life_s = lifetime_s if lifetime_s is not None else self.lifetime_s
        # Whole seconds on the wire (RFC 7519 NumericDate); exp rounded up, so a token
        # lives at least its lifetime (a 2 s token must not be a 1.01 s one).
        exp_s = math.ceil(now_s + life_s)
        aud = audience or self.audience
        claims: dict[str, str | int] = {
            "iss": ISSUER,
            "sub": identity,
            "aud": aud,
            "iat": math.floor(now_s),
            "nbf": math.floor(now_s),
            "exp": exp_s,
            "jti": secrets.token_urlsafe(12),
        }
        if origin:
            claims["origin"] = origin
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return IssuedToken(token, identity, aud, round(exp_s - now_s, 3))
