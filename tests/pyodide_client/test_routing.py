"""Node choice and failover, driven by a fake clock: every time is a number passed in."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import pytest

import pyodide_client.node_info as node_info
import pyodide_client.routing as routing
from pyodide_client.node_info import NodeInfo
from pyodide_client.routing import (
    Connect,
    Failure,
    Fallback,
    Router,
    RoutingSettings,
    Stay,
    Switch,
)

A, B, C = "ws://a:8001/infer", "ws://b:8001/infer", "ws://c:8001/infer"

# No jitter, so backoff delays are exact; no start-up wait unless a test asks for one.
SETTINGS = RoutingSettings(backoff_jitter=0.0, first_probe_wait_ms=0.0)


def make_router(nodes: list[NodeInfo | str], now_ms: float = 0.0, **overrides: Any) -> Router:
    router = Router(replace(SETTINGS, **overrides))
    router.update_candidates(nodes, now_ms)
    return router


def answer_pings(router: Router, rtts_ms: dict[str, float], now_ms: float) -> list[str]:
    """The driver's probe round: ping what is due, and each listed node answers at once."""
    due = router.probes_due(now_ms)
    for url in due:
        if url in rtts_ms:
            router.record_rtt(url, rtts_ms[url], now_ms)
    return due


def connect_to(router: Router, url: str, now_ms: float) -> None:
    decision = router.decide(now_ms)
    assert isinstance(decision, Connect)
    assert decision.url == url
    router.record_connected(url, now_ms)


def test_all_names_exported_exist() -> None:
    for name in routing.__all__:
        assert hasattr(routing, name), name


# -- choosing ---------------------------------------------------------------------------------
def test_picks_the_lowest_expected_time() -> None:
    router = make_router([A, B, C])
    answer_pings(router, {A: 30.0, B: 10.0, C: 20.0}, 0.0)

    decision = router.decide(1.0)

    assert decision == Connect(B, "connecting to ws://b:8001/infer (10 ms expected)")
    assert router.pending == B
    assert router.current is None


def test_queue_and_inference_outweigh_a_lower_rtt() -> None:
    busy = NodeInfo(A, name="near-busy", queue_depth=4, inference_ms=20.0)
    idle = NodeInfo(B, name="far-idle", queue_depth=0, inference_ms=20.0)
    router = make_router([busy, idle])
    answer_pings(router, {A: 5.0, B: 40.0}, 0.0)

    assert router.expected_ms(A) == 5.0 + 4 * 20.0 + 20.0
    assert router.expected_ms(B) == 40.0 + 20.0
    decision = router.decide(1.0)
    assert isinstance(decision, Connect)
    assert decision.url == B
    assert "far-idle (60 ms expected)" in decision.reason


def test_a_static_list_scores_by_rtt_alone() -> None:
    router = make_router([B, A])
    answer_pings(router, {A: 12.0, B: 8.0}, 0.0)

    assert router.expected_ms(A) == 12.0
    assert router.expected_ms(B) == 8.0


def test_rtt_is_the_median_of_the_window() -> None:
    router = make_router([A], rtt_window=3)
    for i, rtt in enumerate([10.0, 500.0, 12.0, 14.0]):
        router.record_rtt(A, rtt, float(i))

    assert router.expected_ms(A) == 14.0  # window holds 500, 12, 14


def test_ties_are_broken_by_url() -> None:
    router = make_router([C, B, A])
    answer_pings(router, {A: 20.0, B: 20.0, C: 20.0}, 0.0)

    decision = router.decide(1.0)
    assert isinstance(decision, Connect)
    assert decision.url == A


def test_an_unmeasured_node_ranks_last_but_is_still_tried() -> None:
    router = make_router([A, B])
    router.record_rtt(B, 300.0, 0.0)

    first = router.decide(1.0)
    assert isinstance(first, Connect)
    assert first.url == B  # slow, but measured
    router.record_failure(B, 2.0)

    second = router.decide(3.0)
    assert isinstance(second, Connect)
    assert second.url == A
    assert "not measured yet" in second.reason
    assert router.expected_ms(A) is None


def test_at_start_it_waits_briefly_for_pings_before_connecting_blind() -> None:
    router = make_router([A, B], now_ms=100.0, first_probe_wait_ms=500.0)

    assert router.decide(400.0) == Stay()
    decision = router.decide(600.0)
    assert isinstance(decision, Connect)
    assert decision.url == A


def test_a_measured_node_ends_the_start_up_wait() -> None:
    router = make_router([A, B], first_probe_wait_ms=500.0)
    router.record_rtt(B, 25.0, 10.0)

    decision = router.decide(20.0)
    assert isinstance(decision, Connect)
    assert decision.url == B


def test_a_connection_in_progress_means_stay_until_it_times_out() -> None:
    router = make_router([A, B], connect_timeout_ms=5000.0)
    answer_pings(router, {A: 10.0, B: 20.0}, 0.0)
    assert isinstance(router.decide(0.0), Connect)

    assert router.decide(4999.0) == Stay()
    decision = router.decide(5000.0)  # no HELLO from A: it counts as failed

    assert isinstance(decision, Connect)
    assert decision.url == B
    assert decision.reason.startswith("ws://a:8001/infer failed; connecting to")


def test_a_full_node_is_skipped_unless_it_is_the_current_one() -> None:
    full = NodeInfo(A, queue_depth=0, inference_ms=5.0, streams=8, max_streams=8)
    router = make_router([full, NodeInfo(B, inference_ms=5.0)])
    answer_pings(router, {B: 50.0}, 0.0)

    assert A not in router.probes_due(10_000.0)
    decision = router.decide(10_000.0)
    assert isinstance(decision, Connect)
    assert decision.url == B


