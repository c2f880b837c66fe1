"""The page's node list, sans-I/O: the configured nodes and the registry's, as this page
may use them (issue 19: one job, out of the page core).

The web app hands the page ``node_urls`` once and its registry's list (``GET /api/nodes``)
whenever the page fetches it. ``NodeIntake`` keeps the nodes this page's origin may open
(an https page cannot open ``ws://``, page_origin.py), why each other one is not used, and
each registered node's id (its own stream token, issue 17), and says which candidates the
router (routing.py) should weigh: every registered node, and the configured ones besides.
An entry that cannot be used is logged once, not at every poll.
"""

from __future__ import annotations

import json
import logging

from .node_info import NodeInfo, usable_nodes
from .page_origin import PageOrigin

__all__ = ["MAX_WARNINGS", "NodeIntake"]

log = logging.getLogger(__name__)

MAX_WARNINGS = 1000  # distinct skipped entries remembered (each is logged once)


class NodeIntake:
    def __init__(self, origin: PageOrigin, node_urls: tuple[str, ...]) -> None:
        self._origin = origin
        self._warned: set[str] = set()
        static, problems = usable_nodes(list(node_urls))
        static, self._static_refusals = self._reachable(static)
        self.static_urls: list[str] = [info.url for info in static]
        self.registry: list[NodeInfo] = []
        self._registry_refusals: list[str] = []  # why listed nodes cannot be used here
        self.node_ids: dict[str, str] = {}  # URL -> registry id, for its own token
        self._warn(problems)

    def take_listing(self, nodes_json: str) -> list[NodeInfo]:
        """The registry's list (its JSON text, ``{"nodes": [...]}`` or a bare list): the
        registered nodes this page may use. ValueError for a list that is not one."""
        entries = json.loads(nodes_json)
        nodes = entries.get("nodes", entries) if isinstance(entries, dict) else entries
        if not isinstance(nodes, list):
            raise ValueError(f"expected a list of nodes, got {type(nodes).__name__}")
        registry, problems = usable_nodes(nodes)
        self.registry, self._registry_refusals = self._reachable(registry)
        self.node_ids = {info.url: info.id for info in self.registry if info.id}
        self._warn(problems)
        return self.registry

    def candidates(self) -> list[NodeInfo | str]:
        """What the router weighs: the registered nodes, then configured ones not listed."""
        listed = {info.url for info in self.registry}
        return [*self.registry, *(url for url in self.static_urls if url not in listed)]

    def security_problem(self) -> str:
        """What the page's origin keeps it from doing, in words; '' when nothing does."""
        insecure = self._origin.insecure_context_problem()
        refusals = list(dict.fromkeys([*self._static_refusals, *self._registry_refusals]))
        shown = refusals[:3]  # a few say it all; a list of a thousand would not
        if len(refusals) > len(shown):
            shown.append(f"({len(refusals) - len(shown)} more ws:// nodes not used.)")
        return " ".join([*([insecure] if insecure else []), *shown])

    def _reachable(self, nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[str]]:
        """The nodes this page's origin may open, and why each other one is not used."""
        usable: list[NodeInfo] = []
        refusals: list[str] = []
        for info in nodes:
            problem = self._origin.node_url_problem(info.url)
            if problem is None:
                usable.append(info)
            else:
                refusals.append(problem)
        return usable, refusals

    def _warn(self, problems: list[str]) -> None:
        for problem in problems:
            if problem not in self._warned and len(self._warned) < MAX_WARNINGS:
                self._warned.add(problem)
                log.warning("%s", problem)
