"""The plan's data types: plain frozen dataclasses, backend-neutral.

A :class:`Plan` is what both drivers consume: who peers with whom (:class:`Link`), each
cluster's CIDRs (:class:`ClusterCidrs`), labels, offloaded namespaces (:class:`OffloadPlan`)
and the virtual nodes every consumer will hold (:class:`VirtualNode`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

import networkx as nx

from labkit.config import Env, Placement

#: Why a peering exists: the ACC's star, a DB domain's full mesh, an offload, a main->backup or
#: main->secondary link of the multi-level second star, or the env file's explicit list.
LinkKind = Literal["star", "mesh", "offload", "backup", "jurisdiction", "explicit"]

#: Kubernetes' documented upper bound of nodes per cluster (physical + virtual).
MAX_NODES_PER_CLUSTER = 5000


@dataclass(frozen=True)
class Link:
    """A unidirectional out-of-band peering: ``consumer`` may run pods on ``provider``.

    Attributes
    ----------
    consumer, provider
        Cluster names; the consumer gets a virtual node standing for the provider.
    reasons
        Why the link exists, as ``kind`` or ``kind:name`` (``mesh:pdc-config``,
        ``offload:test``, ``backup:area-1``); a link serving several purposes lists them all.
    out_of_band
        Always ``True``: the thesis peers out-of-band (``liqoctl peer out-of-band``), so the
        provider's API server and auth service are reachable from the consumer.
    """

    consumer: str
    provider: str
    reasons: tuple[str, ...]
    out_of_band: bool = True

    @property
    def pair(self) -> frozenset[str]:
        """The unordered pair of clusters (a full mesh needs one link per pair)."""
        return frozenset((self.consumer, self.provider))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The reasons' kinds (``mesh:pdc-config`` -> ``mesh``)."""
        return tuple(dict.fromkeys(r.split(":", 1)[0] for r in self.reasons))


@dataclass(frozen=True)
class ClusterCidrs:
    """A cluster's pod and service CIDRs and where each came from (``file`` or ``auto``)."""

    cluster: str
    pod: ipaddress.IPv4Network
    service: ipaddress.IPv4Network
    pod_source: Literal["file", "auto"]
    service_source: Literal["file", "auto"]


@dataclass(frozen=True)
class OffloadPlan:
    """A namespace a consumer offloads (Liqo NamespaceOffloading named ``offloading``).

    Attributes
    ----------
    namespace
        The namespace; the providers' twin keeps the same name (``EnforceSameName``), since the
        clusters of a DB domain share one namespace.
    consumer
        The cluster that owns the namespace and deploys into it.
    providers
        The clusters the namespace reaches, in env order.
    pod_strategy
        Liqo's ``podOffloadingStrategy``.
    cluster_selector
        ``clusterSelector.nodeSelectorTerms`` on the providers' cluster labels (empty: every peer).
    index
        Position of the entry in the env file's ``offloading`` list.
    """

    namespace: str
    consumer: str
    providers: tuple[str, ...]
    pod_strategy: str
    cluster_selector: tuple[Mapping[str, Any], ...]
    index: int
    mapping_strategy: str = "EnforceSameName"


@dataclass(frozen=True)
class VirtualNode:
    """The node that stands for ``provider`` inside ``consumer`` (named ``liqo-<provider>``)."""

    consumer: str
    provider: str
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Plan:
    """Everything both backends need to build an env's topology, derived by :func:`labkit.topology.plan`.

    Attributes
    ----------
    env
        The env the plan was derived from.
    peerings
        Every peering, star links first (in cluster order), then mesh and other links.
    cidrs
        Each cluster's CIDRs by name.
    cluster_labels
        Labels each cluster advertises (its virtual nodes in consumers carry them).
    node_labels
        Labels of each physical node: ``node_labels[cluster][node]``.
    offloads
        The offloaded namespaces, in env order.
    virtual_nodes_per_cluster
        How many virtual nodes each cluster holds as a consumer.
    """

    env: Env
    peerings: tuple[Link, ...]
    cidrs: Mapping[str, ClusterCidrs]
    cluster_labels: Mapping[str, Mapping[str, str]]
    node_labels: Mapping[str, Mapping[str, Mapping[str, str]]]
    offloads: tuple[OffloadPlan, ...]
    virtual_nodes_per_cluster: Mapping[str, int] = field(default_factory=dict)

    @cached_property
    def virtual_nodes(self) -> tuple[VirtualNode, ...]:
        """One virtual node per peering, in the consumer, carrying the provider's cluster labels (Liqo's too)."""
        from labkit.topology.labels import virtual_node_labels

        shared = {name: MappingProxyType(virtual_node_labels(self.cluster_labels[name], name))
                  for name in {link.provider for link in self.peerings}}
        return tuple(VirtualNode(consumer=link.consumer, provider=link.provider, name=f"liqo-{link.provider}",
                                 labels=shared[link.provider]) for link in self.peerings)

    def providers(self, consumer: str) -> list[str]:
        """Clusters ``consumer`` peers with as a consumer, in plan order."""
        return [link.provider for link in self.peerings if link.consumer == consumer]

    def consumers(self, provider: str) -> list[str]:
        """Clusters that consume ``provider``."""
        return [link.consumer for link in self.peerings if link.provider == provider]

    def links(self, kind: str) -> list[Link]:
        """Links with a reason of ``kind`` (``star``, ``mesh``, ...)."""
        return [link for link in self.peerings if kind in link.kinds]

    def nodes_per_cluster(self) -> dict[str, int]:
        """Physical + virtual nodes per cluster (what Kubernetes' 5,000-node limit bounds)."""
        return {c.name: len(c.nodes) + self.virtual_nodes_per_cluster.get(c.name, 0) for c in self.env.clusters}

    def namespaces(self, cluster: str) -> list[str]:
        """Namespaces present in ``cluster`` through offloading (its own and its twins)."""
        return [o.namespace for o in self.offloads if o.consumer == cluster or cluster in o.providers]

    def affinity(self, placement: Placement) -> dict[str, Any] | None:
        """``{"nodeAffinity": ...}`` placing a workload as ``placement`` says (``None`` if unconstrained)."""
        from labkit.topology.labels import node_affinity

        node = node_affinity(self.env, placement)
        return {"nodeAffinity": node} if node else None

    def graph(self) -> nx.DiGraph:
        """The peering graph: nodes are clusters (with ``role``), edges consumer -> provider (with ``reasons``)."""
        graph = nx.DiGraph()
        for cluster in self.env.clusters:
            graph.add_node(cluster.name, role=cluster.role, parent=cluster.parent)
        for link in self.peerings:
            graph.add_edge(link.consumer, link.provider, reasons=link.reasons, kinds=link.kinds)
        return graph
