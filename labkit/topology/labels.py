"""The label vocabulary of the model (thesis 5.2) and the nodeAffinity built on it.

Every cluster advertises *cluster labels* that say where it sits in the logical topology.
Its physical nodes carry them, and so do the virtual nodes that represent it in every
consumer (Liqo copies a provider's cluster labels onto its virtual node), so one
nodeAffinity term selects a group's clusters wherever the pod is scheduled.

================================================  =============================================
label                                             meaning
================================================  =============================================
``topology.labkit.io/cluster=<name>``             the cluster
``topology.labkit.io/role=acc|primary|secondary`` Area Control Center or station kind
``topology.labkit.io/parent=<primary>``           the primary a secondary is under (6.2)
``group.topology.labkit.io/<group>=<value>``      independent group membership (Fig. 5.2);
                                                  value ``member``, or ``main``/``backup``
                                                  when the group has a main station (6.2)
``hierarchy.topology.labkit.io/<h>=<group>``      dependent group of hierarchy ``h`` (Fig. 5.3)
``db.topology.labkit.io/<db-domain>=member``      member of a DB domain (full mesh inside)
``liqo.io/type=virtual-node``                     Liqo: set on virtual nodes only
``liqo.io/remote-cluster-id=<provider>``          Liqo: the provider a virtual node stands for
================================================  =============================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from labkit.config import Cluster, Env, Placement

PREFIX = "topology.labkit.io"
CLUSTER = f"{PREFIX}/cluster"
ROLE = f"{PREFIX}/role"
PARENT = f"{PREFIX}/parent"
NODE = f"{PREFIX}/node"
GROUP_PREFIX = f"group.{PREFIX}"
HIERARCHY_PREFIX = f"hierarchy.{PREFIX}"
DB_PREFIX = f"db.{PREFIX}"
LIQO_TYPE = "liqo.io/type"
LIQO_VIRTUAL_NODE = "virtual-node"
LIQO_REMOTE_CLUSTER_ID = "liqo.io/remote-cluster-id"

#: Weight of the first preferred cluster; later preferences get less (never below 1).
PREFERRED_WEIGHT = 100


#: Keys derived by the model; an env file may not set them.
RESERVED_KEYS = frozenset({CLUSTER, ROLE, PARENT, NODE, LIQO_TYPE, LIQO_REMOTE_CLUSTER_ID})
RESERVED_PREFIXES = (f"{GROUP_PREFIX}/", f"{HIERARCHY_PREFIX}/", f"{DB_PREFIX}/")


def is_reserved(key: str) -> bool:
    """Whether ``key`` is one the model derives (see the table above)."""
    return key in RESERVED_KEYS or key.startswith(RESERVED_PREFIXES)


def group_key(group: str) -> str:
    """Label key of an independent group (``group.topology.labkit.io/<group>``)."""
    return f"{GROUP_PREFIX}/{group}"


def hierarchy_key(hierarchy: str) -> str:
    """Label key of a hierarchy of dependent groups (``hierarchy.topology.labkit.io/<h>``)."""
    return f"{HIERARCHY_PREFIX}/{hierarchy}"


def db_key(domain: str) -> str:
    """Label key of a DB domain (``db.topology.labkit.io/<domain>``)."""
    return f"{DB_PREFIX}/{domain}"


def cluster_labels(env: Env) -> dict[str, dict[str, str]]:
    """The labels every cluster advertises, by cluster name.

    The file's own cluster labels come first; the vocabulary's keys are derived from the
    roles, groups and DB domains and win on conflict.
    """
    out = {c.name: {**c.labels, **_own_labels(c)} for c in env.clusters}
    for group in env.groups:
        for member in group.members:
            if group.hierarchy is not None:
                out[member][hierarchy_key(group.hierarchy)] = group.name
            else:
                out[member][group_key(group.name)] = _group_value(member, group.main)
    for domain in env.db_domains:
        for member in domain.members:
            out[member][db_key(domain.name)] = "member"
    return out


def _own_labels(cluster: Cluster) -> dict[str, str]:
    """Labels a cluster gets from its own fields."""
    own = {CLUSTER: cluster.name, ROLE: cluster.role}
    if cluster.parent is not None:
        own[PARENT] = cluster.parent
    return own


def _group_value(member: str, main: str | None) -> str:
    """``member``, or ``main``/``backup`` in a group that has a main station."""
    if main is None:
        return "member"
    return "main" if member == main else "backup"


def node_labels(env: Env, clusters: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, dict[str, str]]]:
    """Labels of every physical node: its cluster's labels, its own, and ``topology.labkit.io/node``."""
    return {c.name: {n.name: {**n.labels, **clusters[c.name], NODE: n.name} for n in c.nodes}
            for c in env.clusters}


