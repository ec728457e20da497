"""Scalability (thesis 5.3, eq. 5.1): peering links, setup time and memory vs the number of clusters N.

The thesis argues that a DB domain needs at least a unidirectional full mesh of peerings,
``N(N-1)/2`` links (eq. 5.1), and that this costs setup time, growing with N, rather than
resources. Here, for each N of ``sizes``, :func:`mesh_env` builds an env of N single-node
clusters: the root (Area Control Center) offloading a namespace to N-1 leaves that form one
DB domain. The topology then plans N-1 star links plus (N-1)(N-2)/2 mesh links, i.e. exactly
``N(N-1)/2``: every pair of clusters peered once. Each env is brought up on the embedded test bed,
peered (one virtual kubelet per link, one WireGuard tunnel per pair), measured and torn down
before the next.

Measured per N (table ``scalability``, key ``n`` on every row):

- ``clusters_ready`` (s): from the start of ``up()`` to every node Ready;
- ``peerings_ready`` (s): from then to every virtual node Ready (all links peered);
- ``peering_links`` / ``tunnels`` / ``virtual_nodes_ready`` (count): virtual kubelets,
  WireGuard tunnels and virtual nodes reading Ready in the consumers;
- ``memory_pss`` / ``memory_rss`` (MiB): summed over every process of the test bed (the
  VMs' cgroup trees: etcd, control planes, kubelets, containerd, pods, virtual kubelets,
  gateways) 5 s after peering, PSS counting shared pages once;
- ``down`` (s): teardown.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labkit import reference
from labkit.config import Env, validate_env
from labkit.results import tidy
from labkit.testbed import TestbedError, create, off_event_loop

#: Namespace the root offloads and the DB domain shares.
NAMESPACE = "scale"
#: What one cluster and one virtual kubelet cost (MiB, measured: docs/peering.md, docs/embedded.md),
#: for the free-memory check before each N.
CLUSTER_MIB, LINK_MIB = 450.0, 40.0
#: Metrics and their units.
UNITS = {"clusters_ready": "s", "peerings_ready": "s", "peering_links": "count", "tunnels": "count",
         "virtual_nodes_ready": "count", "memory_pss": "MiB", "memory_rss": "MiB", "down": "s"}


def full_mesh_links(n: int) -> int:
    """Eq. 5.1: links of a unidirectional full mesh of ``n`` clusters, ``n(n-1)/2``."""
    return n * (n - 1) // 2


def star_links(n: int) -> int:
    """Links of the star alone (the root peered with each of ``n - 1`` leaves)."""
    return max(0, n - 1)


def parse_sizes(sizes: str | Iterable[int]) -> list[int]:
    """Cluster counts from ``"2,4,6"`` or a sequence; each at least 2, sorted, distinct.

    Raises
    ------
    ValueError
        On a non-integer or a size below 2.
    """
    items = [s for s in re.split(r"[,\s]+", sizes.strip())] if isinstance(sizes, str) else list(sizes)
    try:
        values = sorted({int(s) for s in items if s != ""})
    except ValueError:
        raise ValueError(f"sizes {sizes!r}: expected integers like '2,4,6'") from None
    if not values or values[0] < 2:
        raise ValueError(f"sizes {sizes!r}: every N must be >= 2 (a root and at least one leaf)")
    return values


def mesh_env(env: Env, n: int) -> Env:
    """N single-node clusters: ``env``'s root and N-1 leaves in one DB domain (``N(N-1)/2`` peerings).

    Backend, tuning and seed come from ``env``; CIDRs are left to ``labkit.topology`` (distinct
    per cluster, as a DB domain needs).
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 (a root and at least one leaf), got {n}")
    leaves = [f"leaf-{i}" for i in range(1, n)]
    clusters = [{"name": env.root.name, "role": "acc"}]
    clusters += [{"name": leaf, "role": "primary" if i == 0 else "secondary"} for i, leaf in enumerate(leaves)]
    raw = {"name": f"{env.name}-n{n}", "seed": env.seed, "backend": env.backend.model_dump(mode="json"),
           "tuning": env.tuning.model_dump(mode="json"), "clusters": clusters,
           "groups": [{"name": "leaves", "members": leaves}],
           "db_domains": [{"name": "db", "members": leaves, "namespace": NAMESPACE, "replicas": min(3, len(leaves))}],
           "offloading": [{"namespace": NAMESPACE, "consumer": env.root.name, "groups": ["leaves"]}]}
    return validate_env(raw, source=f"mesh_env({env.name}, {n})")


