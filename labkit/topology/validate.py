"""Semantic validation of a topology: the rules a plan must satisfy, each naming the bad field.

Every rule is a small function returning :class:`~labkit.config.Problem` objects;
:func:`labkit.topology.plan` runs them all and raises one :class:`~labkit.config.ConfigError`.
Unknown names are already refused when the env file loads (``labkit.config``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import networkx as nx

from labkit.config import EmbeddedBackend, Env, Placement, Problem
from labkit.topology import labels
from labkit.topology.cidr import domain_views, span, spans_overlap
from labkit.topology.model import MAX_NODES_PER_CLUSTER, ClusterCidrs, Link, OffloadPlan


def _where(env: Env, kind: str, index: int) -> str:
    """``clusters[2] (leaf-2)``-style path of a named item."""
    item = getattr(env, kind)[index]
    return f"{kind}[{index}] ({item.name})"


# --------------------------------------------------------------------------- structure


def dependent_groups(env: Env) -> list[Problem]:
    """A cluster belongs to at most one group of each hierarchy (Fig. 5.3)."""
    seen: dict[tuple[str, str], str] = {}
    out = []
    for i, group in enumerate(env.groups):
        if group.hierarchy is None:
            continue
        for member in group.members:
            first = seen.setdefault((group.hierarchy, member), group.name)
            if first != group.name:
                out.append(Problem(f"{_where(env, 'groups', i)}.members",
                                   f"cluster {member!r} is already in group {first!r} of hierarchy "
                                   f"{group.hierarchy!r}: a cluster is in one group per hierarchy"))
    return out


def multi_level(env: Env) -> list[Problem]:
    """Multi-level domains: every secondary station is under a primary station (``parent``)."""
    roles = {c.name: c.role for c in env.clusters}
    out = []
    for i, cluster in enumerate(env.clusters):
        where = _where(env, "clusters", i)
        if cluster.parent is not None and roles.get(cluster.parent) != "primary":
            out.append(Problem(f"{where}.parent", f"parent {cluster.parent!r} is not a primary station "
                                                  f"(role {roles.get(cluster.parent)!r})"))
        if env.implementation == "multi-level" and cluster.role == "secondary" and cluster.parent is None:
            out.append(Problem(f"{where}.parent", "a secondary station of a multi-level env needs the primary "
                                                  "station it is under (the centre of its second star)"))
    return out


def reserved_labels(env: Env) -> list[Problem]:
    """Labels in the env file do not use keys the model derives (they would be overwritten)."""
    out = []
    for i, cluster in enumerate(env.clusters):
        out += [Problem(f"{_where(env, 'clusters', i)}.labels", _reserved_message(key))
                for key in cluster.labels if labels.is_reserved(key)]
        for j, node in enumerate(cluster.nodes):
            out += [Problem(f"{_where(env, 'clusters', i)}.nodes[{j}] ({node.name}).labels", _reserved_message(key))
                    for key in node.labels if labels.is_reserved(key)]
    return out


def _reserved_message(key: str) -> str:
    """Why ``key`` may not be set by hand."""
    return (f"label {key!r} is derived by labkit.topology (roles, groups, DB domains, Liqo); "
            f"declare the group or role instead, or pick another key")


def duplicate_peerings(env: Env) -> list[Problem]:
    """An explicit peering is listed once."""
    counts = Counter((p.consumer, p.provider) for p in env.peerings or [])
    return [Problem("peerings", f"peering {c} -> {p} is listed {k} times") for (c, p), k in counts.items() if k > 1]


# --------------------------------------------------------------------------- offloading


def empty_offloads(offloads: Sequence[OffloadPlan]) -> list[Problem]:
    """An offloaded namespace reaches at least one provider."""
    return [Problem(f"offloading[{o.index}]", f"namespace {o.namespace!r} of {o.consumer!r} reaches no cluster: "
                                              f"it names none and {o.consumer!r} peers with none")
            for o in offloads if not o.providers]


def offloaded_twice(offloads: Sequence[OffloadPlan]) -> list[Problem]:
    """A namespace is offloaded by one entry, and reaches a provider from one consumer only."""
    out = []
    owner: dict[tuple[str, str], OffloadPlan] = {}
    for o in offloads:
        first = owner.setdefault((o.consumer, o.namespace), o)
        if first is not o:
            out.append(Problem(f"offloading[{o.index}]", f"namespace {o.namespace!r} of {o.consumer!r} is offloaded "
                                                         f"twice (also offloading[{first.index}]): merge the entries"))
    reached: dict[tuple[str, str], OffloadPlan] = {}
    for o in offloads:
        for provider in o.providers:
            first = reached.setdefault((o.namespace, provider), o)
            if first.consumer != o.consumer:
                out.append(Problem(f"offloading[{o.index}]",
                                   f"namespace {o.namespace!r} would reach {provider!r} from both {first.consumer!r} "
                                   f"(offloading[{first.index}]) and {o.consumer!r}: one namespace, one owner"))
    return out


def reoffloading(offloads: Sequence[OffloadPlan]) -> list[Problem]:
    """A cluster does not offload a namespace it received by offloading (Liqo refuses it)."""
    received = {(o.namespace, p): o for o in offloads for p in o.providers}
    out = []
    for o in offloads:
        origin = received.get((o.namespace, o.consumer))
        if origin is not None:
            out.append(Problem(f"offloading[{o.index}]",
                               f"{o.consumer!r} cannot offload namespace {o.namespace!r}: it is itself offloaded there "
                               f"by {origin.consumer!r} (offloading[{origin.index}]) and Liqo does not re-offload an "
                               f"offloaded namespace; multi-level domains need one namespace per level "
                               f"(e.g. {o.namespace + '-' + o.consumer!r})"))
    return out


def circular_offloading(offloads: Sequence[OffloadPlan]) -> list[Problem]:
    """Offloading forms a hierarchy: no cluster offloads, directly or not, to one that offloads to it."""
    graph = nx.DiGraph()
    index: dict[tuple[str, str], int] = {}
    for o in offloads:
        for provider in o.providers:
            graph.add_edge(o.consumer, provider)
            index.setdefault((o.consumer, provider), o.index)
    out = []
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = nx.find_cycle(graph.subgraph(component))
        chain = " -> ".join([cycle[0][0]] + [v for _, v in cycle])
        entries = ", ".join(f"offloading[{index[e]}]" for e in cycle)
        out.append(Problem(f"offloading[{min(index[e] for e in cycle)}]",
                           f"circular offloading {chain} ({entries}): deployments must flow one way, "
                           f"from the ACC down"))
    return out


def offloads_peered(offloads: Sequence[OffloadPlan], links: Sequence[Link]) -> list[Problem]:
    """Every provider an offload names is peered by its consumer."""
    peered = {(link.consumer, link.provider) for link in links}
    return [Problem(f"offloading[{o.index}]", f"{o.consumer!r} offloads {o.namespace!r} to {p!r} but does not peer "
                                              f"with it (add a peering {o.consumer} -> {p})")
            for o in offloads for p in o.providers if (o.consumer, p) not in peered]


# --------------------------------------------------------------------------- DB domains


def db_full_mesh(env: Env, links: Sequence[Link]) -> list[Problem]:
    """Every pair of a DB domain's members is joined by a peering (in either direction)."""
    pairs = {link.pair for link in links}
    out = []
    for i, domain in enumerate(env.db_domains):
        members = list(dict.fromkeys(domain.members))
        missing = [f"{a}-{b}" for j, a in enumerate(members) for b in members[j + 1:]
                   if frozenset((a, b)) not in pairs]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            out.append(Problem(_where(env, "db_domains", i),
                               f"no full mesh: {len(missing)} pair(s) without a peering ({shown}); a DB domain of "
                               f"{len(members)} clusters needs {len(members) * (len(members) - 1) // 2} (eq. 5.1)"))
    return out