def virtual_node_labels(provider_labels: Mapping[str, str], provider: str) -> dict[str, str]:
    """Labels of the virtual node that stands for ``provider`` in a consumer (Liqo's + the provider's)."""
    return {**provider_labels, LIQO_TYPE: LIQO_VIRTUAL_NODE, LIQO_REMOTE_CLUSTER_ID: provider}


# --------------------------------------------------------------------------- selectors


def _expr(key: str, operator: str, values: Sequence[str] = ()) -> dict[str, Any]:
    """One node-selector requirement in Kubernetes' JSON shape."""
    out: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        out["values"] = list(values)
    return out


def selector_terms(env: Env, clusters: Iterable[str] = (), groups: Iterable[str] = (),
                   domains: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Node-selector terms (ORed) matching the named clusters, groups and DB domains.

    Parameters
    ----------
    env
        The env that defines the groups (a dependent group is matched through its hierarchy).
    clusters, groups, domains
        Names to match; a node matching any of them matches.

    Returns
    -------
    list of dict
        ``nodeSelectorTerms`` entries; empty when nothing is named (no constraint).
    """
    by_name = {g.name: g for g in env.groups}
    terms = []
    for name in groups:
        group = by_name[name]
        if group.hierarchy is not None:
            terms.append({"matchExpressions": [_expr(hierarchy_key(group.hierarchy), "In", [name])]})
        else:
            terms.append({"matchExpressions": [_expr(group_key(name), "Exists")]})
    terms += [{"matchExpressions": [_expr(db_key(name), "Exists")]} for name in domains]
    names = list(clusters)
    if names:
        terms.append({"matchExpressions": [_expr(CLUSTER, "In", names)]})
    return terms


def preferred_clusters(env: Env, placement: Placement) -> list[str]:
    """Clusters in order of preference: ``prefer``, else the main then backups of a required group."""
    if placement.prefer:
        return list(placement.prefer)
    by_name = {g.name: g for g in env.groups}
    order: list[str] = []
    for name in placement.groups:
        group = by_name[name]
        if group.main is not None:
            order += [group.main] + [m for m in group.members if m != group.main]
    return list(dict.fromkeys(order))


def node_affinity(env: Env, placement: Placement) -> dict[str, Any] | None:
    """The nodeAffinity (required and preferred) that places a workload as ``placement`` says.

    Required: any of the placement's clusters, groups or DB domains. Preferred: the clusters of
    :func:`preferred_clusters`, weights 100, 90, 80, ... (at least 1), so the scheduler picks
    the main station while it is there and a backup otherwise.

    Returns
    -------
    dict or None
        A ``V1NodeAffinity``-shaped mapping, or ``None`` when the placement is empty.
    """
    out: dict[str, Any] = {}
    terms = selector_terms(env, placement.clusters, placement.groups, placement.domains)
    if terms:
        out["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    preferred = [{"weight": max(1, PREFERRED_WEIGHT - 10 * i),
                  "preference": {"matchExpressions": [_expr(CLUSTER, "In", [name])]}}
                 for i, name in enumerate(preferred_clusters(env, placement))]
    if preferred:
        out["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return out or None


def liqoctl_selectors(terms: Sequence[Mapping[str, Any]]) -> list[str]:
    """Node-selector terms as ``liqoctl offload namespace --selector`` strings (one per term, ORed)."""
    out = []
    for term in terms:
        parts = []
        for req in term["matchExpressions"]:
            if req["operator"] == "Exists":
                parts.append(req["key"])
            else:
                parts.append(f"{req['key']} {req['operator'].lower()} ({','.join(req['values'])})")
        out.append(",".join(parts))
    return out


def matches(labels: Mapping[str, str], terms: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``labels`` satisfy node-selector ``terms`` (ORed terms, ANDed requirements).

    Empty ``terms`` match everything. Supports ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``.
    """
    if not terms:
        return True
    return any(all(_req_matches(labels, req) for req in term["matchExpressions"]) for term in terms)


def _req_matches(labels: Mapping[str, str], req: Mapping[str, Any]) -> bool:
    """One node-selector requirement against ``labels``."""
    key, op = req["key"], req["operator"]
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op == "In":
        return labels.get(key) in req["values"]
    if op == "NotIn":
        return labels.get(key) not in req["values"]
    raise ValueError(f"unsupported node-selector operator {op!r}")
