"""``plan(env)``: one entry point from a validated env to the :class:`~labkit.topology.model.Plan`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from types import MappingProxyType

from labkit.config import ConfigError, Env, Problem
from labkit.topology import cidr, labels, peering, validate
from labkit.topology.model import MAX_NODES_PER_CLUSTER, Link, OffloadPlan, Plan


def plan(env: Env, max_nodes: int = MAX_NODES_PER_CLUSTER) -> Plan:
    """Derive and validate the plan of an env: peerings, CIDRs, labels, offloads, virtual nodes.

    Parameters
    ----------
    env
        An env loaded by :func:`labkit.config.load_env` (names already resolved).
    max_nodes
        Nodes a cluster may hold (Kubernetes documents 5,000).

    Returns
    -------
    Plan
        The backend-neutral plan the drivers consume.

    Raises
    ------
    ConfigError
        Listing every broken rule with the path of the field at fault
        (``db_domains[0] (pdc-config)``, ``offloading[1]``, ``clusters[0] (root)``).
    """
    _raise(env, validate.dependent_groups(env) + validate.multi_level(env) + validate.reserved_labels(env)
           + validate.duplicate_peerings(env))
    links = peering.derive(env) if env.peerings is None else peering.explicit(env)
    offloads = resolve_offloads(env, links)
    cidrs, problems = cidr.plan_cidrs(env, links)
    _raise(env, problems)
    advertised = labels.cluster_labels(env)
    virtual = Counter(link.consumer for link in links)
    checks: list[Callable[[], list[Problem]]] = [
        lambda: validate.empty_offloads(offloads),
        lambda: validate.offloaded_twice(offloads),
        lambda: validate.reoffloading(offloads),
        lambda: validate.circular_offloading(offloads),
        lambda: validate.offloads_peered(offloads, links),
        lambda: validate.db_full_mesh(env, links),
        lambda: validate.db_namespaces(env, offloads),
        lambda: validate.db_cidrs(env, cidrs, links),
        lambda: validate.cluster_cidrs(env, cidrs),
        lambda: validate.node_limit(env, virtual, max_nodes),
        lambda: validate.placements(env, offloads, advertised),
    ]
    _raise(env, [p for check in checks for p in check()])
    return Plan(
        env=env,
        peerings=links,
        cidrs=MappingProxyType(cidrs),
        cluster_labels=MappingProxyType(advertised),
        node_labels=MappingProxyType(labels.node_labels(env, advertised)),
        offloads=offloads,
        virtual_nodes_per_cluster=MappingProxyType({c.name: virtual.get(c.name, 0) for c in env.clusters}),
    )


def resolve_offloads(env: Env, links: Sequence[Link]) -> tuple[OffloadPlan, ...]:
    """Each offloading entry with its providers and Liqo cluster selector.

    An entry that names no cluster and no group reaches every cluster its consumer peers with.
    """
    providers: dict[str, list[str]] = {}
    for link in links:
        providers.setdefault(link.consumer, []).append(link.provider)
    out = []
    for i, offload in enumerate(env.offloading):
        named = peering.named_targets(env, offload)
        targets = named if (offload.clusters or offload.groups) else providers.get(offload.consumer, [])
        selector = labels.selector_terms(env, offload.clusters, offload.groups)
        out.append(OffloadPlan(namespace=offload.namespace, consumer=offload.consumer, providers=tuple(targets),
                               pod_strategy=offload.pod_strategy, cluster_selector=tuple(selector), index=i))
    return tuple(out)


def _raise(env: Env, problems: list[Problem]) -> None:
    """Raise one :class:`ConfigError` naming the env when there are problems."""
    if problems:
        raise ConfigError(problems, source=f"env {env.name!r}")