# -- staying and switching ------------------------------------------------------------------
def _connected_pair(a_ms: float, b_ms: float, now_ms: float = 0.0, **overrides: Any) -> Router:
    """Connected to A; both nodes measured by ping at ``now_ms``."""
    router = make_router([A, B], now_ms, **overrides)
    answer_pings(router, {A: a_ms, B: b_ms}, now_ms)
    router.record_connected(A, now_ms)  # whichever ranks first
    return router


def _steady(
    router: Router, rtts_ms: dict[str, float], start_ms: float, end_ms: float
) -> list[Stay | Connect | Switch | Fallback]:
    """Every 250 ms: answer due pings with ``rtts_ms`` and ask for a decision."""
    decisions = []
    now = start_ms
    while now <= end_ms:
        answer_pings(router, rtts_ms, now)
        decisions.append(router.decide(now))
        now += 250.0
    return decisions


def test_no_switch_while_the_gain_is_within_the_ratio_margin() -> None:
    router = _connected_pair(50.0, 42.0)  # 16 % better: inside the 20 % margin

    decisions = _steady(router, {A: 50.0, B: 42.0}, 0.0, 60_000.0)

    assert set(decisions) == {Stay()}
    assert router.current == A


def test_no_switch_while_the_gain_is_under_min_gain_ms() -> None:
    router = _connected_pair(20.0, 8.0)  # 60 % better, but only 12 ms

    decisions = _steady(router, {A: 20.0, B: 8.0}, 0.0, 60_000.0)

    assert set(decisions) == {Stay()}


def test_switch_after_sustained_degradation_beyond_margin_and_dwell() -> None:
    router = _connected_pair(20.0, 30.0, dwell_ms=3000.0, min_switch_interval_ms=10_000.0)
    t0 = 20_000.0
    _steady(router, {A: 20.0, B: 30.0}, 0.0, t0 - 250.0)

    # A degrades: its round trips climb to 120 ms while B stays at 30 ms.
    for i in range(5):
        router.record_result(A, 120.0, t0 + i)
    assert router.expected_ms(A) == 120.0
    assert router.decide(t0) == Stay()  # dwell starts
    assert router.decide(t0 + 2999.0) == Stay()
    decision = router.decide(t0 + 3000.0)

    assert decision == Switch(A, B, "ws://b:8001/infer (30 ms) beats ws://a:8001/infer (120 ms)")
    assert router.decide(t0 + 3001.0) == Stay()  # while B's connection opens
    router.record_connected(B, t0 + 3100.0)
    assert router.current == B
    assert router.expected_ms(A) == 20.0  # its round trips are forgotten; pings remain


def test_a_dip_shorter_than_the_dwell_does_not_switch() -> None:
    router = _connected_pair(20.0, 30.0, dwell_ms=3000.0, min_switch_interval_ms=0.0)
    for i in range(5):
        router.record_result(A, 120.0, 1000.0 + i)
    assert router.decide(1000.0) == Stay()
    for i in range(5):  # A recovers before the dwell ends
        router.record_result(A, 22.0, 2000.0 + i)
    assert router.decide(2000.0) == Stay()
    for i in range(5):
        router.record_result(A, 120.0, 3500.0 + i)

    assert router.decide(3500.0) == Stay()  # the dwell starts again
    assert router.decide(6499.0) == Stay()
    assert isinstance(router.decide(6500.0), Switch)


def test_no_switch_within_min_switch_interval_of_the_last_move() -> None:
    router = _connected_pair(20.0, 30.0, dwell_ms=0.0, min_switch_interval_ms=10_000.0)
    for i in range(5):
        router.record_result(A, 120.0, 100.0 + i)

    assert router.decide(9_999.0) == Stay()
    assert isinstance(router.decide(10_000.0), Switch)


