"""The look-alike's tunnel check follows Liqo v0.10.2's rule (no kernel, no network)."""

from __future__ import annotations

import threading
import time

import pytest

from labkit.testbed.embedded.liqo import health

pytestmark = pytest.mark.unit


def test_down_when_no_pong_for_interval_times_threshold() -> None:
    state = health.HealthCheck(last_pong=100.0)
    assert state.status == health.CONNECTING and state.window_s == 10.0 and state.observe_every_s == 1.0
    assert state.pong(0.001, now=100.0) and state.status == health.CONNECTED
    assert not state.observe(now=110.0)  # 10 s since the last pong (+1 ms latency): not yet
    assert state.observe(now=110.002) and state.status == health.ERROR
    assert state.pong(0.002, now=111.0) and state.status == health.CONNECTED


def test_lost_pings_between_pongs_do_not_matter() -> None:
    """Liqo counts no losses: only the age of the last pong does (unlike '5 consecutive losses')."""
    state = health.HealthCheck(last_pong=0.0)
    for t in range(0, 60, 8):  # one pong every 8 s, four of five pings lost
        state.pong(0.001, now=float(t))
        assert not state.observe(now=t + 7.9)
    assert state.status == health.CONNECTED


def test_detection_delay_after_a_cut_is_8_to_11_s() -> None:
    """A cut at a random phase: the last pong came up to one interval before it; the observer
    looks every second: NotReady 8-11 s after the cut (docs/peering.md)."""
    delays = []
    for phase in (0.0, 0.5, 1.0, 1.5, 1.99):
        for observer_phase in (0.0, 0.3, 0.99):
            state = health.HealthCheck(last_pong=0.0)
            state.pong(0.0005, now=-phase)  # the last pong before the cut at t = 0
            t = observer_phase
            while not state.observe(now=t):
                t += state.observe_every_s
            delays.append(t)
    assert 8.0 <= min(delays) and max(delays) <= 11.0, delays


def test_status_document_uses_liqo_field_names() -> None:
    state = health.HealthCheck()
    state.pong(0.0015)
    doc = health.tunnel_endpoint_status(state)
    assert doc["connection"]["status"] == "Connected"
    assert doc["connection"]["peerLatency"] == "1.500ms"


def test_run_check_publishes_changes_only() -> None:
    replies = iter([0.001, 0.001])
    seen: list[str] = []
    stop = threading.Event()

    def pinger(target: str, timeout: float) -> float | None:
        value = next(replies, None)
        if value is None:
            time.sleep(timeout)
        return value

    def publish(state: health.HealthCheck) -> None:
        seen.append(state.status)
        if state.status == health.ERROR:
            stop.set()

    start = time.monotonic()
    health.run_check("x", publish, stop, interval=0.02, loss_threshold=5, pinger=pinger)
    assert seen == ["Connecting", "Connected", "Error"]
    assert time.monotonic() - start >= 0.1  # not before interval x threshold without a pong
