"""A node as a page knows it, sans-I/O: one entry of the registry's list
(``GET /api/nodes``) or a configured URL, parsed and checked (``NodeInfo``), and the
entries of a list the page can use, each other one with the reason it was skipped
(``usable_nodes``). ``routing.Router`` ranks what this module lets through."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .node_url import node_url_problem

__all__ = ["HEARTBEAT_FRESH_S", "MAX_CANDIDATES", "NodeInfo", "usable_nodes"]


def _as_bool(value: object) -> bool:
    if not isinstance(value, bool):  # bool("false") is True: only JSON true/false will do
        raise TypeError(f"expected true or false, got {value!r}")
    return value


_CONVERT: dict[str, Callable[[Any], object]] = {
    "str": str,
    "int": int,
    "int | None": int,
    "float": float,
    "bool": _as_bool,
}


@dataclass(frozen=True)
class NodeInfo:
    """One candidate as the registry lists it; a static list knows only ``url``."""

    url: str
    name: str = ""  # shown in reasons; the URL when empty
    queue_depth: int = 0  # frames waiting in the node's batcher
    inference_ms: float = 0.0  # its last inference
    streams: int = 0  # open inference connections
    max_streams: int = 0  # 0: unknown, never counted as full
    site: str = ""
    age_s: float = math.inf  # since its last heartbeat, as the registry saw it; inf: unknown
    degraded: bool = False  # misses its latency objective (issue 12): used only as a last resort
    # the registry's id of a registered node: its stream tokens are for it (issue 17);
    # "" for a configured (static) URL, which has no id of its own
    id: str = ""
    model_sha256: str = ""  # what it announced; "" unknown (a static URL)
    # WebTransport on the url's host (issue 16); 0: none; None: the list does not know (a
    # configured URL: its WELCOME says)
    wt_port: int | None = None
    wt_cert_sha256: str = ""  # the hash a page pins for it; "": CA-signed

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("NodeInfo.url: expected a ws:// or wss:// URL, got ''")
        for name in ("queue_depth", "inference_ms", "streams", "max_streams"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"NodeInfo.{name}: expected >= 0, got {getattr(self, name)!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> NodeInfo:
        """A node as ``GET /api/nodes`` lists it; keys it does not know are ignored."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            # null: the registry does not know (a static node's load): keep the default
            if data.get(f.name) is not None:
                convert: Callable[[Any], object] = _CONVERT[str(f.type)]
                try:
                    values[f.name] = convert(data[f.name])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"NodeInfo.{f.name}: expected {f.type}, got {data[f.name]!r}"
                    ) from None
        if data.get("static") is True:
            values.pop("id", None)  # "static:<url>": a label, not a node's identity
        return cls(**values)

    @property
    def label(self) -> str:
        return self.name or self.url

    @property
    def is_full(self) -> bool:
        return 0 < self.max_streams <= self.streams


HEARTBEAT_FRESH_S = 10.0  # a node listed with a heartbeat this recent is running
MAX_CANDIDATES = 64  # listed nodes a page keeps; the registry lists its best 16 first


def usable_nodes(
    listing: Iterable[object], limit: int = MAX_CANDIDATES
) -> tuple[list[NodeInfo], list[str]]:
    """The entries of a node list (``GET /api/nodes``' ``nodes``, or configured URLs) the
    page can use, at most ``limit`` of them in the listed order, and for each other one why
    it was skipped. One bad entry (a URL the browser would refuse, a field of the wrong
    type) never costs the good ones; a list far longer than any registry sends (an old or
    misconfigured one) costs one warning, not thousands of probes."""
    usable: list[NodeInfo] = []
    problems: list[str] = []
    ignored = 0
    for item in listing:
        if len(usable) >= limit:
            ignored += 1
            continue
        data: Mapping[str, object] = {"url": item} if isinstance(item, str) else {}
        if isinstance(item, Mapping):
            # null: the registry does not know (a static node's load): keep the default
            data = {key: value for key, value in item.items() if value is not None}
        url = data.get("url")
        problem = node_url_problem(url, allow_template=True)
        if problem is None:
            try:
                usable.append(NodeInfo.from_mapping(data))
                continue
            except ValueError as exc:
                problem = str(exc)
        shown = repr(url) if isinstance(url, str) else f"an entry ({type(item).__name__})"
        problems.append(f"node {shown[:90]} skipped: {problem}")
    if ignored:
        problems.append(f"{ignored} listed nodes ignored: a page keeps at most {limit}")
    return usable, problems