def db_namespaces(env: Env, offloads: Sequence[OffloadPlan]) -> list[Problem]:
    """A DB domain's namespace exists in every member (owned or offloaded there)."""
    present = {(o.namespace, o.consumer) for o in offloads} | {(o.namespace, p) for o in offloads for p in o.providers}
    out = []
    for i, domain in enumerate(env.db_domains):
        absent = [m for m in domain.members if (domain.namespace, m) not in present]
        if absent:
            out.append(Problem(f"{_where(env, 'db_domains', i)}.namespace",
                               f"namespace {domain.namespace!r} is not offloaded to member(s) {absent}: "
                               f"the database cannot run there"))
    return out


def db_cidrs(env: Env, cidrs: Mapping[str, ClusterCidrs], links: Sequence[Link] = ()) -> list[Problem]:
    """A DB domain's clusters tell each other apart without NAT (:func:`~.cidr.domain_views`).

    Inside the domain (its members and the owner of its namespace) no cluster's pod CIDR
    overlaps another's pod or service CIDR, and no cluster one of them peers with overlaps the
    pod CIDR of another of them.
    """
    spans = {name: (span(c.pod), span(c.service)) for name, c in cidrs.items()}
    out = []
    for i, (domain, clusters, seen) in enumerate(domain_views(env, links)):
        members = [m for m in clusters if m in spans]
        if not _disjoint(members, spans):
            for j, a in enumerate(members):
                for b in members[j + 1:]:
                    clash = _clash(cidrs[a], cidrs[b], spans) or _clash(cidrs[b], cidrs[a], spans)
                    if clash:
                        out.append(Problem(_where(env, "db_domains", i), clash))
        for via, others in seen.items():
            for other in sorted(o for o in others if o in spans):
                for member in members:
                    if member != via and spans_overlap(spans[other][0], spans[member][0]):
                        out.append(Problem(_where(env, "db_domains", i),
                                           f"pod CIDR of {other} {cidrs[other].pod}, a peer of {via}, overlaps "
                                           f"{member}'s {cidrs[member].pod}: {via} would reach one of them through "
                                           f"NAT, while a member advertises its real address"))
    return out


