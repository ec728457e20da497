"""The thesis' model as code (chapters 5-6): from an env to the plan both backends build.

``plan(env)`` derives the peering plan (star + full mesh in every DB domain, eq. 5.1), the
CIDR plan, the label vocabulary on clusters, nodes and virtual nodes, the offloaded
namespaces with their cluster selectors, and validates the whole (no re-offloading, no
circular offloading, distinct CIDRs inside DB domains, Kubernetes' 5,000-node limit, ...).
``Plan.affinity(placement)`` gives the nodeAffinity that places a workload on a group, a
DB domain, or on a preferred main station with backups. ``labkit.topology.draw`` draws the
thesis' topology figures from the same objects. Pure Python; it imports no driver.
"""

from labkit.topology.labels import node_affinity, selector_terms
from labkit.topology.model import (
    MAX_NODES_PER_CLUSTER,
    ClusterCidrs,
    Link,
    OffloadPlan,
    Plan,
    VirtualNode,
)
from labkit.topology.planner import plan, resolve_offloads

__all__ = [
    "MAX_NODES_PER_CLUSTER",
    "ClusterCidrs",
    "Link",
    "OffloadPlan",
    "Plan",
    "VirtualNode",
    "node_affinity",
    "plan",
    "resolve_offloads",
    "selector_terms",
]
