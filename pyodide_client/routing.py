"""Which inference node to use, and when to move: node choice and failover, sans-I/O.

The page's I/O driver tells a ``Router`` what it sees and asks it what to do; the router
never opens a socket nor reads a clock (every call takes ``now_ms``):

    update_candidates(nodes, now)   the registry's node list, or a static list of URLs
    probes_due(now) -> [url]        PING these now (marks them as sent, like a drain)
    record_rtt(url, rtt_ms, now)    a PONG came back
    record_connected(url, now)      a connection's HELLO arrived: this is the current node
    record_result(url, rt_ms, now)  a RESULT from the current node (round trip, server time)
    record_failure(url, now, kind)  a connection or probe failed (``Failure``), or was
                                    refused OVERLOADED
    record_local(frame_ms, now)     the in-browser engine's time for a frame (``local_ready``)
    decide(now) -> Stay | Connect | Switch | Fallback

A node's score is its expected time to a result: network RTT (median of recent pings)
+ queue wait (queue_depth * inference_ms, as the registry reports) + inference_ms + the
transfer time a frame needs beyond a ping on this client's link (learned from the current
node's results, so every node pays it alike). The current node's own observed round trips
replace its estimate. A node never measured has no score: it ranks last, by URL.

Rules: with no node, connect to the best usable one at once (a lost node is replaced with
no dwell); with none usable, ``Fallback`` (run locally) until a probe answers. Move off a
healthy node only when a candidate is better by both ``hysteresis_ratio`` and
``min_gain_ms``, for ``dwell_ms`` on end, and ``min_switch_interval_ms`` after the last move.
A failed node waits out an exponential backoff, randomly jittered per page and kept per
node and per kind of failure (issue 18: bad registry entries were probed 0.7 times a
second forever by every page), and must answer a probe before it is used again. A node
that does not answer (``Failure.UNREACHABLE``) is retried within 1.5 s for
``fast_retry_window_ms`` after its first failure (a restarted node is used again within
~2 s, issue 10), then ever more rarely, up to ``backoff_slow_max_ms``; while in that fast
window, a registry listing showing it heartbeated since it failed (``age_s``) gets it
probed at once. A node that answered with something the page cannot use
(``Failure.BROKEN``: garbage, a broken HELLO) or refused the page (``Failure.REFUSED``:
another model, a refused token or origin) will not change by itself: it starts at
``backoff_refused_initial_ms`` and grows to ``backoff_slow_max_ms``, and is probed at once
only when the registry lists it with another model (``model_sha256``: it was redeployed).
A node that refused as OVERLOADED is skipped for ``overload_cooldown_ms``.
A node the registry marks ``degraded`` (it missed its latency objective for a window,
issue 12) ranks after every other usable node; a page on it moves at once to one that is
not, without dwell, and never moves from a healthy node to a degraded one. With every node
degraded the page stays on the best of them unless the browser is faster: a node over a
30 ms objective is usually still faster than detection in the browser (75-125 ms a frame,
docs/benchmarks.md), but not always (a throttled GPU, a far node). The in-browser engine's
time per frame (the median of its recent frames, ``record_local``; never a guess: without
one the page stays on its node) must beat the best node's expected time by the same margins
as a switch (``hysteresis_ratio`` and ``min_gain_ms``) for ``dwell_ms``; then ``Fallback``
says why and the page leaves its node (a page without a node goes to the browser at once).
Degraded nodes are still probed; the page goes back as soon as one is no longer degraded,
or when the best one's expected time is lower than the browser's again, but no sooner
than ``min_switch_interval_ms`` after it went to the browser, so it cannot flap.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, fields

from .backoff import Backoff
from .node_info import HEARTBEAT_FRESH_S, NodeInfo

__all__ = [
    "Connect",
    "Decision",
    "Failure",
    "Fallback",
    "Router",
    "RoutingSettings",
    "Stay",
    "Switch",
]


@dataclass(frozen=True)
class RoutingSettings:
    hysteresis_ratio: float = 0.2  # a candidate must be 20 % faster than the current node
    min_gain_ms: float = 15.0  # ... and at least this much faster
    dwell_ms: float = 3000.0  # ... for this long on end
    min_switch_interval_ms: float = 10000.0  # between two voluntary switches
    overload_cooldown_ms: float = 10000.0  # skip a node that refused as OVERLOADED
    probe_interval_ms: float = 2000.0  # re-ping a measured node this often
    probe_timeout_ms: float = 2000.0  # a ping unanswered this long counts as a failure
    connect_timeout_ms: float = 5000.0  # a Connect/Switch with no HELLO by then has failed
    first_probe_wait_ms: float = 500.0  # at start, wait this long for pings before going blind
    rtt_window: int = 5  # samples in each median (pings, round trips, transfer)
    max_probes_in_flight: int = 4  # probe sockets open at once (the current node's not counted)
    # A restarted node must be used again within ~2 s of being ready (issue 10): with a
    # 30 s cap it took 14 s. Probing a dead port every 1.5 s costs a refused connection.
    backoff_initial_ms: float = 500.0
    backoff_max_ms: float = 1500.0
    backoff_jitter: float = 0.2
    # ... but only for so long: a node that fails for a minute on end is not restarting
    # (a registry entry nobody can reach), and is then tried ever more rarely (issue 18).
    fast_retry_window_ms: float = 60_000.0
    backoff_slow_max_ms: float = 300_000.0  # every kind of failure grows to this
    backoff_refused_initial_ms: float = 5000.0  # garbage, another model, a refusal

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                _fail(f.name, value, "a finite number >= 0")
        if not self.hysteresis_ratio < 1:
            _fail("hysteresis_ratio", self.hysteresis_ratio, "a ratio in [0, 1)")
        if not self.backoff_jitter < 1:
            _fail("backoff_jitter", self.backoff_jitter, "a ratio in [0, 1)")
        for name in ("probe_interval_ms", "probe_timeout_ms", "connect_timeout_ms"):
            if getattr(self, name) <= 0:
                _fail(name, getattr(self, name), "a time > 0 ms")
        for name in ("rtt_window", "max_probes_in_flight"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                _fail(name, value, "an integer >= 1")
        if not 0 < self.backoff_initial_ms <= self.backoff_max_ms:
            _fail("backoff_initial_ms", self.backoff_initial_ms, "0 < ms <= backoff_max_ms")
        if not self.backoff_max_ms <= self.backoff_slow_max_ms:
            _fail("backoff_slow_max_ms", self.backoff_slow_max_ms, "ms >= backoff_max_ms")
        if not 0 < self.backoff_refused_initial_ms <= self.backoff_slow_max_ms:
            _fail(
                "backoff_refused_initial_ms",
                self.backoff_refused_initial_ms,
                "0 < ms <= backoff_slow_max_ms",
            )


def _fail(name: str, value: object, expected: str) -> None:
    raise ValueError(f"RoutingSettings.{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class Stay:
    """Nothing new: keep the current node, the connection in progress or the fallback."""


@dataclass(frozen=True)
class Connect:
    """Open ``url``; any earlier node counts as gone (close its socket if still open).
    Keep running locally meanwhile if in fallback."""

    url: str
    reason: str


@dataclass(frozen=True)
class Switch:
    """Open ``to_url``; on its HELLO close ``from_url`` (make before break). Closing
    ``from_url`` is not a failure: do not report it."""

    from_url: str
    to_url: str
    reason: str


@dataclass(frozen=True)
class Fallback:
    """No node can be used now: run inference in the browser. Repeated while it holds."""

    reason: str


Decision = Stay | Connect | Switch | Fallback
STAY = Stay()


class Failure(enum.Enum):
    """Why a node failed the page; each kind has its own backoff per node."""

    UNREACHABLE = "unreachable"  # no socket, no answer in time, or closed before HELLO
    BROKEN = "broken"  # it sent something this page cannot use
    REFUSED = "refused"  # another model, a refused token or origin


@dataclass
class _Node:
    info: NodeInfo
    backoffs: dict[Failure, Backoff]
    rtts_ms: deque[float]
    round_trips_ms: deque[float]  # results while this is the current node
    is_listed: bool = True
    blocked_until_ms: float = -math.inf  # backoff or overload cool-down
    blocked_why: str = ""
    needs_probe: bool = False  # failed: must answer a ping before it is used again
    failed_ms: float = -math.inf  # when it last failed
    streak_ms: float = math.inf  # when its current run of failures began
    failed_kind: Failure | None = None  # its last failure's kind
    failed_model: str = ""  # the model_sha256 listed when it last failed
    probe_sent_ms: float | None = None  # an unanswered ping
    last_probe_ms: float | None = None


class Router:
    def __init__(self, settings: RoutingSettings | None = None) -> None:
        self.settings = settings or RoutingSettings()
        self._nodes: dict[str, _Node] = {}
        self._current: str | None = None
        self._pending: tuple[str, float] | None = None  # (url, since_ms) of a Connect/Switch
        self._last_switch_ms = -math.inf
        self._better_since_ms: float | None = None  # since when a candidate beats the margin
        self._transfer_ms: deque[float] = deque(maxlen=self.settings.rtt_window)
        self._inference_ms: deque[float] = deque(maxlen=4 * self.settings.rtt_window)
        self._queue_ms: deque[float] = deque(maxlen=4 * self.settings.rtt_window)
        self.pipeline_depth = 1  # frames the client keeps in flight on its node
        self._first_listed_ms: float | None = None
        self._lost: str | None = None  # why the last current node went away
        self._is_fallback = False
        # The in-browser engine (issue 12: "fallback only when that is faster"): the driver
        # says whether it can take frames, and how long its frames take.
        self.local_ready = False
        self._local_ms: deque[float] = deque(maxlen=self.settings.rtt_window)
        self._local_better_since_ms: float | None = None  # the browser beats every node
        self._prefers_local = False  # in the fallback by choice, not for want of a node

    # -- what the page shows ---------------------------------------------------------------
    @property
    def current(self) -> str | None:
        return self._current

    @property
    def pending(self) -> str | None:
        return self._pending[0] if self._pending else None

    @property
    def is_fallback(self) -> bool:
        return self._is_fallback

    @property
    def local_ms(self) -> float | None:
        """The in-browser engine's time per frame; None when it never ran."""
        return statistics.median(self._local_ms) if self._local_ms else None

    def label(self, url: str) -> str:
        """The registry's name for ``url``, else the URL."""
        node = self._nodes.get(url)
        return node.info.label if node is not None else url

    def is_heartbeating(self, url: str) -> bool:
        """Whether the registry lists ``url`` with a heartbeat in the last 10 s."""
        node = self._nodes.get(url)
        return node is not None and node.is_listed and node.info.age_s < HEARTBEAT_FRESH_S

    def expected_ms(self, url: str) -> float | None:
        """Expected ms from sending a frame to its result; None when never measured."""
        node = self._nodes.get(url)
        if node is None:
            return None
        if url == self._current and node.round_trips_ms:
            return statistics.median(node.round_trips_ms)
        if not node.rtts_ms:
            return None
        # A candidate's inference time: what the registry reports, else what this client
        # has seen on its node (the same model runs everywhere).
        seen_ms = statistics.median(self._inference_ms) if self._inference_ms else 0.0
        inference_ms = node.info.inference_ms or seen_ms
        wait_ms = node.info.queue_depth * inference_ms  # no batching assumed
        transfer_ms = statistics.median(self._transfer_ms) if self._transfer_ms else 0.0
        return (
            statistics.median(node.rtts_ms)
            + transfer_ms
            + inference_ms
            + wait_ms
            + self._own_queue_ms(seen_ms)
        )

    def _own_queue_ms(self, inference_ms: float) -> float:
        """The wait this client's own pipelined frames cause each other on any node.

        The current node's round trips carry it (a frame queues behind the client's
        previous one), so a candidate must be charged it too, or equal nodes never look
        equal and the client hops between them. Only up to ``pipeline_depth - 1``
        inference times of the queueing seen is the client's own: the rest is other
        clients' load on the current node, which a candidate does not share."""
        if not self._queue_ms:
            return 0.0
        seen_ms = statistics.median(self._queue_ms)
        return min(seen_ms, max(0, self.pipeline_depth - 1) * inference_ms)

    # -- what the driver reports -----------------------------------------------------------
    def update_candidates(self, nodes: Iterable[NodeInfo | str], now_ms: float) -> None:
        """Replace the candidate list. A node no longer listed is forgotten, except the
        current or pending one, which is kept (unlisted) until it is replaced."""
        listed: dict[str, NodeInfo] = {}
        for item in nodes:
            info = NodeInfo(item) if isinstance(item, str) else item
            listed[info.url] = info
        for url in [url for url in self._nodes if url not in listed]:
            if url in (self._current, self.pending):
                self._nodes[url].is_listed = False
            else:
                del self._nodes[url]
        for info in listed.values():
            node = self._node(info)
            node.is_listed = True
            if node.needs_probe and now_ms < node.blocked_until_ms and self._is_back(node, now_ms):
                node.blocked_until_ms = now_ms
        if listed and self._first_listed_ms is None:
            self._first_listed_ms = now_ms

    def record_rtt(self, url: str, rtt_ms: float, now_ms: float) -> None:
        if rtt_ms < 0:
            raise ValueError(f"rtt_ms for {url}: expected >= 0, got {rtt_ms!r}")
        node = self._nodes.get(url)
        if node is None:  # removed from the list while the ping was out
            return
        node.rtts_ms.append(rtt_ms)
        node.probe_sent_ms = None
        node.needs_probe = False
        # An answer proves it reachable, not that it will accept the page: a refusal's
        # backoff goes on growing until a connection gets results.
        self._recovered(node, (Failure.UNREACHABLE,))

    def _recovered(self, node: _Node, kinds: tuple[Failure, ...]) -> None:
        for kind in kinds:
            node.backoffs[kind].reset()
        if Failure.UNREACHABLE in kinds:
            unreachable = node.backoffs[Failure.UNREACHABLE]
            unreachable.initial_ms = self.settings.backoff_initial_ms
            unreachable.max_ms = self.settings.backoff_max_ms
            node.streak_ms = math.inf
        if node.failed_kind in kinds:
            node.failed_kind = None

    def _is_back(self, node: _Node, now_ms: float) -> bool:
        """Whether the registry shows a failed node has come back: a heartbeat since an
        UNREACHABLE failure early in its streak (a restart), or another model than the
        one it refused the page with (a redeploy)."""
        if node.failed_kind is Failure.UNREACHABLE:
            heartbeat_ms = now_ms - node.info.age_s * 1000.0
            is_early = now_ms - node.streak_ms < self.settings.fast_retry_window_ms
            return heartbeat_ms > node.failed_ms and is_early
        model = node.info.model_sha256
        return bool(model) and model != node.failed_model

    def record_connected(self, url: str, now_ms: float) -> None:
        node = self._nodes.get(url)
        if node is None:  # dropped from the list while connecting; decide() moves off it
            node = self._node(NodeInfo(url))
            node.is_listed = False
        if self._current is not None and self._current != url:
            self._nodes[self._current].round_trips_ms.clear()
        self._current, self._pending = url, None
        self._last_switch_ms = now_ms
        self._better_since_ms = self._local_better_since_ms = None
        self._lost, self._is_fallback, self._prefers_local = None, False, False
        node.needs_probe = False
        # A token or origin refusal comes after the HELLO: only results lift REFUSED.
        self._recovered(node, (Failure.UNREACHABLE, Failure.BROKEN))

    def record_result(
        self,
        url: str,
        round_trip_ms: float,
        now_ms: float,
        *,
        server_ms: float | None = None,
        inference_ms: float | None = None,
    ) -> None:
        """A RESULT from the current node. ``server_ms`` is what the node says it spent
        (queue + inference + post); with it, the rest beyond a ping is learned as transfer
        time that every candidate pays too, so comparisons stay like for like."""
        node = self._nodes.get(url)
        if node is None or url != self._current:
            return  # a late result from a node left behind
        if node.failed_kind is not None or node.backoffs[Failure.REFUSED].attempts:
            self._recovered(node, tuple(Failure))
        node.round_trips_ms.append(round_trip_ms)
        if inference_ms is not None:
            self._inference_ms.append(inference_ms)
            if server_ms is not None:
                self._queue_ms.append(max(0.0, server_ms - inference_ms))
        if server_ms is not None and node.rtts_ms:
            extra_ms = round_trip_ms - server_ms - statistics.median(node.rtts_ms)
            self._transfer_ms.append(max(0.0, extra_ms))

    def record_local(self, frame_ms: float, now_ms: float) -> None:
        """The in-browser engine took ``frame_ms`` for a frame (handed to it -> boxes back),
        or for a timed warm-up run before its first frame."""
        if not (math.isfinite(frame_ms) and frame_ms >= 0):
            raise ValueError(f"local frame_ms: expected a finite number >= 0, got {frame_ms!r}")
        self._local_ms.append(frame_ms)

    def reset_local(self) -> None:
        """The in-browser engine changed (another backend runs its frames): its old
        times say nothing about the new one."""
        self._local_ms.clear()
        self._local_better_since_ms = None

    def record_failure(
        self,
        url: str,
        now_ms: float,
        overloaded: bool = False,
        kind: Failure = Failure.UNREACHABLE,
    ) -> None:
        """A connection or probe to ``url`` failed (``kind`` says how), or the node
        refused as OVERLOADED."""
        node = self._nodes.get(url)
        if node is None:
            return
        if overloaded:
            node.blocked_until_ms = now_ms + self.settings.overload_cooldown_ms
            node.blocked_why = "is at capacity"
        else:
            node.streak_ms = min(node.streak_ms, now_ms)
            backoff = node.backoffs[kind]
            is_slow = backoff.max_ms == self.settings.backoff_slow_max_ms
            if (
                kind is Failure.UNREACHABLE
                and not is_slow
                and now_ms - node.streak_ms >= (self.settings.fast_retry_window_ms)
            ):
                # Not restarting: grow from the fast cap to minutes.
                backoff.initial_ms = self.settings.backoff_max_ms
                backoff.max_ms = self.settings.backoff_slow_max_ms
                backoff.reset()
            node.blocked_until_ms = now_ms + backoff.next_delay_ms()
            node.blocked_why = "failed" if kind is Failure.UNREACHABLE else f"is {kind.value}"
            node.needs_probe = True
            node.failed_ms = now_ms
            node.failed_kind = kind
            node.failed_model = node.info.model_sha256
            node.rtts_ms.clear()
        node.probe_sent_ms = None
        node.round_trips_ms.clear()
        was_used = url in (self._current, self.pending)
        if url == self.pending:
            self._pending = None
        if url == self._current:
            self._current = None
            self._better_since_ms = None
        if was_used and self._current is None:
            self._lost = f"{node.info.label} {node.blocked_why}"

    # -- what the driver asks --------------------------------------------------------------
    def probes_due(self, now_ms: float) -> list[str]:
        """URLs to PING now: the current node when due, then candidates never pinged (by
        URL), then the others due (unmeasured after a failure, or not pinged for
        ``probe_interval_ms``), longest unpinged first, so that all take turns. Never a node
        in backoff or cool-down, nor one with a ping still out; at most
        ``max_probes_in_flight`` candidate pings out at once (issue 8: a page given 5000
        nodes opened 5005 sockets at once). The returned URLs count as pinged at ``now_ms``."""
        self._expire(now_ms)
        due: list[tuple[float, str]] = []
        in_flight = 0
        for url, node in self._nodes.items():
            if node.probe_sent_ms is not None:
                if url != self._current:
                    in_flight += 1
                continue
            is_candidate = node.is_listed and not node.info.is_full
            if now_ms < node.blocked_until_ms or not (is_candidate or url == self._current):
                continue
            last_ms = -math.inf if node.last_probe_ms is None else node.last_probe_ms
            if not node.rtts_ms or now_ms - last_ms >= self.settings.probe_interval_ms:
                due.append((last_ms, url))
        due.sort()
        chosen = [url for _, url in due if url == self._current]
        room = max(0, self.settings.max_probes_in_flight - in_flight)
        chosen += [url for _, url in due if url != self._current][:room]
        for url in chosen:
            self._nodes[url].probe_sent_ms = self._nodes[url].last_probe_ms = now_ms
        return chosen

    def next_due_ms(self, now_ms: float) -> float:
        """The earliest time at which ``probes_due`` or ``decide`` may have something new
        to say without any new report: a ping or connection timing out, a backoff or
        cool-down ending, a node due for its next ping, the start-up wait, a dwell or the
        switch interval ending. ``math.inf`` when only a report can change anything. The
        page's driver calls them then, not on a fixed tick (issue 10)."""
        s = self.settings
        times: list[float] = []
        in_flight = sum(
            1
            for url, node in self._nodes.items()
            if node.probe_sent_ms is not None and url != self._current
        )
        for url, node in self._nodes.items():
            if node.probe_sent_ms is not None:
                times.append(node.probe_sent_ms + s.probe_timeout_ms)
                continue
            if not ((node.is_listed and not node.info.is_full) or url == self._current):
                continue
            if now_ms < node.blocked_until_ms:
                times.append(node.blocked_until_ms)
            elif node.rtts_ms and node.last_probe_ms is not None:
                times.append(node.last_probe_ms + s.probe_interval_ms)
            elif url == self._current or in_flight < s.max_probes_in_flight:
                times.append(now_ms)  # due now; a full probe budget waits for an answer
        if self._pending is not None:
            times.append(self._pending[1] + s.connect_timeout_ms)
        waits: list[float] = []  # these matter only while still ahead
        is_starting = self._pending is None and self._current is None and self._lost is None
        if is_starting and self._first_listed_ms is not None:
            waits.append(self._first_listed_ms + s.first_probe_wait_ms)
        if self._local_better_since_ms is not None:
            waits.append(self._local_better_since_ms + s.dwell_ms)
        if self._prefers_local:
            waits.append(self._last_switch_ms + s.min_switch_interval_ms)
        if self._better_since_ms is not None:
            waits.append(
                max(
                    self._better_since_ms + s.dwell_ms,
                    self._last_switch_ms + s.min_switch_interval_ms,
                )
            )
        times += [t for t in waits if t > now_ms]
        return min(times, default=math.inf)

    def decide(self, now_ms: float) -> Decision:
        self._expire(now_ms)
        if self._pending is not None:
            return STAY
        if self._current is None:
            return self._connect_or_fallback(now_ms)
        return self._maybe_switch(self._current, now_ms)

    # -- the rules -------------------------------------------------------------------------
    def _connect_or_fallback(self, now_ms: float) -> Decision:
        ranked = self._ranked(now_ms)
        if not ranked:
            self._is_fallback = True
            return Fallback(self._fallback_reason(now_ms))
        best = ranked[0]
        best_ms = self.expected_ms(best)
        if self._nodes[best].info.degraded:  # every usable node misses its objective
            local = self._stay_local(best, best_ms, now_ms)
            if local is not None:
                return local
        started = self._first_listed_ms if self._first_listed_ms is not None else now_ms
        # Not "and not fallback": a tick before the first node list arrives falls back,
        # and the first connect must still wait for the first pings.
        is_starting = self._lost is None
        if best_ms is None and is_starting and now_ms - started < self.settings.first_probe_wait_ms:
            return STAY  # give the first pings a moment before connecting blind
        measured = "not measured yet" if best_ms is None else f"{best_ms:.0f} ms expected"
        what = f"{self._nodes[best].info.label} ({measured})"
        if self._prefers_local:
            why = "a node holds" if not self._nodes[best].info.degraded else "the browser is slower"
            reason = f"leaving the in-browser fallback ({why}) for {what}"
            self._prefers_local = False
        elif self._is_fallback:
            reason = f"leaving the in-browser fallback for {what}"
        elif self._lost is not None:
            reason = f"{self._lost}; connecting to {what}"
        else:
            reason = f"connecting to {what}"
        self._pending = (best, now_ms)
        return Connect(best, reason)

    def _maybe_switch(self, current: str, now_ms: float) -> Decision:
        s = self.settings
        ranked = self._ranked(now_ms, exclude=current)
        label = self._nodes[current].info.label
        if not self._nodes[current].is_listed:
            if not ranked:
                return STAY
            return self._switch(current, ranked[0], f"{label} left the node list", now_ms)
        is_degraded = self._nodes[current].info.degraded
        if ranked and self._nodes[ranked[0]].info.degraded > is_degraded:
            ranked = []  # never trade a node that holds its objective for one that misses it
        if is_degraded and ranked and not self._nodes[ranked[0]].info.degraded:
            to = self._nodes[ranked[0]].info.label
            reason = f"{label} misses its latency objective; moving to {to}"
            return self._switch(current, ranked[0], reason, now_ms)
        if is_degraded:  # and so is every other usable node
            local = self._leave_for_local(current, ranked, now_ms)
            if local is not None:
                return local
        current_ms = self.expected_ms(current)
        best = ranked[0] if ranked else current  # unmeasured candidates never win a switch
        best_ms = self.expected_ms(best)
        if (
            current_ms is None
            or best_ms is None
            or not (
                best_ms < current_ms * (1 - s.hysteresis_ratio)
                and best_ms < current_ms - s.min_gain_ms
            )
        ):
            self._better_since_ms = None
            return STAY
        if self._better_since_ms is None:
            self._better_since_ms = now_ms
        is_settled = now_ms - self._better_since_ms >= s.dwell_ms
        if not is_settled or now_ms - self._last_switch_ms < s.min_switch_interval_ms:
            return STAY
        best_label = self._nodes[best].info.label
        reason = f"{best_label} ({best_ms:.0f} ms) beats {label} ({current_ms:.0f} ms)"
        return self._switch(current, best, reason, now_ms)

    def _local_beats(self, node_ms: float) -> bool:
        """The in-browser engine is faster than ``node_ms`` by a switch's margins."""
        local_ms, s = self.local_ms, self.settings
        return (
            self.local_ready
            and local_ms is not None
            and local_ms < node_ms * (1 - s.hysteresis_ratio)
            and local_ms < node_ms - s.min_gain_ms
        )

    def _leave_for_local(self, current: str, ranked: list[str], now_ms: float) -> Fallback | None:
        """On a degraded node with every other one degraded too: ``Fallback`` once the
        browser has beaten the best of them by the margins for ``dwell_ms``."""
        measured = [
            (ms, url) for url in [current, *ranked[:1]] if (ms := self.expected_ms(url)) is not None
        ]
        if not measured or not self._local_beats(min(measured)[0]):
            self._local_better_since_ms = None
            return None
        if self._local_better_since_ms is None:
            self._local_better_since_ms = now_ms
        if now_ms - self._local_better_since_ms < self.settings.dwell_ms:
            return None
        node_ms, url = min(measured)
        self._nodes[current].round_trips_ms.clear()
        self._current, self._last_switch_ms = None, now_ms
        self._better_since_ms = self._local_better_since_ms = None
        self._prefers_local = self._is_fallback = True
        return Fallback(self._local_reason(url, node_ms))

    def _stay_local(self, best: str, best_ms: float | None, now_ms: float) -> Fallback | None:
        """With no current node and every usable one degraded: ``Fallback`` while the
        browser is faster than the best (by the margins to go there; at all, and for
        ``min_switch_interval_ms`` after going, to stay there), else None (connect)."""
        local_ms = self.local_ms
        if not self.local_ready or local_ms is None:
            return None
        if not self._prefers_local:
            if best_ms is None or not self._local_beats(best_ms):
                return None
            self._prefers_local, self._last_switch_ms = True, now_ms
        is_settled = now_ms - self._last_switch_ms >= self.settings.min_switch_interval_ms
        if is_settled and best_ms is not None and best_ms < local_ms:
            return None
        self._is_fallback = True
        return Fallback(self._local_reason(best, best_ms))

    def _local_reason(self, best: str, best_ms: float | None) -> str:
        label = self._nodes[best].info.label
        node = f"{label}, {best_ms:.0f} ms" if best_ms is not None else f"{label}, not measured"
        local_ms = self.local_ms or 0.0
        return (
            f"every node misses its latency objective and this browser is faster "
            f"({local_ms:.0f} ms a frame; best node {node}); running in the browser"
        )

    def _switch(self, current: str, to: str, reason: str, now_ms: float) -> Switch:
        self._pending = (to, now_ms)
        self._better_since_ms = None
        return Switch(current, to, reason)

    def _ranked(self, now_ms: float, exclude: str | None = None) -> list[str]:
        """Usable nodes, best first: measured by (expected ms, URL), then unmeasured by URL;
        nodes the registry marks degraded after all the others, in the same order."""
        keyed: list[tuple[bool, bool, float, str]] = []  # (degraded, unmeasured, ms, URL)
        for url, node in self._nodes.items():
            if url == exclude or not node.is_listed or node.info.is_full:
                continue
            if now_ms < node.blocked_until_ms or node.needs_probe:
                continue
            expected = self.expected_ms(url)
            keyed.append((node.info.degraded, expected is None, expected or 0.0, url))
        return [url for *_, url in sorted(keyed)]

    def _fallback_reason(self, now_ms: float) -> str:
        listed = [n for n in self._nodes.values() if n.is_listed]
        if not listed:
            why = "no inference node is listed"
        elif all(n.info.is_full or n.blocked_why == "is at capacity" for n in listed):
            why = "every node is at capacity"
        else:
            retry_ms = min(max(0.0, n.blocked_until_ms - now_ms) for n in listed)
            why = "no node answers" + (
                f" (next try in {retry_ms / 1000:.1f} s)" if retry_ms else ""
            )
        prefix = f"{self._lost}; " if self._lost else ""
        return f"{prefix}{why}; running in the browser"

    def _expire(self, now_ms: float) -> None:
        """Turn unanswered pings and connections into failures."""
        for url, node in list(self._nodes.items()):
            sent = node.probe_sent_ms
            if sent is not None and now_ms - sent >= self.settings.probe_timeout_ms:
                self.record_failure(url, now_ms)
        if self._pending and now_ms - self._pending[1] >= self.settings.connect_timeout_ms:
            self.record_failure(self._pending[0], now_ms)

    def _node(self, info: NodeInfo) -> _Node:
        node = self._nodes.get(info.url)
        if node is not None:
            node.info = info
            return node
        s = self.settings
        # seed None: truly random per page, so pages do not retry a node in lockstep
        node = _Node(
            info=info,
            backoffs={
                Failure.UNREACHABLE: Backoff(
                    initial_ms=s.backoff_initial_ms,
                    max_ms=s.backoff_max_ms,
                    jitter=s.backoff_jitter,
                ),
                **{
                    kind: Backoff(
                        initial_ms=s.backoff_refused_initial_ms,
                        max_ms=s.backoff_slow_max_ms,
                        jitter=s.backoff_jitter,
                    )
                    for kind in (Failure.BROKEN, Failure.REFUSED)
                },
            },
            rtts_ms=deque(maxlen=s.rtt_window),
            round_trips_ms=deque(maxlen=s.rtt_window),
        )
        self._nodes[info.url] = node
        return node