Spans = Mapping[str, tuple[tuple[int, int], tuple[int, int]]]


def _disjoint(members: Sequence[str], spans: Spans) -> bool:
    """Fast check (sort + sweep) that no member's pod span meets another's pod or service span."""
    pods = sorted((spans[m][0], m) for m in members)
    for (previous, _), (current, _) in zip(pods, pods[1:]):
        if current[0] <= previous[1]:
            return False
    services: dict[tuple[int, int], set[str]] = {}
    for m in members:
        services.setdefault(spans[m][1], set()).add(m)
    return not any(spans_overlap(pod, service) and owners != {m}
                   for pod, m in pods for service, owners in services.items())


def _clash(a: ClusterCidrs, b: ClusterCidrs, spans: Spans) -> str | None:
    """Why ``a``'s pod CIDR collides with ``b``'s pod or service CIDR (``None`` if not)."""
    (a_pod, _), (b_pod, b_service) = spans[a.cluster], spans[b.cluster]
    if spans_overlap(a_pod, b_pod):
        return (f"overlapping pod CIDRs {a.cluster} {a.pod} and {b.cluster} {b.pod}: the clusters of a DB domain "
                f"need distinct CIDRs, and so does the owner of its namespace (Liqo's NAT remapping breaks "
                f"the database's headless service)")
    if spans_overlap(a_pod, b_service):
        return f"pod CIDR of {a.cluster} {a.pod} overlaps the service CIDR of {b.cluster} {b.service}"
    return None


def cluster_cidrs(env: Env, cidrs: Mapping[str, ClusterCidrs]) -> list[Problem]:
    """A cluster's pod CIDR misses its service CIDR and the lab network."""
    lab = env.backend.lab_cidr if isinstance(env.backend, EmbeddedBackend) else None
    out = []
    for i, cluster in enumerate(env.clusters):
        c = cidrs[cluster.name]
        where = f"{_where(env, 'clusters', i)}.pod_cidr"
        if c.pod.overlaps(c.service):
            out.append(Problem(where, f"{c.pod} overlaps the cluster's service CIDR {c.service}"))
        if lab is not None and c.pod.overlaps(lab):
            out.append(Problem(where, f"{c.pod} overlaps the lab network backend.lab_cidr {lab}"))
    return out


# --------------------------------------------------------------------------- scale and workload


def node_limit(env: Env, virtual: Mapping[str, int], limit: int = MAX_NODES_PER_CLUSTER) -> list[Problem]:
    """No cluster holds more nodes (physical + one virtual per peering) than Kubernetes supports."""
    out = []
    for i, cluster in enumerate(env.clusters):
        physical, extra = len(cluster.nodes), virtual.get(cluster.name, 0)
        if physical + extra > limit:
            out.append(Problem(_where(env, "clusters", i),
                               f"{physical + extra:,} nodes ({physical:,} physical + {extra:,} virtual, one per "
                               f"peering) exceed Kubernetes' limit of {limit:,} nodes per cluster"))
    return out


def placements(env: Env, offloads: Sequence[OffloadPlan],
               cluster_labels: Mapping[str, Mapping[str, str]]) -> list[Problem]:
    """Every PMU and PDC can be placed: its namespace reaches a cluster its placement selects."""
    out = []
    for kind, items in (("pmus", env.grid.pmus), ("pdcs", env.grid.pdcs)):
        for i, item in enumerate(items):
            namespace = item.namespace or env.grid.namespace
            hosts = _hosts(offloads, namespace)
            chosen = [h for h in hosts if _selects(env, item.placement, cluster_labels[h])]
            if not chosen:
                where = f"grid.{kind}[{i}] ({item.name}).placement"
                why = f"hosts {hosts}" if hosts else "is not offloaded anywhere"
                out.append(Problem(where, f"selects no cluster where namespace {namespace!r} runs pods "
                                          f"(the namespace {why})"))
    return out


def _hosts(offloads: Sequence[OffloadPlan], namespace: str) -> list[str]:
    """Clusters where pods of ``namespace`` may run (providers, and the consumer unless ``Remote``)."""
    out: list[str] = []
    for o in offloads:
        if o.namespace == namespace:
            out += ([] if o.pod_strategy == "Remote" else [o.consumer]) + list(o.providers)
    return list(dict.fromkeys(out))


def _selects(env: Env, placement: Placement, cluster_labels: Mapping[str, str]) -> bool:
    """Whether a placement's required terms select a cluster with these labels."""
    terms = labels.selector_terms(env, placement.clusters, placement.groups, placement.domains)
    return labels.matches(cluster_labels, terms)

