"""Collectors on fake APIs: the logic of readiness, pods and ping rows (real clusters: embedded tier)."""

from __future__ import annotations

import time
from types import SimpleNamespace as NS

import pandas as pd
import pytest

from labkit.measure import CollectorError, collecting
from labkit.measure.nodes import NodeReadyPoll, not_ready_delay, ready_condition
from labkit.measure.ping import PingCollector, summarize_rtt
from labkit.measure.pods import pod_state
from labkit.results import KEY_COLUMNS
from labkit.testbed.base import PingResult

pytestmark = pytest.mark.unit
KEYS = dict(run_id="r", scenario="s", step="x")


def node(name: str, ready: bool | None) -> NS:
    conds = [] if ready is None else [NS(type="Ready", status="True" if ready else "False", reason="KubeletReady")]
    return NS(metadata=NS(name=name), status=NS(conditions=conds))


class FakeCore:
    """list_node returns Ready until ``flip`` then NotReady for node b."""

    def __init__(self, flip_after: float) -> None:
        self.t0 = time.monotonic()
        self.flip_after = flip_after

    def list_node(self, **_: object) -> NS:
        down = time.monotonic() - self.t0 >= self.flip_after
        return NS(items=[node("a", True), node("b", not down)])


def test_ready_condition() -> None:
    assert ready_condition(node("a", True)) == (True, "KubeletReady")
    assert ready_condition(node("a", False))[0] is False
    assert ready_condition(node("a", None)) == (False, "NoReadyCondition")


def test_poll_sees_the_transition_and_delay_is_computed() -> None:
    poll = NodeReadyPoll(FakeCore(flip_after=0.25), cluster="root", nodes=["b"], interval=0.05, **KEYS)
    fault_t = pd.Timestamp.now(tz="UTC")
    with collecting([poll]):
        time.sleep(0.5)
    rows = poll.collect()
    assert list(rows.columns[: len(KEY_COLUMNS)]) == list(KEY_COLUMNS)
    assert set(rows["node"]) == {"b"} and set(rows["method"]) == {"poll"}
    assert rows["value"].iloc[0] == 1.0 and rows["value"].iloc[-1] == 0.0
    delay = not_ready_delay(rows, "b", fault_t)
    assert delay is not None and 0.2 <= delay <= 0.45
    assert not_ready_delay(rows, "a", fault_t) is None


def test_poll_rejects_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        NodeReadyPoll(FakeCore(1), cluster="c", interval=0)


def test_thread_errors_surface_in_collect() -> None:
    class Broken:
        def list_node(self, **_: object) -> NS:
            raise ConnectionError("apiserver gone")

    poll = NodeReadyPoll(Broken(), cluster="c", interval=0.01, **KEYS)
    with collecting([poll]):
        time.sleep(0.05)
    with pytest.raises(CollectorError, match="apiserver gone"):
        poll.collect()


def test_collecting_stops_on_error() -> None:
    poll = NodeReadyPoll(FakeCore(10), cluster="c", interval=0.01, **KEYS)
    with pytest.raises(RuntimeError, match="boom"), collecting([poll]):
        raise RuntimeError("boom")
    assert poll.stopping.is_set()


def test_pod_state() -> None:
    pod = NS(metadata=NS(name="pdc-0"), spec=NS(node_name="liqo-leaf-1"),
             status=NS(phase="Running", conditions=[NS(type="Ready", status="True")],
                       container_statuses=[NS(restart_count=2), NS(restart_count=1)]))
    assert pod_state(pod) == {"pod": "pdc-0", "node": "liqo-leaf-1", "phase": "Running", "restarts": 3, "ready": True}


def test_ping_rows_and_summary() -> None:
    class Host:
        name = "leaf-1"

        def ping(self, target: str, count: int, interval: float, timeout: float) -> PingResult:
            return PingResult(target, count, count - 1, tuple(0.5 + 0.1 * i for i in range(count - 1)))

    ping = PingCollector(Host(), "10.250.0.1", cluster="leaf-1", count=5, interval=0.01, **KEYS)
    with collecting([ping]):
        pass
    rows = ping.collect()
    assert sorted(rows["metric"].unique()) == ["loss", "rtt"]
    assert rows.loc[rows["metric"] == "loss", "value"].item() == pytest.approx(0.2)
    summary = summarize_rtt(rows)
    assert summary.loc[0, "n"] == 4 and summary.loc[0, "mean"] == pytest.approx(0.65)