def _oscillate(router: Router, half_period_ms: float, end_ms: float) -> list[float]:
    """A and B trade places (30 ms vs 60 ms) every ``half_period_ms``; returns switch times."""
    switched_at = []
    now = 0.0
    while now <= end_ms:
        is_a_slow = (now // half_period_ms) % 2 == 0
        answer_pings(router, {A: 60.0, B: 30.0} if is_a_slow else {A: 30.0, B: 60.0}, now)
        decision = router.decide(now)
        if isinstance(decision, Switch):
            switched_at.append(now)
            router.record_connected(decision.to_url, now + 50.0)
        now += 250.0
    return switched_at


def test_no_flapping_when_two_nodes_oscillate_faster_than_the_dwell() -> None:
    # Each ping is the score (window of 1), so the 50 % swings cross the margin every time.
    router = _connected_pair(40.0, 40.0, rtt_window=1, probe_interval_ms=250.0, dwell_ms=3000.0)

    assert _oscillate(router, half_period_ms=2000.0, end_ms=60_000.0) == []
    eager = _connected_pair(40.0, 40.0, rtt_window=1, dwell_ms=0.0, min_switch_interval_ms=0.0)
    assert len(_oscillate(eager, half_period_ms=2000.0, end_ms=60_000.0)) > 20  # the control


def test_slow_oscillation_switches_at_most_once_per_min_switch_interval() -> None:
    router = _connected_pair(
        40.0,
        40.0,
        rtt_window=1,
        probe_interval_ms=250.0,
        dwell_ms=1000.0,
        min_switch_interval_ms=10_000.0,
    )

    switched_at = _oscillate(router, half_period_ms=4000.0, end_ms=60_000.0)

    assert switched_at  # real, lasting changes are followed...
    gaps = [b - a for a, b in itertools.pairwise(switched_at)]
    assert all(gap >= 10_000.0 for gap in gaps)  # ...but never faster than the interval


def test_a_failed_switch_keeps_the_current_node() -> None:
    router = _connected_pair(20.0, 30.0, dwell_ms=0.0, min_switch_interval_ms=0.0)
    for i in range(5):
        router.record_result(A, 120.0, 100.0 + i)
    assert isinstance(router.decide(200.0), Switch)

    router.record_failure(B, 300.0)

    assert router.current == A
    assert router.pending is None
    assert router.decide(400.0) == Stay()  # B waits out its backoff and a fresh ping


def test_a_late_result_from_another_node_is_ignored() -> None:
    router = _connected_pair(20.0, 30.0)

    router.record_result(B, 900.0, 10.0)

    assert router.expected_ms(B) == 30.0


def test_transfer_time_learned_from_results_is_added_to_every_node() -> None:
    router = _connected_pair(20.0, 30.0)
    # 20 ms ping + 25 ms on the node + 15 ms moving the frame = 60 ms round trips
    router.record_result(A, 60.0, 10.0, server_ms=25.0)

    assert router.expected_ms(A) == 60.0
    assert router.expected_ms(B) == 30.0 + 15.0


def test_a_candidate_is_charged_the_inference_time_seen_on_the_current_node() -> None:
    router = _connected_pair(20.0, 20.0)
    # same model everywhere: B (static, no inference_ms listed) will also take 40 ms
    router.record_result(A, 60.0, 10.0, server_ms=40.0, inference_ms=40.0)

    assert router.expected_ms(A) == 60.0
    assert router.expected_ms(B) == 20.0 + 0.0 + 40.0


def test_a_listed_inference_time_beats_the_one_seen() -> None:
    router = make_router([NodeInfo(A), NodeInfo(B, inference_ms=10.0)])
    answer_pings(router, {A: 20.0, B: 20.0}, 0.0)
    router.record_connected(A, 0.0)
    router.record_result(A, 60.0, 10.0, server_ms=40.0, inference_ms=40.0)

    assert router.expected_ms(B) == 20.0 + 10.0


def test_own_pipelined_frames_queueing_is_charged_to_candidates_too() -> None:
    # Two frames in flight on a node that only this client uses: each waits ~one
    # inference behind the other. Any node would show that, so equal nodes stay equal.
    router = _connected_pair(20.0, 20.0)
    router.pipeline_depth = 2
    for i in range(5):
        router.record_result(A, 100.0, 10.0 * i, server_ms=80.0, inference_ms=40.0)

    assert router.expected_ms(A) == 100.0
    assert router.expected_ms(B) == 20.0 + 0.0 + 40.0 + 40.0
    assert all(d == Stay() for d in _steady(router, {A: 20.0, B: 20.0}, 100.0, 30_000.0))


def test_queueing_beyond_the_clients_own_pipeline_is_load_a_candidate_does_not_share() -> None:
    router = _connected_pair(20.0, 20.0)
    router.pipeline_depth = 2
    for i in range(5):  # 200 ms of queue on A: other clients' frames
        router.record_result(A, 260.0, 10.0 * i, server_ms=240.0, inference_ms=40.0)

    assert router.expected_ms(B) == 20.0 + 0.0 + 40.0 + 40.0  # only one inference's wait
    decisions = _steady(router, {A: 20.0, B: 20.0}, 100.0, 30_000.0)
    switches = [d for d in decisions if isinstance(d, Switch)]
    assert switches, "a node loaded by others must be left"
    assert (switches[0].from_url, switches[0].to_url) == (A, B)


# -- failover -------------------------------------------------------------------------------
def test_when_the_current_node_fails_the_next_best_is_chosen_at_once() -> None:
    router = make_router([A, B, C], dwell_ms=5000.0, min_switch_interval_ms=60_000.0)
    answer_pings(router, {A: 10.0, B: 30.0, C: 20.0}, 0.0)
    connect_to(router, A, 0.0)

    router.record_failure(A, 100.0)
    decision = router.decide(100.0)  # no dwell, no minimum interval

    assert decision == Connect(
        C, "ws://a:8001/infer failed; connecting to ws://c:8001/infer (20 ms expected)"
    )
    assert router.current is None


def test_when_every_node_fails_it_falls_back_to_the_browser() -> None:
    router = make_router([A, B])
    answer_pings(router, {A: 10.0, B: 20.0}, 0.0)
    connect_to(router, A, 0.0)

    router.record_failure(A, 100.0)
    decision = router.decide(100.0)
    assert isinstance(decision, Connect)
    router.record_failure(B, 150.0)
    fallback = router.decide(150.0)

    assert fallback == Fallback(
        "ws://b:8001/infer failed; no node answers (next try in 0.5 s); running in the browser"
    )
    assert router.is_fallback
    assert router.decide(200.0) == Fallback(  # repeated while it holds
        "ws://b:8001/infer failed; no node answers (next try in 0.4 s); running in the browser"
    )


def test_in_fallback_a_node_whose_probe_answers_is_connected() -> None:
    router = make_router([A, B])
    router.record_failure(A, 0.0)
    router.record_failure(B, 0.0)
    assert isinstance(router.decide(0.0), Fallback)
    assert router.probes_due(499.0) == []  # both wait out their backoff

    assert router.probes_due(500.0) == [A, B]
    assert isinstance(router.decide(500.0), Fallback)  # expired backoff is not enough
    router.record_rtt(B, 40.0, 520.0)
    decision = router.decide(520.0)

    assert decision == Connect(
        B, "leaving the in-browser fallback for ws://b:8001/infer (40 ms expected)"
    )
    router.record_connected(B, 600.0)
    assert not router.is_fallback
    assert router.decide(700.0) == Stay()


def test_failed_nodes_back_off_exponentially_and_a_connection_resets_it() -> None:
    router = make_router([A], backoff_initial_ms=500.0, backoff_max_ms=1500.0)
    router.record_failure(A, 0.0)
    assert router.probes_due(499.0) == []
    assert router.probes_due(500.0) == [A]
    router.record_failure(A, 500.0)  # the probe failed too: twice as long
    assert router.probes_due(1499.0) == []
    assert router.probes_due(1500.0) == [A]
    router.record_failure(A, 1500.0)  # capped at backoff_max_ms
    assert router.probes_due(2999.0) == []
    assert router.probes_due(3000.0) == [A]

    router.record_rtt(A, 10.0, 3010.0)
    connect_to(router, A, 3010.0)
    router.record_failure(A, 4000.0)
    assert router.probes_due(4500.0) == [A]  # back to backoff_initial_ms


def test_the_shipped_backoff_retries_a_dead_node_within_two_seconds() -> None:
    # The goal (issue 10): back on a restarted node within 2 s of it being ready.
    settings = RoutingSettings()
    worst_ms = settings.backoff_max_ms * (1 + settings.backoff_jitter)
    assert worst_ms < 2000.0


def test_a_failed_node_that_heartbeats_again_is_probed_at_once() -> None:
    # given A failed at 1000 ms and waits out a long backoff
    router = make_router([A], backoff_initial_ms=20_000.0, backoff_max_ms=20_000.0)
    router.record_failure(A, 1000.0)
    assert router.probes_due(1100.0) == []
    # when the registry still lists it with its last heartbeat before the failure
    router.update_candidates([NodeInfo(A, age_s=1.5)], 2000.0)  # heartbeat at 500 ms
    # then it keeps waiting
    assert router.probes_due(2000.0) == []
    # when a listing shows a heartbeat after the failure (the node restarted)
    router.update_candidates([NodeInfo(A, age_s=0.2)], 4000.0)  # heartbeat at 3800 ms
    # then it is probed now, and used once it answers
    assert router.probes_due(4000.0) == [A]
    router.record_rtt(A, 5.0, 4010.0)
    decision = router.decide(4010.0)
    assert isinstance(decision, Connect)
    assert decision.url == A


def test_static_nodes_without_heartbeats_wait_out_their_backoff() -> None:
    router = make_router([A], backoff_initial_ms=20_000.0, backoff_max_ms=20_000.0)
    router.record_failure(A, 1000.0)
    router.update_candidates([A], 2000.0)  # a static URL: age unknown
    assert router.probes_due(2000.0) == []


def test_backoff_jitter_differs_between_pages() -> None:
    # Two pages must not retry a restarted node in lockstep: no seed from the URL.
    delays = set()
    for _ in range(5):
        router = make_router([A], backoff_jitter=0.2, backoff_initial_ms=1000.0)
        router.record_failure(A, 0.0)
        due = next(t for t in range(800, 1300) if router.probes_due(float(t)))
        delays.add(due)
    assert len(delays) > 1


def test_an_overloaded_node_is_skipped_for_the_cooldown_then_eligible_again() -> None:
    router = make_router([A, B], overload_cooldown_ms=10_000.0)
    answer_pings(router, {A: 10.0, B: 50.0}, 0.0)
    assert isinstance(router.decide(0.0), Connect)

    router.record_failure(A, 10.0, overloaded=True)
    decision = router.decide(10.0)
    assert isinstance(decision, Connect)
    assert decision.url == B
    assert "ws://a:8001/infer is at capacity" in decision.reason
    assert A not in router.probes_due(5000.0)
    router.record_failure(B, 5000.0, overloaded=True)
    assert router.decide(5000.0) == Fallback(
        "ws://b:8001/infer is at capacity; every node is at capacity; running in the browser"
    )

    decision = router.decide(10_010.0)  # A's cool-down is over; its ping still counts
    assert isinstance(decision, Connect)
    assert decision.url == A


def test_no_listed_node_means_fallback() -> None:
    router = make_router([])

    assert router.decide(0.0) == Fallback("no inference node is listed; running in the browser")


# -- probing --------------------------------------------------------------------------------
def test_probes_due_unmeasured_first_then_on_the_interval() -> None:
    router = make_router([C, A], probe_interval_ms=2000.0, probe_timeout_ms=1000.0)
    assert router.probes_due(0.0) == [A, C]
    assert router.probes_due(10.0) == []  # pings are out
    router.record_rtt(A, 10.0, 20.0)
    router.record_rtt(C, 10.0, 30.0)
    router.update_candidates([C, A, B], 40.0)

    assert router.probes_due(40.0) == [B]  # the new, unmeasured node at once
    router.record_rtt(B, 10.0, 50.0)
    assert router.probes_due(1999.0) == []
    assert router.probes_due(2000.0) == [A, C]  # oldest ping first, then by URL
    assert router.probes_due(2039.0) == []
    assert router.probes_due(2040.0) == [B]


def test_an_unanswered_ping_counts_as_a_failure() -> None:
    router = make_router([A, B], probe_timeout_ms=1000.0)
    assert router.probes_due(0.0) == [A, B]
    router.record_rtt(B, 10.0, 5.0)

    assert router.probes_due(1000.0) == []  # A timed out: now in backoff
    assert router.probes_due(1500.0) == [A]


def test_the_current_node_is_probed_too_and_a_silent_one_is_replaced() -> None:
    router = make_router([A, B], probe_interval_ms=1000.0, probe_timeout_ms=1000.0)
    answer_pings(router, {A: 10.0, B: 20.0}, 0.0)
    connect_to(router, A, 0.0)

    assert router.probes_due(1000.0) == [A, B]
    router.record_rtt(B, 20.0, 1010.0)  # A never answers

    decision = router.decide(2000.0)
    assert isinstance(decision, Connect)
    assert decision.url == B


def test_removed_nodes_disappear() -> None:
    router = make_router([A, B])
    answer_pings(router, {A: 10.0, B: 20.0}, 0.0)

    router.update_candidates([B], 100.0)

    assert router.expected_ms(A) is None
    assert A not in router.probes_due(5000.0)
    decision = router.decide(5000.0)
    assert isinstance(decision, Connect)
    assert decision.url == B


def test_a_current_node_dropped_from_the_list_is_left_at_once() -> None:
    router = _connected_pair(10.0, 40.0, dwell_ms=5000.0, min_switch_interval_ms=60_000.0)

    router.update_candidates([B], 100.0)

    assert router.decide(100.0) == Switch(A, B, "ws://a:8001/infer left the node list")


def test_records_for_unknown_urls_are_ignored() -> None:
    router = make_router([A])

    router.record_rtt(B, 10.0, 0.0)
    router.record_failure(B, 0.0)
    router.record_result(B, 10.0, 0.0)

    assert router.expected_ms(B) is None


def test_a_negative_rtt_is_refused() -> None:
    router = make_router([A])

    with pytest.raises(ValueError, match="rtt_ms"):
        router.record_rtt(A, -1.0, 0.0)


# -- settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hysteresis_ratio", 1.0),
        ("hysteresis_ratio", -0.1),
        ("min_gain_ms", -1.0),
        ("dwell_ms", float("nan")),
        ("probe_interval_ms", 0.0),
        ("probe_timeout_ms", 0.0),
        ("connect_timeout_ms", 0.0),
        ("rtt_window", 0),
        ("rtt_window", 2.5),
        ("backoff_initial_ms", 0.0),
        ("backoff_initial_ms", 40_000.0),
        ("backoff_jitter", 1.0),
        ("overload_cooldown_ms", float("inf")),
    ],
)
def test_settings_validation_names_the_field(field: str, value: float) -> None:
    values: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=rf"RoutingSettings\.{field}: expected"):
        RoutingSettings(**values)


