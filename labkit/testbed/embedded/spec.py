"""The plain input of the embedded testbed: clusters of VMs, CIDRs and the timers (``labkit.config.Tuning``).

``labkit.topology`` turns an env file into these; tests build them by hand.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from labkit.config import Env, Tuning
from labkit.testbed.liqoctl import PEERINGS, peering_setting
from labkit.topology import Plan

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
#: flannel backends the embedded test bed programs (k3s' ``--flannel-backend``; :mod:`.flannel`).
FLANNEL_BACKENDS = ("vxlan", "host-gw")
class SpecError(ValueError):
    """An embedded testbed spec is inconsistent; the message names the field."""


@dataclass(frozen=True)
class VmSpec:
    """One VM (= one Kubernetes node).

    Attributes
    ----------
    name
        DNS label, unique across the whole env; also the node name.
    labels
        Node labels (e.g. ``{"topology.labkit.io/station": "primary"}``).
    """

    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterSpec:
    """One Kubernetes cluster; its first VM is the root VM that runs etcd and the control plane.

    Attributes
    ----------
    name
        DNS label.
    vms
        Its VMs (one node each), at least one.
    pod_cidr, service_cidr
        Distinct per cluster when clusters are peered; each VM gets the next /24 of ``pod_cidr``.
    flannel_backend
        How pods of different VMs reach each other (:mod:`.flannel`): ``vxlan``, k3s' default
        (flannel's VXLAN data path), or ``host-gw`` (plain routes via the VMs' lab addresses).
    """

    name: str
    vms: tuple[VmSpec, ...]
    pod_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    flannel_backend: str = "vxlan"

    def pod_subnets(self) -> dict[str, str]:
        """The /24 of ``pod_cidr`` each VM's pods get."""
        subnets = ipaddress.ip_network(self.pod_cidr).subnets(new_prefix=24)
        return {vm.name: str(next(subnets)) for vm in self.vms}

    def service_ip(self, offset: int) -> str:
        """The ``offset``-th address of the service CIDR (1: ``kubernetes``, 10: DNS)."""
        return str(ipaddress.ip_network(self.service_cidr).network_address + offset)


@dataclass(frozen=True)
class OffloadSpec:
    """A namespace a consumer offloads (Liqo's NamespaceOffloading ``offloading``).

    Attributes
    ----------
    namespace, consumer
        The namespace and the cluster that owns it.
    strategy, mapping
        Liqo's ``podOffloadingStrategy`` and ``namespaceMappingStrategy``.
    cluster_selector
        ``clusterSelector.nodeSelectorTerms`` over the providers' cluster labels (empty: every peer).
    """

    namespace: str
    consumer: str
    strategy: str = "LocalAndRemote"
    mapping: str = "EnforceSameName"
    cluster_selector: tuple[dict, ...] = ()


@dataclass(frozen=True)
class EmbeddedEnv:
    """Everything :meth:`EmbeddedTestbed.up` needs.

    Attributes
    ----------
    clusters
        The clusters and their VMs.
    tuning
        Kubernetes' and Liqo's timers.
    dns
        Deploy CoreDNS in every cluster.
    peerings
        ``(consumer, provider)`` pairs to peer once the clusters are Ready (unidirectional).
    cluster_labels
        Labels each cluster advertises on its virtual nodes (``labkit.topology``'s cluster labels).
    offloads
        Namespaces to offload once peered.
    peering
        Who peers: ``liqo`` (the thesis' Liqo, built by setup, driven with liqoctl) or ``kit``
        (the kit's look-alike, the fallback without Liqo's source); see :data:`PEERINGS`.
    liqo_version
        The Liqo that ``liqo`` runs.
    """

    clusters: tuple[ClusterSpec, ...]
    tuning: Tuning = field(default_factory=Tuning)
    dns: bool = True
    peerings: tuple[tuple[str, str], ...] = ()
    cluster_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    offloads: tuple[OffloadSpec, ...] = ()
    peering: str = "liqo"
    liqo_version: str = "v0.10.2"

    def __post_init__(self) -> None:
        validate(self)


