"""Stream tokens scoped to one node each (issue 17), handed out with the page's token.

A token whose audience is the cluster is good on every node: a node that collects the
tokens pages send it could replay them on any other. So ``POST /api/token`` also answers
``"node_tokens": {node id: token}``, one token per registered node the page may stream
to, each with ``aud`` = that node's id (an enrolled node accepts nothing else). The page
asks for the ids in its node list (``?nodes=id1,id2``; at most ``max_nodes``, the
registry's list cap), so it holds the next node's token *before* its node fails: a
failover costs no token round trip. Without ``?nodes=`` the answer covers the nodes the
registry lists by default. Only ids the registry lists now get a token; others are left
out, silently (the page asks again when its list changes).

The cluster-wide ``token`` in the same answer remains for static nodes (configured URLs,
which have no registered id) and for tools; the page presents it to no registered node.
"""

from __future__ import annotations

import logging

from .registry import NodeRegistry
from .registry_store import NODE_ID_PATTERN, StoreUnavailable
from .tokens import TokenSigner

__all__ = ["NodeTokens", "wanted_node_ids"]

log = logging.getLogger(__name__)

SEPARATOR = ","  # not in a node id's alphabet


def wanted_node_ids(query: str | None, max_nodes: int) -> list[str] | None:
    """The node ids a page asks tokens for (``?nodes=``), distinct, well-formed, at most
    ``max_nodes`` of them (the rest ignored: a page lists no more); None when it names
    none (then: the registry's default listing)."""
    if query is None:
        return None
    wanted: list[str] = []
    for node_id in query.split(SEPARATOR):
        if len(wanted) == max_nodes:
            break
        if NODE_ID_PATTERN.fullmatch(node_id) and node_id not in wanted:
            wanted.append(node_id)
    return wanted


class NodeTokens:
    """Signs one token per registered node a page asks for."""

    def __init__(
        self, registry: NodeRegistry, signer: TokenSigner, revoked: frozenset[str] = frozenset()
    ) -> None:
        self.registry = registry
        self.signer = signer
        self.revoked = revoked  # EDGESIGHT_REVOKED_NODES: listed until they expire, no tokens

    @property
    def max_nodes(self) -> int:
        return self.registry.list_max

    async def issue(self, identity: str, origin: str | None, query: str | None) -> dict[str, str]:
        """``{node id: token}`` for the registered nodes of ``query`` (``?nodes=``); empty
        when the registry cannot be read (the page keeps the tokens it holds and asks
        again at its next refresh)."""
        wanted = wanted_node_ids(query, self.max_nodes)
        if wanted == []:
            return {}  # a page that lists no registered node: no registry read
        try:
            if wanted is None:
                listing = await self.registry.listing()
                ids = [str(node["id"]) for node in listing if not node["static"]]
            else:
                registered = await self.registry.store.live_ids(wanted)
                ids = [node_id for node_id in wanted if node_id in registered]
        except StoreUnavailable:
            log.warning("no per-node tokens issued: the registry store is unavailable")
            return {}
        return {
            node_id: self.signer.issue(identity, origin, audience=node_id).token
            for node_id in ids[: self.max_nodes]
            # a "node" token for the cluster is none
            if node_id != self.signer.audience and node_id not in self.revoked
        }
