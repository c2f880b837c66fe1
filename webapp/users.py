"""The users file: people who may sign in (passwords hashed with scrypt) and kiosks that
may open the page with their access key (stored as a SHA-256 of a random key).

    {"users": {"alice": "scrypt$32768$8$1$<salt>$<hash>"},
     "kiosks": {"lobby": "sha256$<hex>"}}

Written by ``edgesight users add NAME`` / ``edgesight users kiosk NAME`` with mode 0600;
read once when the web app starts.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import WebappError

__all__ = [
    "NAME_PATTERN",
    "Users",
    "UsersFileError",
    "hash_password",
    "verify_password",
]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# scrypt at N=2**15, r=8: 32 MiB and about 0.1 s per check on one core (OWASP's minimum
# is N=2**17 with r=8 p=1 at 128 MiB; this machine class is an edge box, so we go lower but
# the parameters travel in each hash, and a stronger one can be set per user).
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_CHARS = 8
KIOSK_KEY_BYTES = 24


class UsersFileError(WebappError):
    """A users file that cannot be read or written, or a bad name or password."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES,
        maxmem=256 * r * n + 1024 * 1024,
    )  # fmt: skip


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for any malformed hash."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _kiosk_digest(key: str) -> str:
    return "sha256$" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UsersFileError(
            f"expected a name of 1-64 letters, digits and ._@- (starting with a letter or "
            f"digit), got {name!r}"
        )
    return name


@dataclass
class Users:
    users: dict[str, str] = field(default_factory=dict)  # name -> password hash
    kiosks: dict[str, str] = field(default_factory=dict)  # name -> sha256$hex of the key

    @classmethod
    def load(cls, path: Path) -> Users:
        """The file at ``path``; a missing file is an empty list of users."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise UsersFileError(f"cannot read the users file {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
            users = {str(k): str(v) for k, v in dict(data.get("users", {})).items()}
            kiosks = {str(k): str(v) for k, v in dict(data.get("kiosks", {})).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise UsersFileError(
                f'{path}: expected {{"users": {{name: hash}}, "kiosks": {{name: hash}}}}'
            ) from exc
        return cls(users, kiosks)

    def save(self, path: Path) -> None:
        """Atomically, with mode 0600 (the hashes are still worth guarding)."""
        body = json.dumps({"users": self.users, "kiosks": self.kiosks}, indent=2) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise UsersFileError(f"cannot write the users file {path}: {exc.strerror}") from exc

    def set_password(self, name: str, password: str, n: int = SCRYPT_N) -> None:
        check_name(name)
        if len(password) < MIN_PASSWORD_CHARS:
            raise UsersFileError(
                f"expected a password of at least {MIN_PASSWORD_CHARS} characters, "
                f"got {len(password)}"
            )
        self.users[name] = hash_password(password, n=n)

    def add_kiosk(self, name: str) -> str:
        """A new random access key for kiosk ``name`` (replacing any old one); only its
        digest is kept, so the key is shown once."""
        check_name(name)
        key = secrets.token_urlsafe(KIOSK_KEY_BYTES)
        self.kiosks[name] = _kiosk_digest(key)
        return key

    def check_password(self, name: str, password: str) -> bool:
        stored = self.users.get(name)
        if stored is None:
            # Spend the same time for an unknown user, so timing does not list users.
            verify_password(password, _dummy_hash())
            return False
        return verify_password(password, stored)

    def kiosk_for_key(self, key: str) -> str | None:
        digest = _kiosk_digest(key)
        found = None
        for name, stored in self.kiosks.items():
            if hmac.compare_digest(digest, stored):
                found = name
        return found


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a password")
