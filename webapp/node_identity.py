"""Node identities (issue 17): a credential per node, so that no node can speak for another.

With one shared registry secret, any node holding it could rewrite another node's entry
(same id, its own URL) and collect the tokens pages send there. Instead each node is
*enrolled* once (``edgesight enrol NODE_ID`` on the web app's machine) and given a
credential of its own::

    esn1.<node id>.<MAC>      MAC = base64url(HMAC-SHA256(enrolment key, "esn1\\0" + node id))

The enrolment key is derived from the web app's token signing key (``TokenSigner``), so
the web app keeps no list of nodes, needs no second secret, and several web app instances
that share the key file (as they must, for the nodes to check tokens) accept the same
credentials. A node presents its credential as ``Authorization: Bearer`` on each heartbeat
and on its DELETE; the registry accepts an entry only for the id its credential names.
A node knows its credential, never the key: it cannot make one for another id.

``EDGESIGHT_REVOKED_NODES`` revokes single credentials (by node id; the registry routes
refuse them); replacing the token key (``EDGESIGHT_TOKEN_KEY``) revokes all at once. The
credential is a bearer secret: it travels only over https (or loopback http), and lives in
the node's environment (``EDGESIGHT_NODE_CREDENTIAL``), not on its command line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from gpu_backend.node_credential import CREDENTIAL_PREFIX, credential_node_id

from . import WebappError
from .registry_store import NODE_ID_PATTERN

__all__ = ["CredentialError", "NodeCredentials"]

_MAC_CONTEXT = b"esn1\0"


class CredentialError(WebappError):
    """A bearer that is no valid node credential; the message never repeats it."""


class NodeCredentials:
    """Issues and checks node credentials with one enrolment key (32 bytes)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError(f"an enrolment key of at least 32 bytes, got {len(key)}")
        self._key = key

    def _mac(self, node_id: str) -> str:
        digest = hmac.new(self._key, _MAC_CONTEXT + node_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, node_id: str) -> str:
        """The credential for ``node_id``; ``ValueError`` for an id the registry refuses."""
        if not NODE_ID_PATTERN.fullmatch(node_id):
            raise ValueError(
                "a node id of 1..128 characters of A-Z a-z 0-9 . _ : @ -, starting with a "
                f"letter or digit, got {node_id!r:.60}"
            )
        return f"{CREDENTIAL_PREFIX}{node_id}.{self._mac(node_id)}"

    @staticmethod
    def looks_like_one(bearer: str) -> bool:
        return bearer.startswith(CREDENTIAL_PREFIX)

    def node_id(self, credential: str) -> str:
        """The node id ``credential`` was issued for; ``CredentialError`` when it was not
        issued with this key (forged, altered, or from before a key change)."""
        node_id = credential_node_id(credential)
        if node_id is None or not NODE_ID_PATTERN.fullmatch(node_id):
            raise CredentialError("not a node credential (expected esn1.<node id>.<mac>)")
        mac = credential.rpartition(".")[2]
        if not hmac.compare_digest(mac.encode(), self._mac(node_id).encode()):
            raise CredentialError(
                f"the credential for node {node_id} was not issued by this web app's key "
                "(forged, or enrolled before the token key changed)"
            )
        return node_id
