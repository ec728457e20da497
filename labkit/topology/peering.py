"""The peering plan: the partial-mesh star of thesis 5.1/5.3 and its two implementations (6.1, 6.2).

Derived links, in this order:

* ``star``: the ACC peers with (and offloads to) every other cluster (logical domains, 6.1)
  or with every primary station (multi-level, 6.2);
* ``backup`` and ``jurisdiction`` (multi-level only): the main primary of a group peers with
  the group's backups and with every secondary station whose ``parent`` it is;
* ``offload``: a consumer peers with every cluster its offloaded namespaces name;
* ``mesh``: a unidirectional full mesh inside every DB domain, one link per pair of members
  (eq. 5.1: N(N-1)/2), reusing a link that already joins a pair in either direction.
"""

from __future__ import annotations

from collections.abc import Iterable

from labkit.config import Env, Offload
from labkit.topology.model import Link


class LinkSet:
    """An ordered set of unidirectional links that merges the reasons of repeated links."""

    def __init__(self) -> None:
        self._reasons: dict[tuple[str, str], list[str]] = {}

    def add(self, consumer: str, provider: str, reason: str) -> None:
        """Add ``consumer -> provider`` (or a reason to the existing link)."""
        reasons = self._reasons.setdefault((consumer, provider), [])
        if reason not in reasons:
            reasons.append(reason)

    def connect(self, a: str, b: str, reason: str) -> None:
        """Join ``a`` and ``b``: reuse a link between them in either direction, else add ``a -> b``."""
        if (a, b) not in self._reasons and (b, a) in self._reasons:
            self.add(b, a, reason)
        else:
            self.add(a, b, reason)

    def providers(self, consumer: str) -> list[str]:
        """Providers of ``consumer`` so far, in insertion order."""
        return [p for (c, p) in self._reasons if c == consumer]

    def links(self) -> tuple[Link, ...]:
        """The links, in insertion order."""
        return tuple(Link(c, p, tuple(r)) for (c, p), r in self._reasons.items())


def star_targets(env: Env) -> list[str]:
    """Clusters the ACC peers with: every other cluster (6.1) or every primary station (6.2)."""
    if env.implementation == "multi-level":
        return [c.name for c in env.clusters if c.role == "primary"]
    return [c.name for c in env.clusters if c.role != "acc"]


def named_targets(env: Env, offload: Offload) -> list[str]:
    """Clusters an offload names (its ``clusters`` and its groups' members), without the consumer."""
    members = {g.name: g.members for g in env.groups}
    named = list(offload.clusters) + [m for g in offload.groups for m in members[g]]
    return [c for c in dict.fromkeys(named) if c != offload.consumer]


def derive(env: Env) -> tuple[Link, ...]:
    """The peering plan of an env without explicit ``peerings``.

    Parameters
    ----------
    env
        A validated env.

    Returns
    -------
    tuple of Link
        Star links first (in cluster order), then backup/jurisdiction, offload and mesh links.
    """
    links = LinkSet()
    root = env.root.name
    for target in star_targets(env):
        links.add(root, target, "star")
    if env.implementation == "multi-level":
        _second_stars(env, links)
    for offload in env.offloading:
        for target in named_targets(env, offload):
            links.add(offload.consumer, target, f"offload:{offload.namespace}")
    for domain in env.db_domains:
        _full_mesh(links, domain.members, f"mesh:{domain.name}")
    return links.links()


def explicit(env: Env) -> tuple[Link, ...]:
    """The env file's own peerings as links (duplicates are merged; validation reports them)."""
    links = LinkSet()
    for peering in env.peerings or []:
        links.add(peering.consumer, peering.provider, "explicit")
    return links.links()


def _second_stars(env: Env, links: LinkSet) -> None:
    """Multi-level: each main primary peers with its backups and the secondaries under it."""
    for group in env.groups:
        if group.main is not None:
            for member in group.members:
                if member != group.main:
                    links.add(group.main, member, f"backup:{group.name}")
    for cluster in env.clusters:
        if cluster.parent is not None:
            links.add(cluster.parent, cluster.name, f"jurisdiction:{cluster.parent}")


def _full_mesh(links: LinkSet, members: Iterable[str], reason: str) -> None:
    """One link per unordered pair of ``members`` (earlier member consumes the later one)."""
    order = list(dict.fromkeys(members))
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            links.connect(a, b, reason)


# --------------------------------------------------------------------------- eq. 5.1


def star_links(n: int) -> int:
    """Links of a star over ``n`` clusters (the root peers with the ``n - 1`` leaves)."""
    return max(n - 1, 0)


def full_mesh_links(n: int) -> int:
    """Links of a unidirectional full mesh over ``n`` clusters (eq. 5.1: N(N-1)/2)."""
    return n * (n - 1) // 2


def partial_mesh_star_links(n: int, domain_size: int) -> int:
    """Links of a partial-mesh star: the star plus a full mesh inside each DB domain.

    The ``n - 1`` leaves are cut into as few DB domains of at most ``domain_size`` clusters as
    possible, of balanced sizes (a primary and its secondaries, as in the logical domains of
    thesis 6.1 and :func:`labkit.topology.examples.region`).
    """
    leaves = max(n - 1, 0)
    if leaves == 0:
        return 0
    domains = -(-leaves // domain_size)
    size, bigger = divmod(leaves, domains)
    return star_links(n) + bigger * full_mesh_links(size + 1) + (domains - bigger) * full_mesh_links(size)
