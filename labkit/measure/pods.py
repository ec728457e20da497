"""Pod lifecycle, observed from a Kubernetes watch: phase, readiness, node and restarts.

Rows carry metric ``pod_ready`` (value 1/0) with labels ``pod``, ``node``, ``phase``,
``restarts`` and ``event`` (ADDED/MODIFIED/DELETED), stamped with the UTC receive time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd

from labkit.measure.base import BackgroundCollector
from labkit.results import tidy


def pod_state(pod: Any) -> dict[str, Any]:
    """Phase, readiness, node and total container restarts of a ``V1Pod``."""
    status = pod.status
    ready = any(c.type == "Ready" and c.status == "True" for c in (status.conditions or [])) if status else False
    restarts = sum(cs.restart_count or 0 for cs in (status.container_statuses or [])) if status else 0
    return {"pod": pod.metadata.name, "node": (pod.spec.node_name or "") if pod.spec else "",
            "phase": (status.phase or "") if status else "", "restarts": int(restarts), "ready": ready}


class PodEvents(BackgroundCollector):
    """Watch the pods of ``namespace`` (optionally a label selector) in one cluster."""

    name = "pod_events"

    def __init__(self, core_api: Any, *, cluster: str, namespace: str, label_selector: str = "",
                 **keys: str) -> None:
        super().__init__()
        self.api, self.cluster, self.namespace, self.selector, self.keys = core_api, cluster, namespace, label_selector, keys

    def run(self) -> None:
        for event in self.watch(self.api.list_namespaced_pod, self.namespace, label_selector=self.selector):
            state = pod_state(event["object"])
            ready = state.pop("ready")
            self.emit(t=datetime.now(timezone.utc), value=1.0 if ready else 0.0, event=event["type"], **state)

    def collect(self) -> pd.DataFrame:
        """Tidy rows: metric ``pod_ready``, unit ``bool``."""
        return tidy(self.frame(), cluster=self.cluster, metric="pod_ready", unit="bool", **self.keys)