def test_default_settings_are_valid() -> None:
    settings = RoutingSettings()

    assert settings.hysteresis_ratio == 0.2
    assert settings.min_gain_ms == 15.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"url": ""}, "url"), ({"url": A, "queue_depth": -1}, "queue_depth")],
)
def test_node_info_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"NodeInfo\.{field}"):
        NodeInfo(**kwargs)  # type: ignore[arg-type]


def test_node_info_from_the_registry_json_ignores_unknown_keys() -> None:
    listed = {
        "node_id": "gpu-1",
        "url": A,
        "name": "gpu-1",
        "site": "lab-2",
        "provider": "CUDAExecutionProvider",
        "streams": 3,
        "max_streams": 32,
        "queue_depth": 1,
        "inference_ms": 7,
        "age_s": 0.4,
    }

    info = NodeInfo.from_mapping(listed)

    assert info == NodeInfo(A, "gpu-1", 1, 7.0, 3, 32, "lab-2", age_s=0.4)
    assert NodeInfo.from_mapping({"url": B}) == NodeInfo(B)
    with pytest.raises(ValueError, match=r"NodeInfo\.queue_depth: expected int"):
        NodeInfo.from_mapping({"url": A, "queue_depth": "many"})


def test_registry_nulls_mean_unknown_and_keep_the_defaults() -> None:
    listed = {
        "id": "static:ws://a/ws",
        "url": "ws://a/ws",
        "name": "ws://a/ws",
        "site": None,
        "provider": None,
        "streams": None,
        "max_streams": None,
        "queue_depth": None,
        "inference_ms": None,
        "static": True,
        "age_s": None,
    }
    info = NodeInfo.from_mapping(listed)
    assert info == NodeInfo(url="ws://a/ws", name="ws://a/ws")


