"""The CIDR plan: a pod and a service CIDR for every cluster.

The clusters of a DB domain need distinct pod CIDRs: Liqo remaps colliding ranges with NAT, and
a clustered database that advertises its own pod IP then breaks (thesis 4.2, Liqo issue 2386).
So does the owner of the domain's namespace, and no cluster peered with one of them may share
another member's range (:func:`domain_views`). Where a file gives no CIDR, one is allocated from
``env.addressing``:

* logical domains (6.1): every cluster gets its own pod CIDR (the thesis' stated limit);
* multi-level domains (6.2): pod CIDRs differ where :func:`conflicts` says so and are reused
  elsewhere (a greedy colouring of that graph).

Blocks are ``addressing.pod_prefix`` wide (``/16``, k3s' size) and shrink, down to ``/24``,
until the pool holds them all. Every cluster without a service CIDR gets the shared
``addressing.service_cidr``.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping

from labkit.config import DbDomain, EmbeddedBackend, Env, Problem
from labkit.topology.model import ClusterCidrs, Link

Network = ipaddress.IPv4Network
SMALLEST_BLOCK = 24


def span(net: Network) -> tuple[int, int]:
    """First and last address of ``net`` as integers (overlap tests on ints are fast)."""
    first = int(net.network_address)
    return first, first + net.num_addresses - 1


def spans_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two address spans share an address."""
    return a[0] <= b[1] and b[0] <= a[1]


class CidrExhausted(Exception):
    """The pod pool cannot hold the blocks at this prefix."""


def domain_clusters(env: Env, domain: DbDomain) -> list[str]:
    """The clusters a DB domain spans: its members and the owner of its namespace.

    The members find each other through a headless Service whose endpoints every member reads
    as the owner sees them (Liqo reflects them from the owner, the consumer that offloads the
    namespace), so the owner's view of the members' addresses matters as much as theirs.
    """
    owners = [o.consumer for o in env.offloading if o.namespace == domain.namespace]
    return list(dict.fromkeys([*domain.members, *owners]))


def neighbours(links: Iterable[Link]) -> dict[str, set[str]]:
    """The clusters each cluster peers with, in either direction (each has a tunnel to the other)."""
    out: dict[str, set[str]] = defaultdict(set)
    for link in links:
        out[link.consumer].add(link.provider)
        out[link.provider].add(link.consumer)
    return dict(out)


def domain_views(env: Env, links: Iterable[Link]) -> list[tuple[DbDomain, list[str], dict[str, set[str]]]]:
    """Per DB domain: its clusters, and for each of them the clusters its gateway routes to besides them.

    A Galera member advertises its real pod address, so every cluster of the domain must tell
    the others apart without NAT: a gateway that routes two peers of one pod CIDR remaps one of
    them, and an advertised address then reaches the wrong cluster (the first multi-level env
    had ``p-1``'s member joining ``p-2``'s ``high-1`` member at the same address).
    """
    near = neighbours(links)
    out = []
    for domain in env.db_domains:
        clusters = domain_clusters(env, domain)
        out.append((domain, clusters, {c: near.get(c, set()) - set(clusters) for c in clusters}))
    return out


def conflicts(env: Env, links: Iterable[Link]) -> dict[str, set[str]] | None:
    """Clusters whose pod CIDRs must differ from each cluster's; ``None`` means all must differ.

    Inside a DB domain's clusters (:func:`domain_clusters`), and between each of them and every
    cluster another of them peers with (:func:`domain_views`).
    """
    if env.implementation == "logical-domains":
        return None
    out: dict[str, set[str]] = defaultdict(set)
    for _, clusters, seen in domain_views(env, links):
        routed = set(clusters).union(*seen.values())
        for member in clusters:
            out[member].update(routed)
        for other in routed:
            out[other].update(clusters)
    for name, others in out.items():
        others.discard(name)
    return dict(out)


