"""Node readiness, observed two ways, to time how fast a cluster sees a node go NotReady.

- :class:`NodeReadyWatch`: a Kubernetes watch on Nodes; each event is stamped with the
  local UTC receive time (milliseconds), since ``lastTransitionTime`` has 1 s resolution.
- :class:`NodeReadyPoll`: the thesis' own method (Fig. 7.2): list nodes every 0.4 s.

Both emit rows with metric ``node_ready`` (value 1 = Ready, 0 = not), label columns
``node``, ``reason`` and ``method``. :func:`not_ready_delay` turns them into the delay
between a fault and the first NotReady observation.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from labkit.measure.base import BackgroundCollector
from labkit.results import tidy
from labkit.testbed import TestbedError
from labkit.waiting import wait_until


def ready_condition(node: Any) -> tuple[bool, str]:
    """``(ready, reason)`` of a ``V1Node`` (not ready and ``"NoReadyCondition"`` when absent)."""
    for cond in (node.status.conditions or []) if node.status else []:
        if cond.type == "Ready":
            return cond.status == "True", cond.reason or ""
    return False, "NoReadyCondition"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _NodeCollector(BackgroundCollector):
    """Shared state of the node collectors: the API, the nodes of interest and row keys."""

    method = "base"

    def __init__(self, core_api: Any, *, cluster: str, nodes: list[str] | None = None, **keys: str) -> None:
        super().__init__()
        self.api = core_api
        self.cluster = cluster
        self.nodes = set(nodes) if nodes else None
        self.keys = keys

    def record(self, node: Any, t: datetime) -> None:
        """Emit one readiness observation of ``node`` at ``t``."""
        name = node.metadata.name
        if self.nodes is not None and name not in self.nodes:
            return
        ready, reason = ready_condition(node)
        self.emit(t=t, node=name, value=1.0 if ready else 0.0, reason=reason, method=self.method)

    def collect(self) -> pd.DataFrame:
        """Tidy rows: metric ``node_ready``, unit ``bool``."""
        return tidy(self.frame(), cluster=self.cluster, metric="node_ready", unit="bool", **self.keys)


class NodeReadyWatch(_NodeCollector):
    """Readiness from a Kubernetes watch on Nodes (``CoreV1Api.list_node``), ms timestamps."""

    name = "node_ready_watch"
    method = "watch"

    def run(self) -> None:
        for event in self.watch(self.api.list_node):
            self.record(event["object"], _now())


class NodeReadyPoll(_NodeCollector):
    """Readiness by listing Nodes every ``interval`` seconds (the thesis used 0.4 s)."""

    name = "node_ready_poll"
    method = "poll"

    def __init__(self, core_api: Any, *, cluster: str, nodes: list[str] | None = None, interval: float = 0.4,
                 **keys: str) -> None:
        super().__init__(core_api, cluster=cluster, nodes=nodes, **keys)
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval

    def run(self) -> None:
        next_due = time.monotonic()
        while not self.stopping.is_set():
            t = _now()
            for node in self.api.list_node(_request_timeout=max(self.interval, 1.0)).items:
                self.record(node, t)
            next_due += self.interval
            self.stopping.wait(max(0.0, next_due - time.monotonic()))


def wait_node(core: Any, node: str, *, ready: bool, timeout: float, interval: float = 0.2) -> float:
    """Block until ``node`` is (not) Ready (a missing node is not Ready); return the seconds waited.

    Raises
    ------
    labkit.testbed.TestbedError
        When the node does not reach the state within ``timeout`` seconds.
    """
    from kubernetes.client.rest import ApiException

    def reached() -> bool:
        try:
            return ready_condition(core.read_node(node))[0] == ready
        except ApiException as exc:
            if exc.status != 404:
                raise
            return False

    start = time.monotonic()
    wait_until(reached, timeout=timeout, interval=interval, error=TestbedError,
               message=f"node {node} not {'Ready' if ready else 'NotReady'} within {timeout:.0f} s")
    return time.monotonic() - start


def not_ready_delay(rows: pd.DataFrame, node: str, fault_t: pd.Timestamp) -> float | None:
    """Seconds from ``fault_t`` to the first observation of ``node`` not Ready (None if never)."""
    after = rows[(rows["node"] == node) & (rows["t"] >= fault_t) & (rows["value"] == 0.0)]
    if after.empty:
        return None
    return (after["t"].min() - fault_t).total_seconds()