# -- how many probes at once (issue 8: 5000 listed nodes opened 5005 sockets) ---------------


def many(count: int) -> list[str]:
    return [f"ws://n{i:04d}:8001/ws" for i in range(count)]


def test_at_most_max_probes_in_flight_pings_are_out_at_once() -> None:
    router = make_router(many(5000), max_probes_in_flight=4)

    first = router.probes_due(0.0)

    assert first == many(4)  # never pinged: by URL
    assert router.probes_due(100.0) == []  # all four still out
    router.record_rtt(first[0], 10.0, 150.0)
    router.record_failure(first[1], 150.0)  # a failed probe frees its slot too
    assert router.probes_due(200.0) == [many(5000)[4], many(5000)[5]]


def test_an_unanswered_probe_frees_its_slot_at_the_probe_timeout() -> None:
    router = make_router(many(10), max_probes_in_flight=2, probe_timeout_ms=2000.0)
    assert router.probes_due(0.0) == many(2)
    assert router.probes_due(1999.0) == []
    assert router.probes_due(2000.0) == many(10)[2:4]


def test_every_node_gets_its_turn_in_rotation() -> None:
    nodes = many(10)
    router = make_router(nodes, max_probes_in_flight=3, probe_interval_ms=1000.0)
    seen: list[str] = []
    now_ms = 0.0
    for _ in range(20):  # every node measured: ceil(10 / 3) rounds
        due = answer_pings(router, dict.fromkeys(nodes, 5.0), now_ms)
        seen += due
        now_ms += 100.0
    assert seen[:10] == nodes  # the first pass, in URL order, three at a time
    # then the re-pings come round oldest first, each node once per pass
    second_pass = seen[10:20]
    assert sorted(second_pass) == nodes
    assert second_pass == nodes


def test_the_current_node_is_pinged_when_due_whatever_the_candidates_do() -> None:
    nodes = many(6)
    router = make_router(nodes, max_probes_in_flight=1, probe_interval_ms=1000.0)
    answer_pings(router, {nodes[0]: 5.0}, 0.0)
    router.decide(0.0)
    router.record_connected(nodes[0], 10.0)
    router.probes_due(20.0)  # a candidate's ping takes the one slot, and stays out
    due = router.probes_due(1000.0)
    assert due == [nodes[0]]  # the current node's own ping needs no slot


def test_max_probes_in_flight_is_checked() -> None:
    with pytest.raises(ValueError, match="max_probes_in_flight: expected an integer >= 1"):
        RoutingSettings(max_probes_in_flight=0)


# -- which listed entries the page can use -------------------------------------------------


