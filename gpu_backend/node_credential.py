"""A node's credential as the node sees it (issue 17): where its id is, nothing more.

The web app issues and checks credentials (``webapp/node_identity.py``); a node only
carries its own (``EDGESIGHT_NODE_CREDENTIAL``), sends it as the bearer of its heartbeats,
and takes its node id from it, so the id it registers is always the one it was enrolled
as. Format: ``esn1.<node id>.<MAC>``; a node id may contain ``.``, the base64url MAC
never does, so the id is everything up to the last ``.``.
"""

from __future__ import annotations

__all__ = ["CREDENTIAL_PREFIX", "credential_node_id"]

CREDENTIAL_PREFIX = "esn1."
MAX_CREDENTIAL_CHARS = 256  # "esn1." + a 128-character id + "." + a 43-character MAC


def credential_node_id(credential: str) -> str | None:
    """The node id ``credential`` names, or None when it is not shaped like one (the MAC
    is checked by the web app, not here)."""
    if len(credential) > MAX_CREDENTIAL_CHARS or not credential.startswith(CREDENTIAL_PREFIX):
        return None
    node_id, dot, mac = credential[len(CREDENTIAL_PREFIX) :].rpartition(".")
    if not dot or not node_id or not mac:
        return None
    return node_id
