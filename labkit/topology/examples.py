"""Envs built in code: the thesis' schematic examples (Figs. 5.2, 5.3) and synthetic regions of any size.

They go through :func:`labkit.config.validate_env` like any env file, so figures, tests and
benchmarks exercise the same model as ``envs/*.yaml``.
"""

from __future__ import annotations

from typing import Any, Literal

from labkit.config import Env, validate_env

Implementation = Literal["logical-domains", "multi-level"]


def _leaf(name: str, role: str = "secondary", **extra: Any) -> dict[str, Any]:
    """A cluster mapping."""
    return {"name": name, "role": role, **extra}


def independent_groups() -> Env:
    """Fig. 5.2: a root and six leaves in three independent groups; leaf C is in two of them.

    Group 1 runs a distributed database, so its leaves peer in a full mesh; groups 2 and 3 do not.
    """
    leaves = [f"leaf-{c}" for c in "abcdef"]
    return validate_env({
        "name": "fig-5-2", "implementation": "logical-domains",
        "clusters": [_leaf("root", "acc")] + [_leaf(n) for n in leaves],
        "groups": [{"name": "group-1", "members": ["leaf-a", "leaf-b", "leaf-c"]},
                   {"name": "group-2", "members": ["leaf-c", "leaf-d"]},
                   {"name": "group-3", "members": ["leaf-e", "leaf-f"]}],
        "db_domains": [{"name": "db-1", "members": ["leaf-a", "leaf-b", "leaf-c"], "namespace": "group-1"}],
        "offloading": [{"namespace": f"group-{i}", "consumer": "root", "groups": [f"group-{i}"]} for i in (1, 2, 3)],
    }, source="<fig-5-2>")


def dependent_groups() -> Env:
    """Fig. 5.3: two hierarchies over six leaves, and one DB domain over all of them (the worst case)."""
    leaves = [f"leaf-{c}" for c in "abcdef"]
    return validate_env({
        "name": "fig-5-3", "implementation": "logical-domains",
        "clusters": [_leaf("root", "acc")] + [_leaf(n) for n in leaves],
        "groups": [{"name": "north", "hierarchy": "area", "members": leaves[:3]},
                   {"name": "south", "hierarchy": "area", "members": leaves[3:]},
                   {"name": "hv", "hierarchy": "voltage", "members": ["leaf-a", "leaf-d"]},
                   {"name": "mv", "hierarchy": "voltage", "members": ["leaf-b", "leaf-c", "leaf-e", "leaf-f"]}],
        "db_domains": [{"name": "db", "members": leaves, "namespace": "grid"}],
        "offloading": [{"namespace": "grid", "consumer": "root"}],
    }, source="<fig-5-3>")


def region(primaries: int, secondaries: int, implementation: Implementation = "logical-domains",
           databases: bool = True, name: str = "synthetic") -> Env:
    """A synthetic region: one ACC, ``primaries`` primary and ``secondaries`` secondary stations.

    Secondary ``s-j`` is under primary ``p-(j mod primaries)``. Logical domains (6.1): each
    primary and its secondaries form a domain with its own namespace (and DB when ``databases``).
    Multi-level (6.2): primaries form groups ``area-k`` = {``p-k`` main, ``p-k+1`` backup} with a
    high-level namespace and DB each; each primary offloads a low-level namespace (and DB) to
    its secondaries.

    Parameters
    ----------
    primaries, secondaries
        Numbers of primary and secondary stations (``primaries >= 1``).
    implementation
        ``logical-domains`` or ``multi-level``.
    databases
        Whether each domain runs a distributed database (full mesh inside).
    name
        The env's name.
    """
    prim = [f"p-{k}" for k in range(1, primaries + 1)]
    under: dict[str, list[str]] = {p: [] for p in prim}
    for j in range(secondaries):
        under[prim[j % primaries]].append(f"s-{j + 1}")
    clusters = [_leaf("acc", "acc")] + [_leaf(p, "primary") for p in prim]
    clusters += [_leaf(s, "secondary", parent=p) for p in prim for s in under[p]]
    build = _logical_domains if implementation == "logical-domains" else _multi_level
    body = build(prim, under, databases)
    return validate_env({"name": name, "implementation": implementation, "clusters": clusters, **body},
                        source=f"<{name}>")


def _logical_domains(prim: list[str], under: dict[str, list[str]], databases: bool) -> dict[str, Any]:
    """Groups, DB domains and offloads of 6.1: one domain per primary."""
    groups = [{"name": f"domain-{p}", "members": [p, *under[p]]} for p in prim]
    dbs = [{"name": f"db-{p}", "members": [p, *under[p]], "namespace": f"domain-{p}"} for p in prim]
    if not databases:
        dbs = []
    offloads = [{"namespace": f"domain-{p}", "consumer": "acc", "groups": [f"domain-{p}"]} for p in prim]
    return {"groups": groups, "db_domains": dbs, "offloading": offloads}


def _multi_level(prim: list[str], under: dict[str, list[str]], databases: bool) -> dict[str, Any]:
    """Groups, DB domains and offloads of 6.2: main/backup groups of primaries, then a star per primary."""
    pairs = [(p, prim[(k + 1) % len(prim)]) for k, p in enumerate(prim)]
    groups = [{"name": f"area-{p}", "members": list(dict.fromkeys([p, b])), "main": p} for p, b in pairs]
    offloads = [{"namespace": f"high-{p}", "consumer": "acc", "groups": [f"area-{p}"]} for p in prim]
    offloads += [{"namespace": f"low-{p}", "consumer": p, "clusters": under[p], "pod_strategy": "LocalAndRemote"}
                 for p in prim if under[p]]
    dbs: list[dict[str, Any]] = []
    if databases:
        dbs += [{"name": f"high-{p}", "members": list(dict.fromkeys([p, b])), "namespace": f"high-{p}"}
                for p, b in pairs]
        dbs += [{"name": f"low-{p}", "members": [p, *under[p]], "namespace": f"low-{p}"} for p in prim if under[p]]
    return {"groups": groups, "db_domains": dbs, "offloading": offloads}
