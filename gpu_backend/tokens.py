"""Signed stream tokens, the node's side: the claim schema and offline verification.

The web app signs tokens with its Ed25519 private key (``webapp/tokens.py``) and publishes
the public key (``GET /api/token-key``). A node verifies with the public key only, so a
compromised node cannot mint tokens for others. A token is a JWT (RFC 7519) signed with
EdDSA; its claims:

    iss     "edgesight" (ISSUER)
    sub     the identity: a user name, a kiosk name, a proxy user, or "anonymous" where
            the web app requires no sign-in. Nodes cap streams per identity.
    aud     the node id or the cluster name (a node accepts both)
    iat nbf exp   seconds since the epoch; a lifetime of at most MAX_LIFETIME_S
    origin  the page origin the token was issued for (scheme://host[:port]); a node refuses
            the token on a connection whose Origin differs. Absent: not bound to an origin
            (tokens minted for tools with ``edgesight token``).
    jti     a random id, for logs

``TokenVerifier`` implements ``access.Authenticator``: ``authenticate(token, origin)``
returns a ``Grant(identity, expires_in_s)`` or raises ``AccessDenied`` whose message says
precisely what was wrong (expired, wrong audience, another origin, bad signature) and never
contains the token. ``node_authenticator`` picks a node's policy from its settings.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pyodide_client.protocol import ErrorCode

from . import NodeError
from .access import AccessDenied, AnonymousAccess, Authenticator, Grant

__all__ = [
    "ALGORITHM",
    "ISSUER",
    "LEEWAY_S",
    "MAX_LIFETIME_S",
    "MAX_TOKEN_CHARS",
    "TOKEN_KEY_PATH",
    "TokenKeyError",
    "TokenVerifier",
    "fetch_public_key",
    "load_public_key",
]

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"  # Ed25519: small keys and signatures, no parameter choices to get wrong
ISSUER = "edgesight"
LEEWAY_S = 5.0  # clock difference tolerated between the web app and a node
MAX_LIFETIME_S = 3600.0  # a token claiming to live longer is refused, whoever signed it
MAX_TOKEN_CHARS = 4096  # a real token is about 400 characters
TOKEN_KEY_PATH = "/api/token-key"  # where the web app publishes its public key (PEM)
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf")


class TokenKeyError(NodeError):
    """A public key that cannot be read or fetched; the message says where it came from."""


def load_public_key(pem: bytes, source: str) -> Ed25519PublicKey:
    """The Ed25519 public key in ``pem``; ``source`` (a path, a URL) names it in errors."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise TokenKeyError(f"{source}: expected a PEM public key, could not read it") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise TokenKeyError(f"{source}: expected an Ed25519 public key, got {type(key).__name__}")
    return key


def read_public_key(path: Path) -> Ed25519PublicKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise TokenKeyError(f"cannot read the token public key {path}: {exc.strerror}") from exc
    return load_public_key(pem, str(path))