def test_usable_nodes_skip_each_bad_entry_and_say_why() -> None:
    listing: list[object] = [
        {"url": "ws://good:8001/ws", "name": "good", "inference_ms": None},
        {"url": "ws://0:99999/ws", "name": "typo"},  # the browser throws on this one
        {"url": "ws://[::1/ws"},
        {"url": "ws://fine:8001/ws", "streams": "many"},
        {"name": "no url"},
        "ws://{hostname}:8001/ws",
        42,
    ]

    usable, problems = node_info.usable_nodes(listing)

    assert [info.url for info in usable] == ["ws://good:8001/ws", "ws://{hostname}:8001/ws"]
    assert len(problems) == 5
    assert "'ws://0:99999/ws' skipped: expected a port from 1 to 65535" in problems[0]
    assert "IPv6 address in brackets" in problems[1]
    assert "NodeInfo.streams" in problems[2]
    assert "an entry (dict) skipped" in problems[3]
    assert "an entry (int) skipped" in problems[4]


# -- the latency objective (issue 12) ---------------------------------------------------------
def test_a_degraded_node_is_chosen_only_when_no_other_is_usable() -> None:
    router = make_router([NodeInfo(A, degraded=True), NodeInfo(B), NodeInfo(C, degraded=True)])
    answer_pings(router, {A: 1.0, C: 2.0}, 0.0)  # B not measured yet, still preferred

    decision = router.decide(1.0)

    assert isinstance(decision, Connect)
    assert decision.url == B


def test_the_current_node_turning_degraded_moves_the_page_at_once() -> None:
    router = make_router([NodeInfo(A, name="a"), NodeInfo(B, name="b")])
    answer_pings(router, {A: 5.0, B: 9.0}, 0.0)
    connect_to(router, A, 1.0)
    router.update_candidates([NodeInfo(A, name="a", degraded=True), NodeInfo(B, name="b")], 2.0)

    decision = router.decide(3.0)  # no dwell, no min_switch_interval: the registry judged

    assert decision == Switch(A, B, "a misses its latency objective; moving to b")


def test_a_degraded_node_stays_when_every_other_is_degraded_too() -> None:
    nodes = [NodeInfo(A, degraded=True), NodeInfo(B, degraded=True)]
    router = make_router(nodes)
    answer_pings(router, {A: 5.0, B: 9.0}, 0.0)
    connect_to(router, A, 1.0)

    assert router.decide(2.0) == Stay()


def test_a_healthy_node_is_never_left_for_a_faster_degraded_one() -> None:
    router = make_router([A, B], min_switch_interval_ms=0.0, dwell_ms=0.0)
    answer_pings(router, {A: 80.0, B: 80.0}, 0.0)
    connect_to(router, A, 1.0)
    router.update_candidates([NodeInfo(A), NodeInfo(B, degraded=True)], 2.0)
    answer_pings(router, {A: 80.0, B: 1.0}, 3000.0)

    assert router.decide(3001.0) == Stay()


def test_the_degraded_flag_must_be_a_json_boolean() -> None:
    assert NodeInfo.from_mapping({"url": A, "degraded": True}).degraded
    assert not NodeInfo.from_mapping({"url": A}).degraded
    with pytest.raises(ValueError, match="degraded"):
        NodeInfo.from_mapping({"url": A, "degraded": "false"})


def test_a_page_keeps_at_most_max_candidates_of_a_huge_list() -> None:
    listing = many(5000)

    usable, problems = node_info.usable_nodes(listing)

    assert [info.url for info in usable] == listing[: node_info.MAX_CANDIDATES]
    assert problems == [
        f"{5000 - node_info.MAX_CANDIDATES} listed nodes ignored: a page keeps at most 64"
    ]


# -- when the driver must call again (no fixed tick) -------------------------------------------
def test_next_due_is_now_for_a_node_never_pinged_then_its_ping_timeout() -> None:
    router = make_router([A], probe_timeout_ms=2000.0)
    assert router.next_due_ms(0.0) == 0.0
    assert router.probes_due(0.0) == [A]
    assert router.next_due_ms(10.0) == 2000.0  # the ping times out then


def test_next_due_follows_the_probe_interval_and_the_backoff() -> None:
    router = make_router([A], probe_interval_ms=2000.0, backoff_initial_ms=500.0)
    answer_pings(router, {A: 10.0}, 0.0)
    assert router.next_due_ms(5.0) == 2000.0
    router.record_failure(A, 100.0)
    assert router.next_due_ms(150.0) == 600.0  # backoff without jitter: 500 ms


def test_next_due_covers_the_connect_timeout_and_the_dwell() -> None:
    router = make_router([A, B], connect_timeout_ms=5000.0, probe_interval_ms=60_000.0)
    answer_pings(router, {A: 10.0, B: 50.0}, 0.0)
    assert isinstance(router.decide(0.0), Connect)
    assert router.next_due_ms(1.0) == 5000.0  # no HELLO by then: the connect failed
    router.record_connected(A, 100.0)
    assert router.next_due_ms(200.0) == 60_000.0  # nothing but the next pings


def test_with_nothing_to_wait_for_only_a_report_can_change_anything() -> None:
    router = make_router([])
    assert router.next_due_ms(0.0) == float("inf")


def test_a_full_probe_budget_waits_for_an_answer_not_a_busy_loop() -> None:
    urls = [f"ws://n{i}:8001/ws" for i in range(6)]
    router = make_router(urls, max_probes_in_flight=4, probe_timeout_ms=2000.0)
    assert len(router.probes_due(0.0)) == 4
    assert router.next_due_ms(1.0) == 2000.0  # not "now" for the two still waiting


# -- every node degraded: the in-browser fallback only when faster (issue 12) -----------------
def _all_degraded(
    local_ms: float | None, a_ms: float = 100.0, b_ms: float = 120.0, **overrides: Any
) -> Router:
    """On A; A and B both degraded and measured by ping; the browser's frames take
    ``local_ms`` (None: it never ran)."""
    router = make_router([NodeInfo(A, name="a"), NodeInfo(B, name="b")], **overrides)
    answer_pings(router, {A: a_ms, B: b_ms}, 0.0)
    connect_to(router, A, 1.0)
    router.update_candidates(
        [NodeInfo(A, name="a", degraded=True), NodeInfo(B, name="b", degraded=True)], 2.0
    )
    router.local_ready = True
    if local_ms is not None:
        router.record_local(local_ms, 2.0)
    return router


