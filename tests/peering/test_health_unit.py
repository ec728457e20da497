"""The health check's state machine with Liqo's defaults (no kernel, no network)."""

from __future__ import annotations

import threading

import pytest

from labkit.testbed.embedded.liqo import health

pytestmark = pytest.mark.unit


def test_five_consecutive_losses_disconnect() -> None:
    state = health.HealthCheck()
    assert state.status == health.CONNECTING
    assert state.record(0.001) and state.status == health.CONNECTED
    for _ in range(4):
        assert not state.record(None)
    assert state.status == health.CONNECTED
    assert state.record(None) and state.status == health.ERROR
    assert state.record(0.002) and state.status == health.CONNECTED and state.losses == 0


def test_a_reply_resets_the_loss_count() -> None:
    state = health.HealthCheck()
    for rtt in (0.001, None, None, None, None, 0.001, None, None, None, None):
        state.record(rtt)
    assert state.status == health.CONNECTED


def test_status_document_uses_liqo_field_names() -> None:
    state = health.HealthCheck()
    state.record(0.0015)
    doc = health.tunnel_endpoint_status(state)
    assert doc["connection"]["status"] == "Connected"
    assert doc["connection"]["peerLatency"] == "1.500ms"


def test_run_check_publishes_changes_only() -> None:
    replies = iter([0.001, 0.001] + [None] * 5)
    seen: list[str] = []
    stop = threading.Event()

    def pinger(target: str, timeout: float) -> float | None:
        try:
            return next(replies)
        except StopIteration:
            stop.set()
            return None

    health.run_check("x", lambda s: seen.append(s.status), stop, interval=0.001, pinger=pinger)
    assert seen == ["Connecting", "Connected", "Error"]