def available_mib() -> float:
    """``MemAvailable`` of this machine (MiB)."""
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"MemAvailable:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def check_memory(n: int, available: float | None = None) -> None:
    """Raise ``TestbedError`` when ``n`` clusters and their full mesh would not fit in free memory."""
    need = n * CLUSTER_MIB + full_mesh_links(n) * LINK_MIB
    have = available_mib() if available is None else available
    if need > have:
        raise TestbedError(f"N={n} needs about {need:.0f} MiB ({n} clusters x {CLUSTER_MIB:.0f} + "
                           f"{full_mesh_links(n)} virtual kubelets x {LINK_MIB:.0f}); {have:.0f} MiB available")


def process_memory(pids: Iterable[int]) -> tuple[float, float]:
    """Summed PSS and RSS (MiB) of ``pids`` from ``/proc/<pid>/smaps_rollup`` (vanished pids are skipped)."""
    pss = rss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        found = dict(re.findall(r"^(Pss|Rss):\s+(\d+) kB", text, re.M))
        pss += int(found.get("Pss", 0))
        rss += int(found.get("Rss", 0))
    return pss / 1024, rss / 1024


def testbed_pids(vms: Sequence[str]) -> set[int]:
    """Every process in the cgroup trees of the embedded VMs ``vms``.

    Scalability runs on the embedded back end only (the pipeline says so): the VMs' processes
    live on this machine, each VM's in its own cgroup tree.
    """
    from labkit.testbed.embedded import vm as vmlib

    return set().union(*(vmlib.cgroup_pids(vmlib.cgroup_name(vm)) for vm in vms))


def virtual_nodes_ready(testbed: Any, clusters: Sequence[str]) -> int:
    """Virtual nodes (``liqo.io/type=virtual-node``) reading Ready, over every cluster."""
    from kubernetes import client

    ready = 0
    for cluster in clusters:
        for node in client.CoreV1Api(testbed.kube(cluster)).list_node(label_selector="liqo.io/type=virtual-node").items:
            ready += any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    return ready


def measure_size(env: Env, *, settle_s: float = 5.0, **keys: str) -> pd.DataFrame:
    """Bring up ``env`` (peered), measure setup times, links and memory, always tear down; tidy rows."""
    from labkit.topology import plan

    n = len(env.clusters)
    check_memory(n)
    planned = len(plan(env).virtual_nodes)
    testbed = create(env)
    values: dict[str, float] = {}
    try:
        testbed.up(env)
        timings = dict(testbed.timings)
        values["clusters_ready"] = timings["ready_s"]
        values["peerings_ready"] = timings.get("peering_s", float("nan"))
        liqo = testbed.liqo
        values["peering_links"] = len(liqo.peerings) if liqo else 0
        values["tunnels"] = len(liqo.tunnels) if liqo else 0
        time.sleep(settle_s)  # past the start-up transients before memory is read
        values["virtual_nodes_ready"] = virtual_nodes_ready(testbed, [c.name for c in env.clusters])
        vms = [node.name for c in env.clusters for node in c.nodes]
        values["memory_pss"], values["memory_rss"] = process_memory(testbed_pids(vms))
    finally:
        testbed.down()
    values["down"] = testbed.timings["down_s"]
    t = pd.Timestamp.now(tz="UTC")
    rows = [{"t": t, "metric": metric, "unit": UNITS[metric], "value": float(value), "n": n,
             "links_planned": planned} for metric, value in values.items()]
    return tidy(rows, step=f"n-{n}", cluster="all", **keys)