def test_every_node_degraded_and_the_browser_faster_falls_back_after_the_dwell() -> None:
    router = _all_degraded(local_ms=40.0)  # A: 100 ms expected

    assert router.decide(3.0) == Stay()  # the dwell starts
    assert router.next_due_ms(3.0) <= 3.0 + SETTINGS.dwell_ms
    assert router.decide(3.0 + SETTINGS.dwell_ms - 1) == Stay()
    decision = router.decide(3.0 + SETTINGS.dwell_ms)

    assert decision == Fallback(
        "every node misses its latency objective and this browser is faster "
        "(40 ms a frame; best node a, 100 ms); running in the browser"
    )
    assert router.current is None
    assert router.is_fallback
    assert isinstance(router.decide(3.0 + SETTINGS.dwell_ms + 1), Fallback)  # it holds


def test_every_node_degraded_and_the_browser_slower_stays_on_the_node() -> None:
    router = _all_degraded(local_ms=110.0)

    decisions = [router.decide(now) for now in range(3, 60_000, 250)]

    assert set(decisions) == {Stay()}
    assert router.current == A


def test_the_browser_within_the_margin_is_not_enough() -> None:
    router = _all_degraded(local_ms=85.0)  # 15 % faster: inside the 20 % margin

    assert {router.decide(now) for now in range(3, 60_000, 250)} == {Stay()}


def test_the_best_degraded_node_counts_not_only_the_current_one() -> None:
    router = _all_degraded(local_ms=40.0, rtt_window=1)
    decisions = []
    for now in range(3, 60_000, 250):
        answer_pings(router, {A: 100.0, B: 45.0}, now)  # B: too close to the browser's 40
        decisions.append(decision := router.decide(now))
        if isinstance(decision, Switch):
            router.record_connected(decision.to_url, now)

    assert not any(isinstance(decision, Fallback) for decision in decisions)
    assert router.current == B  # an ordinary switch, after its dwell


def test_one_node_holding_its_objective_is_used_not_the_browser() -> None:
    router = make_router([NodeInfo(A, name="a"), NodeInfo(B, name="b")])
    answer_pings(router, {A: 100.0, B: 150.0}, 0.0)
    connect_to(router, A, 1.0)
    router.update_candidates([NodeInfo(A, name="a", degraded=True), NodeInfo(B, name="b")], 2.0)
    router.local_ready = True
    router.record_local(10.0, 2.0)

    assert router.decide(3.0) == Switch(A, B, "a misses its latency objective; moving to b")


def test_without_a_measurement_of_the_browser_the_page_stays() -> None:
    router = _all_degraded(local_ms=None)

    assert {router.decide(now) for now in range(3, 60_000, 250)} == {Stay()}
    assert router.local_ms is None


def test_a_browser_engine_not_ready_is_never_chosen() -> None:
    router = _all_degraded(local_ms=10.0)
    router.local_ready = False

    assert {router.decide(now) for now in range(3, 60_000, 250)} == {Stay()}


def test_a_dip_shorter_than_the_dwell_does_not_fall_back() -> None:
    router = _all_degraded(local_ms=40.0)
    assert router.decide(3.0) == Stay()
    for _ in range(5):  # the browser slows (a busy tab): the dwell starts over
        router.record_local(200.0, 1000.0)
    assert router.decide(1000.0) == Stay()
    for _ in range(5):
        router.record_local(40.0, 2000.0)

    assert router.decide(2000.0) == Stay()
    assert router.decide(2000.0 + SETTINGS.dwell_ms - 1) == Stay()
    assert isinstance(router.decide(2000.0 + SETTINGS.dwell_ms), Fallback)


def _in_the_browser(local_ms: float = 40.0, **overrides: Any) -> tuple[Router, float]:
    router = _all_degraded(local_ms=local_ms, **overrides)
    router.decide(3.0)
    left_ms = 3.0 + SETTINGS.dwell_ms
    assert isinstance(router.decide(left_ms), Fallback)
    return router, left_ms


def test_in_the_browser_a_node_holding_its_objective_again_is_used_at_once() -> None:
    router, left_ms = _in_the_browser()
    router.update_candidates(
        [NodeInfo(A, name="a", degraded=True), NodeInfo(B, name="b")], left_ms + 1
    )

    decision = router.decide(left_ms + 2)

    assert isinstance(decision, Connect)
    assert decision.url == B
    assert decision.reason.startswith("leaving the in-browser fallback (a node holds) for b")


def test_degraded_nodes_are_still_probed_from_the_browser() -> None:
    router, left_ms = _in_the_browser()

    due = router.probes_due(left_ms + SETTINGS.probe_interval_ms)

    assert set(due) == {A, B}


def test_in_the_browser_a_degraded_node_faster_again_is_used_after_the_interval() -> None:
    router, left_ms = _in_the_browser(rtt_window=1)
    answer_pings(router, {A: 30.0, B: 120.0}, left_ms + SETTINGS.probe_interval_ms)
    assert router.expected_ms(A) == pytest.approx(30.0)  # now faster than the browser's 40

    assert isinstance(router.decide(left_ms + SETTINGS.probe_interval_ms), Fallback)
    back_ms = left_ms + SETTINGS.min_switch_interval_ms
    assert router.next_due_ms(left_ms + SETTINGS.probe_interval_ms) <= back_ms
    decision = router.decide(back_ms)

    assert isinstance(decision, Connect)
    assert decision.url == A
    assert "the browser is slower" in decision.reason


def test_in_the_browser_a_node_only_as_fast_as_before_is_not_used() -> None:
    router, left_ms = _in_the_browser()
    now = left_ms
    while now < left_ms + 60_000:
        answer_pings(router, {A: 100.0, B: 120.0}, now)
        assert isinstance(router.decide(now), Fallback)
        now += 250.0


