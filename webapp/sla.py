"""The registry's judge of the latency objective (issue 12, "SLAs that act").

Each heartbeat carries the node's node-time p95 over its recent window and the objective it
is held to (``EDGESIGHT_SLA_P95_MS`` on the node). A node whose heartbeats report a breach
for ``window_s`` on end is *degraded*: the listing says so and pages move to a node that
holds its objective. It recovers once its heartbeats report the objective held for
``window_s`` on end. A node with no frame in its window reports 0 (nothing to judge), which
counts as holding: an idle node cannot prove it is fast, and one that is still slow is
degraded again one window after pages come back.

Sans-I/O: ``observe`` and ``is_degraded`` take no clock of their own (injectable). The state
lives in this web app process; with several instances behind one Redis each judges the
heartbeats it receives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SlaJudge"]

log = logging.getLogger(__name__)

MAX_TRACKED_NODES = 10_000


@dataclass
class _Verdict:
    breaching_since_s: float | None = None
    holding_since_s: float | None = None
    is_degraded: bool = False
    seen_s: float = 0.0


class SlaJudge:
    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._verdicts: dict[str, _Verdict] = {}

    def observe(self, node_id: str, recent_p95_ms: float, objective_ms: float) -> bool:
        """One heartbeat's figures; returns whether the node is degraded now.
        ``objective_ms`` 0 (a node that predates objectives) never breaches."""
        now_s = self._clock()
        verdict = self._verdicts.get(node_id)
        if verdict is None:
            self._prune(now_s)
            verdict = self._verdicts[node_id] = _Verdict()
        verdict.seen_s = now_s
        if 0 < objective_ms < recent_p95_ms:
            verdict.holding_since_s = None
            if verdict.breaching_since_s is None:
                verdict.breaching_since_s = now_s
            if not verdict.is_degraded and now_s - verdict.breaching_since_s >= self.window_s:
                verdict.is_degraded = True
                log.warning(
                    "node %s degraded: node time p95 %.1f ms above its objective %.1f ms "
                    "for %.0f s; pages move away",
                    node_id,
                    recent_p95_ms,
                    objective_ms,
                    now_s - verdict.breaching_since_s,
                )
        else:
            verdict.breaching_since_s = None
            if verdict.holding_since_s is None:
                verdict.holding_since_s = now_s
            if verdict.is_degraded and now_s - verdict.holding_since_s >= self.window_s:
                verdict.is_degraded = False
                log.info("node %s recovered: it held its latency objective again", node_id)
        return verdict.is_degraded

    def is_degraded(self, node_id: str) -> bool:
        verdict = self._verdicts.get(node_id)
        return verdict is not None and verdict.is_degraded

    def forget(self, node_id: str) -> None:
        self._verdicts.pop(node_id, None)

    def _prune(self, now_s: float) -> None:
        """Bound the memory: nodes unheard of for 100 windows go first."""
        if len(self._verdicts) < MAX_TRACKED_NODES:
            return
        horizon_s = now_s - 100 * self.window_s
        for node_id in [n for n, v in self._verdicts.items() if v.seen_s < horizon_s]:
            del self._verdicts[node_id]
        while len(self._verdicts) >= MAX_TRACKED_NODES:
            oldest = min(self._verdicts, key=lambda n: self._verdicts[n].seen_s)
            del self._verdicts[oldest]
