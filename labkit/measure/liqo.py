"""What Liqo's own objects say about a peering: the consumer's ForeignCluster of a provider.

Liqo v0.10.2's controller manager checks each foreign API server (``/livez``) every 15 s with a 5 s
timeout (``--foreign-cluster-ping-interval``/``-timeout``) and writes the outcome into the
ForeignCluster's peering condition ``APIServerStatus`` (``Established`` or ``Error``,
``pkg/liqo-controller-manager/foreign-cluster-operator/apiserverchecker.go``). The virtual kubelet
reads that condition before it posts its node's status: while it reads ``Error``, the node goes
NotReady only when its Lease expires, not through the tunnel check. The kit's look-alike has no
ForeignCluster; there, nothing here waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from labkit.testbed import TestbedError
from labkit.waiting import wait_until

FOREIGN_CLUSTER = ("discovery.liqo.io", "v1alpha1", "foreignclusters")
API_SERVER_STATUS = "APIServerStatus"
ESTABLISHED = "Established"


@dataclass(frozen=True)
class PeeringCondition:
    """One peering condition of a ForeignCluster: its status and when it last changed (UNIX s)."""

    status: str
    changed: float


def api_server_status(custom: Any, provider: str) -> PeeringCondition | None:
    """The ``APIServerStatus`` of the ForeignCluster ``provider`` (a ``CustomObjectsApi`` of the consumer).

    ``None`` when the cluster has no such ForeignCluster or no such condition (the look-alike, or
    a peering not yet made).
    """
    from kubernetes.client.rest import ApiException

    try:
        fc = custom.get_cluster_custom_object(*FOREIGN_CLUSTER, provider)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    for cond in (fc.get("status") or {}).get("peeringConditions") or []:
        if cond.get("type") == API_SERVER_STATUS:
            changed = datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00")).timestamp()
            return PeeringCondition(cond.get("status", ""), changed)
    return None


def wait_api_server_established(custom: Any, provider: str, *, timeout: float, interval: float = 0.5,
                                required: bool = True) -> None:
    """Block until the consumer's ForeignCluster of ``provider`` reads its API server ``Established``.

    ``required=False`` (the look-alike): a missing ForeignCluster or condition ends the wait at once;
    with Liqo it is waited for, so a misnamed ForeignCluster fails instead of waiting for nothing.

    Raises
    ------
    labkit.testbed.TestbedError
        When the condition reads anything else for ``timeout`` seconds.
    """
    def established() -> bool:
        cond = api_server_status(custom, provider)
        return cond.status == ESTABLISHED if cond is not None else not required

    wait_until(established, timeout=timeout, interval=interval, error=TestbedError,
               message=f"ForeignCluster {provider}: {API_SERVER_STATUS} not {ESTABLISHED} within {timeout:.0f} s")