@off_event_loop
def run(env: Env, *, sizes: str | Sequence[int], **keys: str) -> pd.DataFrame:
    """:func:`measure_size` of :func:`mesh_env` for every N of ``sizes``, smallest first, one at a time."""
    frames = []
    for n in parse_sizes(sizes):
        frames.append(measure_size(mesh_env(env, n), **keys))
    return pd.concat(frames, ignore_index=True)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per N: every metric as a column, plus eq. 5.1's and the star's link counts."""
    wide = rows.pivot_table(index="n", columns="metric", values="value", aggfunc="mean").reset_index()
    wide.columns.name = None
    wide["n"] = wide["n"].astype(int)
    wide["eq_5_1_links"] = wide["n"].map(full_mesh_links)
    wide["star_links"] = wide["n"].map(star_links)
    if {"clusters_ready", "peerings_ready"} <= set(wide.columns):
        wide["setup"] = wide["clusters_ready"] + wide["peerings_ready"]
    return wide


def headline(rows: pd.DataFrame) -> dict[str, float]:
    """The numbers an env's bounds may limit: the largest N, its setup time (s), and links missing vs eq. 5.1."""
    summary = table(rows)
    largest = summary.loc[summary["n"].idxmax()]
    out = {"largest_n": float(largest["n"]),
           "links_missing": float((summary["eq_5_1_links"] - summary["peering_links"]).abs().sum())}
    if pd.notna(largest.get("setup", np.nan)):
        out["setup_s_largest_n"] = float(largest["setup"])
    return out


def compare(rows: pd.DataFrame) -> pd.DataFrame:
    """Eq. 5.1 against the measured peering links, one row per N (key ``scalability.peering_links_full_mesh.n<N>``)."""
    formula = reference.lookup("scalability.peering_links_full_mesh")
    pairs = []
    for row in table(rows).itertuples():
        ref = reference.Published(f"scalability.peering_links_full_mesh.n{row.n}", float(full_mesh_links(row.n)),
                                  None, None, f"links ({formula})")
        pairs.append((ref, float(row.peering_links), None, 1))
    return reference.compare(pairs)


def per_cluster_cost(summary: pd.DataFrame, metric: str) -> tuple[float, float]:
    """Least-squares slope and intercept of ``metric`` against N (e.g. MiB per cluster)."""
    data = summary[["n", metric]].dropna()
    if len(data) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(data["n"], data[metric], 1)
    return float(slope), float(intercept)


def plot(summary: pd.DataFrame, path: Any) -> Any:
    """Links vs N (measured beside eq. 5.1 and the star), setup times vs N, memory vs N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = np.arange(2, max(int(summary["n"].max()), 2) + 1)
    fig, (links, times, mem) = plt.subplots(1, 3, figsize=(14, 3.8), constrained_layout=True)
    links.plot(ns, [full_mesh_links(n) for n in ns], "-", color="C0", label="eq. 5.1: N(N-1)/2")
    links.plot(ns, [star_links(n) for n in ns], "--", color="C1", label="star: N-1")
    links.plot(summary["n"], summary["peering_links"], "o", color="C2", label="virtual kubelets (measured)")
    links.plot(summary["n"], summary["tunnels"], "x", color="C3", ms=9, label="WireGuard tunnels (measured)")
    links.set(xlabel="clusters N", ylabel="peering links", title="Peering links vs N (thesis 5.3)")
    links.legend(fontsize=8)
    times.plot(summary["n"], summary["clusters_ready"], "o-", label="clusters Ready")
    times.plot(summary["n"], summary["peerings_ready"], "s-", label="all peerings Ready (after)")
    if "setup" in summary:
        times.plot(summary["n"], summary["setup"], "^-", label="total setup")
    times.set(xlabel="clusters N", ylabel="seconds", title="Setup time vs N")
    times.legend(fontsize=8)
    for metric, marker in (("memory_pss", "o-"), ("memory_rss", "s--")):
        slope, _ = per_cluster_cost(summary, metric)
        mem.plot(summary["n"], summary[metric] / 1024, marker,
                 label=f"{metric.split('_')[1].upper()} ({slope:.0f} MiB per cluster)")
    mem.set(xlabel="clusters N", ylabel="GiB", title="Test bed memory vs N")
    mem.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
