"""The web app's sign-in wiring, from the settings: the token signer (its key file), the
live sessions (Redis when EDGESIGHT_REDIS_URL is set) and the door that checks who comes
in; and the warning, said once, when the door is open to everyone off loopback."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gpu_backend.loopback import LOOPBACK_HOSTS

from .forwarded import parse_networks
from .sessions import MemorySessions, RedisSessions, SessionStore
from .settings import WebappSettings
from .signin import AuthMode, Door, SessionCodec
from .tokens import TokenSigner
from .users import Users

__all__ = ["Security"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Security:
    signer: TokenSigner
    sessions: SessionStore  # opened and closed by the app's lifespan
    door: Door

    @classmethod
    def from_settings(
        cls, settings: WebappSettings, session_store: SessionStore | None = None
    ) -> Security:
        """``session_store``: the live sessions; default from the settings."""
        signer = TokenSigner.from_file(
            settings.token_key_path, settings.cluster_name, settings.token_lifetime_s
        )
        sessions = session_store if session_store is not None else _session_store(settings)
        door = _door(settings, signer, sessions)
        _warn_if_open(settings)
        return cls(signer, sessions, door)


def _session_store(settings: WebappSettings) -> SessionStore:
    if settings.redis_url:
        return RedisSessions.from_url(settings.redis_url)
    return MemorySessions()


def _door(settings: WebappSettings, signer: TokenSigner, store: SessionStore) -> Door:
    users = Users.load(settings.users_file) if settings.users_file is not None else Users()
    modes = [AuthMode(mode) for mode in settings.auth_modes]
    if AuthMode.USERS in modes and not users.users:
        log.warning(
            "EDGESIGHT_AUTH=users but %s lists no users: nobody can sign in; add one with "
            "`edgesight users add NAME`",
            settings.users_file,
        )
    return Door(
        modes,
        users,
        SessionCodec(signer.session_secret(), settings.session_lifetime_s),
        store,
        proxy_header=settings.proxy_user_header,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )


def _warn_if_open(settings: WebappSettings) -> None:
    """Said loudly, once: a page anyone on the network can open, with tokens for all."""
    if settings.is_signin_required or settings.host in LOOPBACK_HOSTS:
        return
    log.warning(
        "\n"
        "  ************************************************************************\n"
        "  WARNING: sign-in is OFF (EDGESIGHT_AUTH=none) and the web app listens on\n"
        "  %s: anyone who can reach it gets the page and stream tokens for every\n"
        "  node. Set EDGESIGHT_AUTH=users (with EDGESIGHT_USERS_FILE), kiosk-key or\n"
        "  proxy-header; see README, 'Sign-in and stream tokens'.\n"
        "  ************************************************************************",
        settings.host,
    )