def fetch_public_key(
    registry_url: str, verify: ssl.SSLContext | bool = True, timeout_s: float = 5.0
) -> Ed25519PublicKey:
    """The web app's public key from ``{registry_url}/api/token-key``; ``verify``: how an
    https registry is checked (heartbeat.registry_ssl_context: the --ca-file)."""
    url = registry_url.rstrip("/") + TOKEN_KEY_PATH
    try:
        response = httpx.get(url, verify=verify, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise TokenKeyError(f"cannot fetch the token public key from {url}: {exc}") from exc
    if response.status_code != 200:
        raise TokenKeyError(
            f"cannot fetch the token public key from {url}: expected 200, "
            f"got {response.status_code}"
        )
    return load_public_key(response.content, url)


def _deny(message: str, code: ErrorCode = ErrorCode.AUTH_FAILED) -> AccessDenied:
    return AccessDenied(code, message)


class TokenVerifier:
    """Accepts tokens signed by the web app's key for one of ``audiences``.

    ``allow_anonymous``: a client without a token (an empty one) is let in as
    "anonymous" rather than refused; a token that is presented is still checked.
    ``clock`` returns seconds since the epoch (tests pass a fake one)."""

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        audiences: Iterable[str],
        *,
        allow_anonymous: bool = False,
        clock: Callable[[], float] = time.time,
        leeway_s: float = LEEWAY_S,
    ) -> None:
        self._key = public_key
        self.audiences = tuple(a for a in dict.fromkeys(audiences) if a)
        if not self.audiences:
            raise ValueError("TokenVerifier needs at least one audience (node id, cluster)")
        self.allow_anonymous = allow_anonymous
        self._clock = clock
        self._leeway_s = leeway_s

    def authenticate(self, token: str, origin: str | None) -> Grant:
        if not token:
            if self.allow_anonymous:
                return Grant.anonymous()
            raise _deny(
                "this node requires a stream token: fetch one from the web app "
                "(POST /api/token) and send it in AUTH",
                ErrorCode.AUTH_REQUIRED,
            )
        claims = self._decode(token)
        now_s = self._clock()
        self._check_times(claims, now_s)
        self._check_audience(claims)
        self._check_origin(claims, origin)
        return Grant(identity=str(claims["sub"]), expires_in_s=float(claims["exp"]) - now_s)

    def _decode(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS:
            raise _deny(f"token is {len(token)} characters long; at most {MAX_TOKEN_CHARS}")
        try:
            # Times, audience and issuer are checked below, against our clock and with
            # messages that say which claim failed; the signature is checked here, with
            # the algorithm pinned (no "none", no HMAC keyed with the public key).
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "require": list(REQUIRED_CLAIMS),
                },
            )
        except jwt.InvalidSignatureError:
            raise _deny(
                "token signature does not verify with the web app's public key "
                "(forged, or signed by another web app)"
            ) from None
        except jwt.InvalidAlgorithmError:
            raise _deny(f"token is not signed with {ALGORITHM}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _deny(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise _deny("token is not a signed stream token (malformed)") from None
        if claims.get("iss") != ISSUER:
            raise _deny(f"token issuer is not {ISSUER!r}")
        for name in ("exp", "iat", "nbf"):
            if not isinstance(claims[name], int | float) or isinstance(claims[name], bool):
                raise _deny(f"token claim {name!r} is not a number")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise _deny("token claim 'sub' (identity) is not a non-empty string")
        return claims

    def _check_times(self, claims: dict[str, Any], now_s: float) -> None:
        exp, nbf, iat = float(claims["exp"]), float(claims["nbf"]), float(claims["iat"])
        if now_s >= exp + self._leeway_s:
            raise _deny(f"token expired {now_s - exp:.0f} s ago; fetch a new one from the web app")
        if now_s + self._leeway_s < nbf:
            raise _deny(
                f"token is not valid for another {nbf - now_s:.0f} s "
                "(are the web app's and this node's clocks set right?)"
            )
        if iat > now_s + self._leeway_s:  # a token from the future would outlive its lifetime
            raise _deny(
                f"token is issued {iat - now_s:.0f} s in the future "
                "(are the web app's and this node's clocks set right?)"
            )
        if exp - iat > MAX_LIFETIME_S:
            raise _deny(
                f"token lives {exp - iat:.0f} s; this node accepts at most {MAX_LIFETIME_S:.0f} s"
            )

    def _check_audience(self, claims: dict[str, Any]) -> None:
        aud = claims["aud"]
        given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in self.audiences for a in given if isinstance(a, str)):
            accepted = " or ".join(repr(a) for a in self.audiences)
            raise _deny(f"token is for audience {aud!r}; this node accepts {accepted}")

    def _check_origin(self, claims: dict[str, Any], origin: str | None) -> None:
        bound = claims.get("origin")
        if bound in (None, ""):
            return  # a tool's token, not bound to a page
        if not isinstance(bound, str):
            raise _deny("token claim 'origin' is not a string")
        if origin is None:
            raise _deny(f"token was issued for pages of {bound}; the connection sent no Origin")
        if origin.rstrip("/").lower() != bound.rstrip("/").lower():
            raise _deny(
                f"token was issued for pages of {bound}; this connection comes from {origin}"
            )


def node_authenticator(
    public_key: Ed25519PublicKey | None,
    audiences: Iterable[str],
    *,
    allow_anonymous: bool,
) -> Authenticator:
    """A node's policy: tokens checked when the web app's key is known; anonymous clients
    let in only when ``allow_anonymous``. Without a key, anonymous access is the only
    possible policy: the caller must have allowed it (settings refuse it otherwise)."""
    if public_key is None:
        if not allow_anonymous:
            raise TokenKeyError(
                "this node requires stream tokens but has no public key to check them: set "
                "EDGESIGHT_TOKEN_PUBLIC_KEY or EDGESIGHT_REGISTRY_URL, or allow anonymous "
                "use (--allow-anonymous)"
            )
        return AnonymousAccess()
    return TokenVerifier(public_key, audiences, allow_anonymous=allow_anonymous)