def plan_cidrs(env: Env, links: Iterable[Link] = ()) -> tuple[dict[str, ClusterCidrs], list[Problem]]:
    """Each cluster's CIDRs, allocating the missing ones (``links``: the env's peerings, :func:`conflicts`).

    Returns
    -------
    tuple
        The CIDRs by cluster name, and the problems (an exhausted pool) found while allocating.
    """
    pool = env.addressing.pod_pool
    for prefix in range(env.addressing.pod_prefix, SMALLEST_BLOCK + 1):
        if prefix < pool.prefixlen:
            continue
        try:
            pods = _allocate(env, prefix, links)
        except CidrExhausted:
            continue
        return _assemble(env, pods), []
    need = sum(1 for c in env.clusters if c.pod_cidr is None)
    problem = Problem("addressing.pod_pool", f"{pool} cannot hold distinct pod CIDRs for {need} cluster(s) even "
                                             f"as /{SMALLEST_BLOCK} blocks; give a larger pool")
    return {}, [problem]


def _blocks(pool: Network, prefix: int) -> list[tuple[int, int]]:
    """Spans of the pool's blocks of ``prefix``, in address order."""
    size = 1 << (32 - prefix)
    first = int(pool.network_address)
    return [(first + i * size, first + (i + 1) * size - 1) for i in range(pool.num_addresses // size)]


def _network(block: tuple[int, int]) -> Network:
    """The network of a block span."""
    return ipaddress.IPv4Network((block[0], 32 - (block[1] - block[0] + 1).bit_length() + 1))


def _reserved(env: Env) -> list[Network]:
    """Ranges no allocated pod CIDR may touch: the lab network and every explicit service CIDR."""
    out = [c.service_cidr for c in env.clusters if c.service_cidr is not None]
    out.append(env.addressing.service_cidr)
    if isinstance(env.backend, EmbeddedBackend):
        out.append(env.backend.lab_cidr)
    return out


def _allocate(env: Env, prefix: int, links: Iterable[Link]) -> dict[str, Network]:
    """Pod CIDRs of every cluster (explicit ones kept) with blocks of ``prefix``."""
    blocks = _blocks(env.addressing.pod_pool, prefix)
    reserved = [span(r) for r in _reserved(env)]
    explicit = {c.name: span(c.pod_cidr) for c in env.clusters if c.pod_cidr is not None}
    free = [i for i, b in enumerate(blocks) if not any(spans_overlap(b, r) for r in reserved)]
    graph = conflicts(env, list(links))
    if graph is None:
        chosen = _allocate_distinct(env, blocks, free, explicit)
    else:
        chosen = _allocate_coloured(env, blocks, free, explicit, graph)
    pods = {c.name: c.pod_cidr for c in env.clusters if c.pod_cidr is not None}
    pods.update({name: _network(blocks[i]) for name, i in chosen.items()})
    return pods


def _allocate_distinct(env: Env, blocks: list[tuple[int, int]], free: list[int],
                       explicit: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """Every cluster without a pod CIDR a block of its own, skipping blocks that touch an explicit one."""
    taken = list(explicit.values())
    usable = iter(i for i in free if not any(spans_overlap(blocks[i], t) for t in taken))
    out: dict[str, int] = {}
    for cluster in env.clusters:
        if cluster.name not in explicit:
            index = next(usable, None)
            if index is None:
                raise CidrExhausted
            out[cluster.name] = index
    return out


def _allocate_coloured(env: Env, blocks: list[tuple[int, int]], free: list[int],
                       explicit: Mapping[str, tuple[int, int]], graph: Mapping[str, set[str]]) -> dict[str, int]:
    """Greedy colouring: the first block that no DB-domain neighbour uses or overlaps."""
    out: dict[str, int] = {}
    for cluster in env.clusters:
        if cluster.name in explicit:
            continue
        neighbours = graph.get(cluster.name, ())
        used = {out[n] for n in neighbours if n in out}
        fixed = [explicit[n] for n in neighbours if n in explicit]
        index = next((i for i in free if i not in used and not any(spans_overlap(blocks[i], f) for f in fixed)),
                     None)
        if index is None:
            raise CidrExhausted
        out[cluster.name] = index
    return out


def _assemble(env: Env, pods: Mapping[str, Network]) -> dict[str, ClusterCidrs]:
    """The CIDR records, naming where each range came from."""
    shared = env.addressing.service_cidr
    return {c.name: ClusterCidrs(cluster=c.name, pod=pods[c.name], service=c.service_cidr or shared,
                                 pod_source="file" if c.pod_cidr else "auto",
                                 service_source="file" if c.service_cidr else "auto")
            for c in env.clusters}