def validate(env: EmbeddedEnv) -> None:
    """Check names and CIDRs.

    Raises
    ------
    SpecError
        On a bad or duplicate name, a bad CIDR, or overlapping pod/service CIDRs within a cluster.
    """
    if not env.clusters:
        raise SpecError("clusters: at least one cluster is needed")
    seen: set[str] = set()
    for cluster in env.clusters:
        if not _DNS_LABEL.match(cluster.name):
            raise SpecError(f"clusters[{cluster.name!r}].name must be a DNS label of at most 40 characters")
        if not cluster.vms:
            raise SpecError(f"clusters[{cluster.name!r}].vms: at least one VM is needed")
        try:
            pods = ipaddress.ip_network(cluster.pod_cidr)
            services = ipaddress.ip_network(cluster.service_cidr)
        except ValueError as exc:
            raise SpecError(f"clusters[{cluster.name!r}]: {exc}") from exc
        if pods.overlaps(services):
            raise SpecError(f"clusters[{cluster.name!r}]: pod_cidr {pods} overlaps service_cidr {services}")
        if pods.prefixlen > 24 - max(1, len(cluster.vms) - 1).bit_length():
            raise SpecError(f"clusters[{cluster.name!r}].pod_cidr {pods} has no /24 for each of its VMs")
        if cluster.flannel_backend not in FLANNEL_BACKENDS:
            raise SpecError(f"clusters[{cluster.name!r}].flannel_backend {cluster.flannel_backend!r}: "
                            f"expected one of {', '.join(FLANNEL_BACKENDS)}")
        for vm in cluster.vms:
            if not _DNS_LABEL.match(vm.name):
                raise SpecError(f"VM name {vm.name!r} must be a DNS label of at most 40 characters")
            if vm.name in seen:
                raise SpecError(f"VM name {vm.name!r} is used twice")
            seen.add(vm.name)
    if env.peering not in PEERINGS:
        raise SpecError(f"peering {env.peering!r}: one of {', '.join(f'{k} ({v})' for k, v in PEERINGS.items())}")
    names = {c.name for c in env.clusters}
    for consumer, provider in env.peerings:
        if consumer not in names or provider not in names or consumer == provider:
            raise SpecError(f"peerings: ({consumer!r}, {provider!r}) must name two different clusters of {sorted(names)}")
    for off in env.offloads:
        if off.consumer not in names:
            raise SpecError(f"offloads[{off.namespace!r}].consumer {off.consumer!r} is not a cluster")


def from_env(env: Env) -> EmbeddedEnv:
    """The embedded spec of an env: its clusters and VMs, with the topology's CIDRs, labels, peerings and offloads."""
    from labkit.topology import plan

    return from_plan(plan(env))


def from_plan(topo: Plan) -> EmbeddedEnv:
    """The embedded spec of a topology plan (:func:`labkit.topology.plan`): what ``up()`` builds of its env."""
    env = topo.env
    clusters = tuple(
        ClusterSpec(
            name=c.name,
            vms=tuple(VmSpec(n.name, dict(topo.node_labels[c.name][n.name])) for n in c.nodes),
            pod_cidr=str(topo.cidrs[c.name].pod),
            service_cidr=str(topo.cidrs[c.name].service),
        )
        for c in env.clusters
    )
    offloads = tuple(OffloadSpec(o.namespace, o.consumer, o.pod_strategy, o.mapping_strategy,
                                 tuple(dict(t) for t in o.cluster_selector)) for o in topo.offloads)
    return EmbeddedEnv(clusters=clusters, tuning=env.tuning,
                       peerings=tuple((v.consumer, v.provider) for v in topo.virtual_nodes),
                       cluster_labels={k: dict(v) for k, v in topo.cluster_labels.items()}, offloads=offloads,
                       peering=peering_setting(env), liqo_version=getattr(env.backend, "liqo_version", "v0.10.2"))