def test_a_page_without_a_node_goes_to_a_faster_browser_at_once() -> None:
    router = make_router([NodeInfo(A, name="a", degraded=True)])
    router.local_ready = True
    router.record_local(40.0, 0.0)
    answer_pings(router, {A: 100.0}, 0.0)

    assert isinstance(router.decide(1.0), Fallback)


def test_no_flapping_between_a_node_and_the_browser() -> None:
    """The best node's time crosses the browser's back and forth every 5 s: the page
    goes to the browser only after a full dwell, and back no sooner than
    ``min_switch_interval_ms`` after."""
    router = _all_degraded(local_ms=40.0, rtt_window=1)
    moves: list[tuple[float, str]] = []
    now = 3.0
    while now < 120_000:
        node_ms = 30.0 if int(now // 5000) % 2 else 100.0
        answer_pings(router, {A: node_ms, B: 120.0}, now)
        if router.current is not None:
            router.record_result(router.current, node_ms, now)
        decision = router.decide(now)
        if isinstance(decision, Connect):
            router.record_connected(decision.url, now)
            moves.append((now, "node"))
        elif isinstance(decision, Fallback) and (not moves or moves[-1][1] == "node"):
            moves.append((now, "browser"))
        now += 250.0

    assert moves, "the page never went to the browser"
    for (before, _), (after, where) in itertools.pairwise(moves):
        assert after - before >= (
            SETTINGS.min_switch_interval_ms if where == "node" else SETTINGS.dwell_ms
        )


def test_a_local_time_must_be_a_finite_number() -> None:
    router = make_router([A])
    with pytest.raises(ValueError, match="local frame_ms"):
        router.record_local(math.nan, 0.0)


# -- bad registry entries back off per node and per kind of failure (issue 18) ------------------
def probe_forever(
    router: Router, url: str, until_ms: float, kind: Failure, step_ms: float = 100.0, **listing: Any
) -> list[float]:
    """Drive the router on a fake clock as a page does: whenever ``url`` is due, probe it,
    and it fails; with ``listing``, the registry relists it every 2 s (it heartbeats)."""
    probed: list[float] = []
    now_ms = 0.0
    while now_ms < until_ms:
        if listing and now_ms % 2000.0 == 0.0:
            router.update_candidates([NodeInfo(url, **listing)], now_ms)
        if url in router.probes_due(now_ms):
            probed.append(now_ms)
            router.record_failure(url, now_ms, kind=kind)
        now_ms += step_ms
    return probed


@pytest.mark.parametrize("kind", list(Failure))
def test_a_node_that_keeps_failing_is_probed_ever_more_rarely_up_to_minutes(
    kind: Failure,
) -> None:
    router = make_router([A])
    hour_ms = 3_600_000.0
    probed = probe_forever(router, A, hour_ms, kind)
    # was: every 1.5 s, forever (2400 an hour); now ~40 in the fast first minute, then rarer
    assert len(probed) <= 60, f"{kind}: {len(probed)} probes in an hour"  # ~40 in the first minute
    gaps = [b - a for a, b in itertools.pairwise(probed)]
    assert gaps[-1] >= SETTINGS.backoff_slow_max_ms - 100.0  # minutes between the last ones


def test_a_never_answering_node_that_heartbeats_is_not_probed_at_every_heartbeat() -> None:
    # given a listed node that heartbeats every 2 s but never answers this page
    router = make_router([A])
    probed = probe_forever(router, A, 600_000.0, Failure.UNREACHABLE, age_s=0.1)
    # then after the fast window its heartbeats no longer buy it probes
    late = [t for t in probed if t > SETTINGS.fast_retry_window_ms + 10_000.0]
    assert len(late) <= 6, late


def test_a_restarted_node_is_still_retried_within_two_seconds_at_first() -> None:
    router = make_router([A])
    probed = probe_forever(router, A, 20_000.0, Failure.UNREACHABLE)
    gaps = [b - a for a, b in itertools.pairwise(probed)]
    assert max(gaps) <= SETTINGS.backoff_max_ms + 100.0


def test_each_kind_of_failure_has_its_own_backoff() -> None:
    router = make_router([A])
    for t in (0.0, 5000.0, 15_000.0):  # three refusals: 5 s, 10 s, then 20 s
        router.record_failure(A, t, kind=Failure.REFUSED)
    assert router.probes_due(15_000.0 + 19_999.0) == []
    assert router.probes_due(35_000.0) == [A]
    router.record_failure(A, 35_000.0)  # now unreachable: its own schedule starts afresh
    assert router.probes_due(35_500.0) == [A]


def test_a_refused_node_is_probed_at_once_when_the_registry_lists_another_model() -> None:
    router = make_router([NodeInfo(A, model_sha256="aa" * 32, age_s=0.1)])
    router.record_failure(A, 1000.0, kind=Failure.REFUSED)
    router.update_candidates([NodeInfo(A, model_sha256="aa" * 32, age_s=0.1)], 2000.0)
    assert router.probes_due(2000.0) == []  # a newer heartbeat of the same refusing node
    router.update_candidates([NodeInfo(A, model_sha256="bb" * 32, age_s=0.1)], 4000.0)
    assert router.probes_due(4000.0) == [A]  # redeployed with another model: try it now


def test_an_answered_probe_does_not_lift_a_refusal_only_results_do() -> None:
    router = make_router([A])
    router.record_failure(A, 0.0, kind=Failure.REFUSED)
    router.record_rtt(A, 5.0, 5000.0)  # it answers pings; it may still refuse the stream
    connect_to(router, A, 5000.0)
    router.record_failure(A, 5100.0, kind=Failure.REFUSED)  # refused again: 10 s now
    assert router.probes_due(5100.0 + 9999.0) == []
    assert router.probes_due(15_100.0) == [A]
