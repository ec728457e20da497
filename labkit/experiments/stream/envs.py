"""Env variants the stream experiments run on: the low PDC co-located with its PMUs (island),
movable between clusters free of the rest of the chain (cluster failure), or the env reduced to
some clusters (CI: the ``clusters`` parameter of the stream experiments).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labkit.config import Env, validate_env
from labkit.experiments.stream.common import StreamError


def _raw(env: Env) -> dict[str, Any]:
    """The env as a plain mapping (to derive variants)."""
    return env.model_dump(mode="json", exclude_none=True)


def colocated_env(env: Env) -> Env:
    """``env`` with each low PDC and the PMUs it reads required on one cluster (island: the leaf keeps its sources).

    That cluster is the low PDC's first preferred one, else the first its placement allows.
    """
    raw = _raw(env)
    for pdc, spec in zip(raw["grid"]["pdcs"], env.grid.pdcs):
        if spec.level != "low":
            continue
        allowed = _placement_clusters(env, spec.placement)
        home = (spec.placement.prefer or allowed or [None])[0]
        if home is None:
            raise StreamError(f"env {env.name!r}: the placement of {spec.name!r} allows no cluster")
        pdc["placement"] = {"clusters": [home], "prefer": [home]}
        for pmu in raw["grid"]["pmus"]:
            if pmu["name"] in spec.inputs:
                pmu["placement"] = {"clusters": [home], "prefer": [home]}
    raw["name"] = f"{env.name}-colocated"
    return validate_env(raw, source=f"colocated_env({env.name})")


def movable_low_env(env: Env) -> Env:
    """``env`` with the low PDC allowed only on clusters not preferred by its PMUs or the high PDC.

    A cluster failure must take down the low PDC alone: after each repetition the PDC lands
    somewhere else, and the next repetition disconnects that cluster.
    """
    raw = _raw(env)
    pdcs = raw["grid"]["pdcs"]
    taken = {c for item in [*raw["grid"]["pmus"], *[p for p in pdcs if p["level"] == "high"]]
             for c in item.get("placement", {}).get("prefer", [])[:1]}
    candidates = _placement_clusters(env, next(p for p in env.grid.pdcs if p.level == "low").placement)
    free = [c for c in candidates if c not in taken]
    if len(free) < 2:
        raise StreamError(f"env {env.name!r}: the low PDC needs two clusters free of its PMUs and the high PDC "
                          f"to move between (candidates {candidates}, taken {sorted(taken)})")
    for pdc in pdcs:
        if pdc["level"] == "low":
            prefer = [c for c in pdc.get("placement", {}).get("prefer", []) if c in free]
            pdc["placement"] = {"clusters": free, "prefer": prefer}
    raw["name"] = f"{env.name}-movable"
    return validate_env(raw, source=f"movable_low_env({env.name})")


def _placement_clusters(env: Env, placement: Any) -> list[str]:
    """Every cluster a placement allows (its clusters, group members and DB-domain members)."""
    out = list(placement.clusters)
    out += [m for g in env.groups if g.name in placement.groups for m in g.members]
    out += [m for d in env.db_domains if d.name in placement.domains for m in d.members]
    return sorted(set(out))


def reduced_env(env: Env, keep: Sequence[str]) -> Env:
    """``env`` restricted to the clusters ``keep`` and to what its grid chain needs.

    DB domains and offloads of namespaces the grid does not use are dropped, the others
    trimmed to ``keep``; groups no kept offload or placement names are dropped. For CI: the
    11-cluster multi-level env reduced to one branch of each level.
    """
    kept = set(keep)
    raw = _raw(env)
    raw["name"] = f"{env.name}-reduced"
    raw["clusters"] = [c for c in raw["clusters"] if c["name"] in kept]
    grid = raw["grid"]
    used = {item.get("namespace") or grid.get("namespace", "test") for item in [*grid["pmus"], *grid["pdcs"]]}
    raw["db_domains"] = [{**d, "members": [m for m in d["members"] if m in kept],
                          "replicas": min(d.get("replicas", 3), len([m for m in d["members"] if m in kept]))}
                         for d in raw.get("db_domains", []) if d["namespace"] in used
                         and any(m in kept for m in d["members"])]
    raw["offloading"] = [{**o, "clusters": [c for c in o.get("clusters", []) if c in kept]}
                         for o in raw.get("offloading", []) if o["namespace"] in used and o["consumer"] in kept]
    named = {g for o in raw["offloading"] for g in o.get("groups", [])}
    named |= {g for item in [*grid["pmus"], *grid["pdcs"]] for g in item.get("placement", {}).get("groups", [])}
    groups = []
    for g in raw.get("groups", []):
        members = [m for m in g["members"] if m in kept]
        if g["name"] in named and members:
            groups.append({k: v for k, v in {**g, "members": members}.items()
                           if k != "main" or v in members})
    raw["groups"] = groups
    names = {g["name"] for g in groups}
    for o in raw["offloading"]:
        o["groups"] = [g for g in o.get("groups", []) if g in names]
    if raw.get("peerings") is not None:
        raw["peerings"] = [p for p in raw["peerings"] if p["consumer"] in kept and p["provider"] in kept]
    domains = {d["name"] for d in raw["db_domains"]}
    for item in [*grid["pmus"], *grid["pdcs"]]:
        pl = item.get("placement", {})
        item["placement"] = {"clusters": [c for c in pl.get("clusters", []) if c in kept],
                             "groups": [g for g in pl.get("groups", []) if g in names],
                             "domains": [d for d in pl.get("domains", []) if d in domains],
                             "prefer": [c for c in pl.get("prefer", []) if c in kept]}
    return validate_env(raw, source=f"reduced_env({env.name}, {sorted(kept)})")


#: The clusters of ``envs/multilevel.yaml`` a CI run keeps: the ACC, the group area-1 (p-1 main,
#: p-2 backup) and two secondaries of p-1 (the low PDC's domain).
MULTILEVEL_CI = ("acc", "p-1", "p-2", "s-1-1", "s-1-2")


def kept(env: Env, clusters: Sequence[str]) -> Env:
    """``env`` reduced to ``clusters`` (:func:`reduced_env`); all of it when ``clusters`` is empty."""
    return reduced_env(env, clusters) if clusters else env
