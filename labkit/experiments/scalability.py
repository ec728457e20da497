"""Scalability (thesis 5.3, eq. 5.1): peering links, setup time and memory vs the number of clusters N.

The thesis argues that a DB domain needs at least a unidirectional full mesh of peerings,
``N(N-1)/2`` links (eq. 5.1), and that this costs setup time, growing with N, rather than
resources. Two topologies of N single-node clusters are measured, each env brought up on the
embedded test bed, peered (one virtual kubelet per link, one WireGuard tunnel per pair),
measured and torn down before the next:

- ``full mesh`` (:func:`mesh_env`, sizes ``sizes``): the root (Area Control Center) offloading a
  namespace to N-1 leaves that form one DB domain. The topology plans N-1 star links plus
  (N-1)(N-2)/2 mesh links, exactly ``N(N-1)/2``: eq. 5.1's worst case, every pair peered once.
- ``partial mesh star`` (:func:`region_env`, sizes ``star_sizes``): the region of thesis 6.1, the
  root and N-1 leaves in DB domains of at most ``domain_size`` stations (a primary and its
  secondaries), eq. 5.1 inside each domain only:
  ``N-1 + sum of d(d-1)/2`` links (:func:`labkit.topology.peering.partial_mesh_star_links`).
  It grows linearly, which is what lets N reach 20 and more on a 2-core machine, where the
  full mesh stops near N = 12 (docs/experiments.md).

Measured per topology and N (table ``scalability``, keys ``topology``, ``n``, ``domain_size``):

- ``clusters_ready`` (s): from the start of ``up()`` to every node Ready;
- ``peerings_ready`` (s): from then to every virtual node Ready (all links peered);
- ``virtual_nodes_ready`` (count): virtual nodes reading Ready in the consumers, one per link;
- ``tunnels_connected`` (count): cluster pairs whose TunnelEndpoints (``net.liqo.io``) read
  ``Connected`` at both ends, one per pair of peered clusters. Both are counted from the
  clusters' API servers, not from the kit's record of what it peered;
- ``memory_pss`` / ``memory_rss`` (MiB): summed over every process of the test bed (the
  VMs' cgroup trees: etcd, control planes, kubelets, containerd, pods, virtual kubelets,
  gateways) 5 s after peering, PSS counting shared pages once;
- ``cpu_idle`` (cores): the same processes' CPU time over the next 10 s, the bed idle;
- ``down`` (s): teardown.

Chapter 5.3's claims, measured (:func:`claims`): the setup time (every node Ready, then every
peering) grows linearly with the number of clusters, and a peering's extra resources are
negligible. The first is a fit of setup time against N per topology, linear and quadratic, with
the curvature's standard error; the second a fit of memory and CPU against clusters and links
over every size, whose per-link coefficient (± its standard error) is set beside a cluster's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import field_validator, model_validator

from labkit import reference
from labkit.config import Env, validate_env
from labkit.experiments.base import Parameters as BaseParameters
from labkit.experiments.base import Tables, TestbedMode, param
from labkit.fidelity import Check, Method, holds, within
from labkit.results import tidy
from labkit.testbed import MachineBusy, Testbed, TestbedError
from labkit.topology import examples
from labkit.topology.peering import full_mesh_links, partial_mesh_star_links, star_links

#: Namespace the root offloads and the DB domain shares.
NAMESPACE = "scale"
#: What one cluster and one virtual kubelet cost (MiB, measured: docs/peering.md, docs/embedded.md),
#: for the free-memory check before each N.
CLUSTER_MIB, LINK_MIB = 450.0, 40.0
#: The two topologies measured (the ``topology`` column).
FULL_MESH, PARTIAL_MESH_STAR = "full mesh", "partial mesh star"
#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)
#: The figure id of :data:`labkit.experiments.EXPERIMENTS`.
FIGURE = "eq. 5.1"
#: ``measure`` gets a driver that is not up: bringing each N up is what it measures.
TESTBED: TestbedMode = "created"
#: Metrics and their units.
UNITS = {"clusters_ready": "s", "peerings_ready": "s", "virtual_nodes_ready": "count", "tunnels_connected": "count",
         "memory_pss": "MiB", "memory_rss": "MiB", "cpu_idle": "cores", "down": "s", "setup_failed": "bool"}
#: Seconds over which the idle test bed's CPU time is read.
CPU_WINDOW_S = 10.0
#: A peering's resources are "negligible" (thesis 5.3) when even the upper edge of its cost (estimate + 2 standard
#: errors) is at most this share of a cluster's: the kit's reading of the word, said in the report.
NEGLIGIBLE_SHARE = 0.10


def parse_sizes(sizes: str | Iterable[int]) -> list[int]:
    """Cluster counts from ``"2,4,6"`` or a sequence; each at least 2, sorted, distinct (``""``: none).

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
    if values and values[0] < 2:
        raise ValueError(f"sizes {sizes!r}: every N must be >= 2 (a root and at least one leaf)")
    return values


class Parameters(BaseParameters):
    """Which sizes a scalability run brings up."""

    sizes: tuple[int, ...] = param((2, 4, 6), "full mesh: cluster counts N (the root and N-1 leaves), one after "
                                   "another; eq. 5.1's worst case (the thesis measured no N)")
    star_sizes: tuple[int, ...] = param((), "partial-mesh star: cluster counts N, measured after the full meshes")
    domain_size: int = param(4, "partial-mesh star: stations per DB domain (a primary and its secondaries)", ge=1)

    @field_validator("sizes", "star_sizes", mode="before")
    @classmethod
    def _sizes(cls, value: object) -> tuple[int, ...]:
        """Sizes as a list or as text (``"2,4,6"``), each at least 2, sorted and distinct."""
        return tuple(parse_sizes(value))  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _some_size(self) -> Parameters:
        if not self.sizes and not self.star_sizes:
            raise ValueError("no sizes: give sizes (full mesh) or star_sizes (partial-mesh star), e.g. [2, 4]")
        return self


def beds(env: Env, params: Parameters) -> list[Env]:
    """``env`` alone: its backend, timers and seed; :func:`measure` builds the clusters per N."""
    return [env]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """Every N of ``sizes`` (full mesh), then of ``star_sizes`` (partial-mesh star), on ``testbed`` (not up)."""
    return {NAME: measure_sizes(testbed, env, sizes=params.sizes, star_sizes=params.star_sizes,
                                domain_size=params.domain_size, run_id="", scenario="")}


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


def region_env(env: Env, n: int, domain_size: int) -> Env:
    """N single-node clusters laid out as a region of thesis 6.1: a partial-mesh star.

    The root and N-1 leaves cut into DB domains of at most ``domain_size`` stations (a primary
    and its secondaries, :func:`labkit.topology.examples.region`), each domain a full mesh
    offloaded a namespace by the root: ``partial_mesh_star_links(n, domain_size)`` peerings.
    Backend, tuning and seed come from ``env``.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 (a root and at least one leaf), got {n}")
    if domain_size < 1:
        raise ValueError(f"domain_size must be >= 1 (stations per DB domain), got {domain_size}")
    leaves = n - 1
    primaries = -(-leaves // domain_size)
    raw = examples.region(primaries, leaves - primaries).model_dump(mode="json", exclude_defaults=True)
    raw.update(name=f"{env.name}-star{n}", seed=env.seed, backend=env.backend.model_dump(mode="json"),
               tuning=env.tuning.model_dump(mode="json"))
    return validate_env(raw, source=f"region_env({env.name}, {n}, {domain_size})")


def formula_links(topology: str, n: int, domain_size: int) -> int:
    """The links ``topology`` needs over ``n`` clusters: eq. 5.1, or eq. 5.1 per DB domain plus the star."""
    if topology == FULL_MESH:
        return full_mesh_links(n)
    if topology == PARTIAL_MESH_STAR:
        return partial_mesh_star_links(n, domain_size)
    raise ValueError(f"topology {topology!r}: expected {FULL_MESH!r} or {PARTIAL_MESH_STAR!r}")


def available_mib() -> float:
    """``MemAvailable`` of this machine (MiB)."""
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"MemAvailable:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def check_memory(n: int, links: int | None = None, available: float | None = None) -> None:
    """Raise ``TestbedError`` when ``n`` clusters and ``links`` peerings (default: the full mesh) would not fit in free memory."""
    links = full_mesh_links(n) if links is None else links
    need = n * CLUSTER_MIB + links * LINK_MIB
    have = available_mib() if available is None else available
    if need > have:
        raise TestbedError(f"N={n} needs about {need:.0f} MiB ({n} clusters x {CLUSTER_MIB:.0f} + "
                           f"{links} virtual kubelets x {LINK_MIB:.0f}); {have:.0f} MiB available")


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


def virtual_nodes_ready(testbed: Testbed, clusters: Sequence[str]) -> int:
    """Virtual nodes (``liqo.io/type=virtual-node``) reading Ready, over every cluster."""
    from kubernetes import client

    ready = 0
    for cluster in clusters:
        for node in client.CoreV1Api(testbed.kube(cluster)).list_node(label_selector="liqo.io/type=virtual-node").items:
            ready += any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    return ready


#: Liqo v0.10's TunnelEndpoint (``net.liqo.io/v1alpha1``): one per remote cluster in each peered cluster.
TUNNEL_ENDPOINT = ("net.liqo.io", "v1alpha1", "tunnelendpoints")


def connected_pairs(endpoints: dict[str, list[dict]]) -> int:
    """Cluster pairs whose TunnelEndpoints read ``Connected`` at both ends.

    ``endpoints``: per cluster, its TunnelEndpoint objects; the remote end is named by
    ``spec.clusterIdentity.clusterName`` (the ``clusterID`` label when it has none).
    """
    ends = set()
    for cluster, items in endpoints.items():
        for tep in items:
            spec = tep.get("spec", {})
            remote = spec.get("clusterIdentity", {}).get("clusterName") or tep["metadata"].get("labels", {}).get(
                "clusterID")
            if tep.get("status", {}).get("connection", {}).get("status") == "Connected" and remote:
                ends.add((cluster, remote))
    return sum(1 for a, b in ends if a < b and (b, a) in ends)


def tunnels_connected(testbed: Testbed, clusters: Sequence[str]) -> int:
    """:func:`connected_pairs` of the TunnelEndpoints the clusters' API servers hold."""
    from kubernetes import client

    group, version, plural = TUNNEL_ENDPOINT
    endpoints = {cluster: client.CustomObjectsApi(testbed.kube(cluster)).list_cluster_custom_object(
        group, version, plural).get("items", []) for cluster in clusters}
    return connected_pairs(endpoints)


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each of ``pids`` so far (``/proc/<pid>/stat``; vanished pids are left out)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime: fields 14 and 15 of stat
    return out


def cpu_cores(pids: Iterable[int], window_s: float = CPU_WINDOW_S) -> float:
    """Cores the processes ``pids`` used on average over ``window_s`` seconds (those alive throughout)."""
    before = cpu_seconds(pids)
    time.sleep(window_s)
    after = cpu_seconds(before)
    return sum(after[p] - before[p] for p in after) / window_s


def measure_size(testbed: Testbed, env: Env, *, topology: str = FULL_MESH, domain_size: int | None = None,
                 settle_s: float = 5.0, **keys: str) -> pd.DataFrame:
    """Bring ``env`` up on ``testbed`` (peered), measure setup times, links and memory, always tear down; tidy rows.

    ``topology`` and ``domain_size`` (default: every leaf in one domain) label the rows; the
    links the topology's formula gives (``links_formula``) and the plan's (``links_planned``)
    go beside the measured ones.
    """
    from labkit.topology import plan

    n = len(env.clusters)
    domain_size = n - 1 if domain_size is None else domain_size
    planned = len(plan(env).virtual_nodes)
    check_memory(n, planned)
    values: dict[str, float] = {}
    try:
        testbed.up(env)
        timings = dict(testbed.timings)
        values["clusters_ready"] = timings["ready_s"]
        values["peerings_ready"] = timings.get("peering_s", float("nan"))
        time.sleep(settle_s)  # past the start-up transients before memory is read
        clusters = [c.name for c in env.clusters]
        values["virtual_nodes_ready"] = virtual_nodes_ready(testbed, clusters)
        values["tunnels_connected"] = tunnels_connected(testbed, clusters)
        pids = testbed.processes()
        values["memory_pss"], values["memory_rss"] = process_memory(pids)
        values["cpu_idle"] = cpu_cores(pids)
    finally:
        testbed.down()
    values["down"] = testbed.timings["down_s"]
    values["setup_failed"] = 0.0
    return _rows(values, topology, n, domain_size, planned, "", **keys)


def failed_size(env: Env, topology: str, domain_size: int, error: Exception, **keys: str) -> pd.DataFrame:
    """The rows of a size whose bring-up or peering failed: ``setup_failed`` = 1 and the error."""
    from labkit.topology import plan

    n = len(env.clusters)
    return _rows({"setup_failed": 1.0}, topology, n, domain_size, len(plan(env).virtual_nodes),
                 f"{type(error).__name__}: {error}", **keys)


def _rows(values: dict[str, float], topology: str, n: int, domain_size: int, planned: int, error: str,
          **keys: str) -> pd.DataFrame:
    """Tidy rows of one size: one per metric of ``values``, labelled with the topology, N and the link counts."""
    t = pd.Timestamp.now(tz="UTC")
    labels = {"topology": topology, "n": n, "domain_size": domain_size, "links_planned": planned,
              "links_formula": formula_links(topology, n, domain_size), "error": error}
    rows = [{"t": t, "metric": metric, "unit": UNITS[metric], "value": float(value), **labels}
            for metric, value in values.items()]
    return tidy(rows, step=f"{topology.replace(' ', '-')}-n{n}", cluster="all", **keys)


def measure_sizes(testbed: Testbed, env: Env, *, sizes: str | Sequence[int], star_sizes: str | Sequence[int] = "",
                  domain_size: int = 4, **keys: str) -> pd.DataFrame:
    """:func:`measure_size` for every N: full meshes of ``sizes``, then partial-mesh stars of ``star_sizes``.

    One test bed at a time, smallest N first; the stars' DB domains hold at most ``domain_size``
    stations. A size whose test bed does not come up (a virtual node not Ready in time: the
    machine is out of CPU) is a result, not an error: its rows say ``setup_failed`` and why,
    and the larger sizes of that topology are skipped. :class:`~labkit.testbed.MachineBusy`
    (another process holds the machine) is raised: it says nothing about N.
    """
    plans = [(mesh_env(env, n), FULL_MESH, n - 1) for n in parse_sizes(sizes)]
    plans += [(region_env(env, n, domain_size), PARTIAL_MESH_STAR, domain_size) for n in parse_sizes(star_sizes)]
    if not plans:
        raise ValueError("no sizes: give sizes (full mesh) or star_sizes (partial-mesh star), e.g. '2,4'")
    frames, failed = [], set()
    for one, topology, d in plans:
        if topology in failed:
            continue
        try:
            frames.append(measure_size(testbed, one, topology=topology, domain_size=d, **keys))
        except MachineBusy:
            raise  # another process's test bed: no size was measured
        except TestbedError as err:
            frames.append(failed_size(one, topology, d, err, **keys))
            failed.add(topology)
    return pd.concat(frames, ignore_index=True)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per topology and N: every metric as a column, plus the formulas' link counts.

    ``links_formula`` is what the row's topology needs (eq. 5.1 for the full mesh), ``eq_5_1_links``
    and ``star_links`` the two bounds every topology lies between. A table without the
    ``topology`` column holds full meshes only; one without ``setup_failed`` rows, no failed size.
    """
    if "topology" not in rows:
        rows = rows.assign(topology=FULL_MESH, domain_size=rows["n"] - 1)
    index = ["topology", "n", "domain_size"]
    wide = rows.pivot_table(index=index, columns="metric", values="value", aggfunc="mean").reset_index()
    wide.columns.name = None
    wide[["n", "domain_size"]] = wide[["n", "domain_size"]].astype(int)
    wide["links_formula"] = [formula_links(t, n, d) for t, n, d in zip(wide["topology"], wide["n"], wide["domain_size"])]
    if "setup_failed" not in wide:
        wide["setup_failed"] = 0.0
    for metric in UNITS:  # a table of failed sizes only has no measured columns
        if metric not in wide:
            wide[metric] = np.nan
    wide["eq_5_1_links"] = wide["n"].map(full_mesh_links)
    wide["star_links"] = wide["n"].map(star_links)
    wide["setup"] = wide["clusters_ready"] + wide["peerings_ready"]
    order = {FULL_MESH: 0, PARTIAL_MESH_STAR: 1}
    return wide.sort_values(["topology", "n"], key=lambda c: c.map(order) if c.name == "topology" else c,
                            ignore_index=True)


def headline(tables: Tables) -> dict[str, float]:
    """The numbers an env's bounds may limit: sizes that failed, the largest N that came up, its setup time (s),
    and the links and tunnels missing against the formula, counted from the clusters."""
    every = table(tables[NAME])
    summary = every[every["setup_failed"] == 0]
    out = {"sizes_failed": float((every["setup_failed"] > 0).sum())}
    if summary.empty:
        return out
    largest = summary[summary["n"] == summary["n"].max()]
    out["largest_n"] = float(largest["n"].iloc[0])
    for metric, counted in (("links_missing", "virtual_nodes_ready"), ("tunnels_missing", "tunnels_connected")):
        if summary[counted].notna().all():  # tables from before the tunnels were counted in the clusters have none
            out[metric] = float((summary["links_formula"] - summary[counted]).abs().sum())
    if largest["setup"].notna().any():
        out["setup_s_largest_n"] = float(largest["setup"].max())
    return out


def compare(tables: Tables) -> pd.DataFrame:
    """Nothing: the thesis measured no N (its eq. 5.1 is a formula, checked by :func:`fidelity` with basis
    ``formula``), so no thesis value stands beside ours."""
    return reference.compare([])


@dataclass(frozen=True)
class Fit:
    """An ordinary least-squares fit: coefficients and their standard errors by term, degrees of freedom, R²."""

    coef: dict[str, float]
    se: dict[str, float]
    dof: int
    r2: float


def least_squares(terms: dict[str, Sequence[float]], y: Sequence[float]) -> Fit | None:
    """``y`` against ``terms`` plus an intercept (``"1"``); ``None`` without a degree of freedom or with collinear terms.

    Standard errors from the residual variance (RSS / dof) and (XᵀX)⁻¹.
    """
    target = np.asarray(y, dtype=float)
    design = np.column_stack([np.ones(len(target)), *[np.asarray(v, dtype=float) for v in terms.values()]])
    dof = len(target) - design.shape[1]
    if dof < 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    resid = target - design @ coef
    sigma2 = float(resid @ resid) / dof
    cov = sigma2 * np.linalg.inv(design.T @ design)
    total = float(((target - target.mean()) ** 2).sum())
    names = ["1", *terms]
    return Fit({k: float(c) for k, c in zip(names, coef)}, {k: float(np.sqrt(v)) for k, v in zip(names, np.diag(cov))},
               dof, 1.0 - float(resid @ resid) / total if total else 1.0)


def claims(summary: pd.DataFrame) -> pd.DataFrame:
    """Chapter 5.3's two claims against the sizes that came up (one row per claim and scope).

    - *setup time grows linearly with N*, per topology: setup (every node Ready, then every
      peering) fitted as ``a + b N + c N²``; it holds when the curvature ``c`` is within two
      standard errors of 0 (and ``b N`` is the growth: seconds per cluster, from the linear fit).
      Needs 4 sizes.
    - *a peering's extra resources are negligible*, memory (PSS) and idle CPU over every size of
      both topologies: ``a + b N + c links``; it holds when ``c + 2 SE(c)`` is at most
      :data:`NEGLIGIBLE_SHARE` of ``b``, a cluster's cost. Needs 4 sizes with links not a linear
      function of N (a full mesh, or both topologies).
    """
    good = summary[(summary["setup_failed"] == 0) & summary["setup"].notna()] if len(summary) else summary
    rows = []
    for topology, part in good.groupby("topology", sort=False):
        curved = least_squares({"N": part["n"], "N²": part["n"] ** 2}, part["setup"])
        line = least_squares({"N": part["n"]}, part["setup"])
        holds = None if curved is None else abs(curved.coef["N²"]) <= 2 * curved.se["N²"]
        rows.append({"claim": "setup time grows linearly with N", "scope": topology, "sizes": len(part),
                     "estimate": line.coef["N"] if line else np.nan, "se": line.se["N"] if line else np.nan,
                     "unit": "s per cluster", "curvature": curved.coef["N²"] if curved else np.nan,
                     "curvature_se": curved.se["N²"] if curved else np.nan,
                     "cluster_cost": np.nan, "holds": holds})
    for metric, unit in (("memory_pss", "MiB"), ("cpu_idle", "cores")):
        data = good.dropna(subset=[metric]) if metric in good else good.head(0)
        fit = least_squares({"N": data["n"], "links": data["links_formula"]}, data[metric]) if len(data) else None
        holds = None if fit is None else fit.coef["links"] + 2 * fit.se["links"] <= NEGLIGIBLE_SHARE * fit.coef["N"]
        rows.append({"claim": f"a peering's extra {'memory' if metric == 'memory_pss' else 'CPU'} is negligible",
                     "scope": "every size", "sizes": len(data),
                     "estimate": fit.coef["links"] if fit else np.nan, "se": fit.se["links"] if fit else np.nan,
                     "unit": f"{unit} per peering", "curvature": np.nan, "curvature_se": np.nan,
                     "cluster_cost": fit.coef["N"] if fit else np.nan, "holds": holds})
    return pd.DataFrame(rows, columns=["claim", "scope", "sizes", "estimate", "se", "unit", "curvature",
                                       "curvature_se", "cluster_cost", "holds"])


def per_cluster_cost(summary: pd.DataFrame, metric: str) -> tuple[float, float]:
    """Least-squares slope and intercept of ``metric`` against N (e.g. MiB per cluster)."""
    data = summary[["n", metric]].dropna()
    if len(data) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(data["n"], data[metric], 1)
    return float(slope), float(intercept)


def fidelity(tables: Tables) -> list[Check]:
    """Per size, virtual nodes Ready and tunnels Connected (counted in the clusters) against the topology's
    formula; chapter 5.3's two claims (:func:`claims`)."""
    every = table(tables[NAME])
    out: list[Check] = []
    for row in every.itertuples():
        size = f"{row.topology}, N = {row.n}" + (f", DB domains <= {row.domain_size}"
                                                if row.topology == PARTIAL_MESH_STAR else "")
        formula = "N(N-1)/2 (eq. 5.1)" if row.topology == FULL_MESH else "N-1 + eq. 5.1 per DB domain"
        if row.setup_failed:
            out.append(holds(FIGURE, f"{size}: came up and peered", False, expected="every node and virtual node Ready",
                             basis="formula", reason="a size whose bed did not come up measures no link"))
            continue
        for metric, what in (("virtual_nodes_ready", "virtual nodes Ready"), ("tunnels_connected", "tunnels Connected")):
            out.append(within(FIGURE, f"{size}: {what}", getattr(row, metric), low=row.links_formula,
                              high=row.links_formula, unit="links", basis="formula",
                              reason=f"{formula}; counted in the clusters' API servers, not from the kit's list"))
    for claim in claims(every).itertuples():
        if claim.claim.startswith("setup"):
            measured = (f"{claim.estimate:.3g} s per cluster; curvature {claim.curvature:.3g} ± {claim.curvature_se:.2g} "
                        "s/N²") if claim.holds is not None else ""
            out.append(holds(FIGURE, f"5.3: {claim.claim} ({claim.scope})", claim.holds, basis="thesis",
                             expected="no curvature beyond 2 standard errors (needs 4 sizes)",
                             observed=claim.estimate if claim.holds is not None else None, unit="s per cluster",
                             spread=f"± {claim.se:.2g}" if claim.holds is not None else "", n=int(claim.sizes),
                             thesis="\"a linear increase in setup time as the number of clusters expands\" (5.3)",
                             reason="setup = every node Ready + every peering; fitted a + bN + cN²"
                                    + (f": {measured}" if measured else "")))
        else:
            share = f"{100 * NEGLIGIBLE_SHARE:g} %"
            out.append(holds(FIGURE, f"5.3: {claim.claim}", claim.holds, basis="thesis",
                             expected=f"per peering + 2 SE <= {share} of a cluster's", observed=claim.estimate
                             if claim.holds is not None else None, unit=claim.unit,
                             spread=f"± {claim.se:.2g}" if claim.holds is not None else "", n=int(claim.sizes),
                             thesis="\"the consumption of additional resources is negligible\" (5.3)",
                             reason=f"fitted a + b N + c links over every size: a cluster costs "
                                    f"{claim.cluster_cost:.3g} {claim.unit.split()[0]}; 'negligible' read as "
                                    f"<= {share} of that" if claim.holds is not None else
                                    "needs 4 sizes whose links are not a linear function of N"))
    return out


def methods(tables: Tables) -> list[Method]:
    """Eq. 5.1 and chapter 5.3: the thesis' formula and claims (no measurement), ours per size."""
    every = table(tables[NAME])
    sizes = "; ".join(f"{t}: N = {', '.join(str(n) for n in part['n'])}" for t, part in every.groupby("topology", sort=False))
    return [Method(
        FIGURE,
        thesis="no measurement: eq. 5.1 counts the peerings a DB domain of N clusters needs, N(N-1)/2; chapter 5.3 "
               "claims that setup time grows linearly with the number of clusters and that a peering's extra "
               "resources are negligible (citing no measurement)",
        ours=f"{sizes or 'no size'}; each bed brought up, peered and torn down alone; virtual nodes Ready and "
             "tunnels Connected counted in the clusters; setup time, memory (PSS) and idle CPU of every process of "
             "the bed; fits with standard errors",
        environment="every cluster a network namespace of one 2-core machine: setup time is bounded by 2 shared "
                    "cores (each bring-up is CPU-bound), not by a network or per-VM cores as on Crownlabs",
        implementation="the peering the test bed ran (see Fig. 7.2's row); a single-node cluster of upstream "
                       "Kubernetes v1.24.17 per station instead of k3s")]


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Links, setup time and memory vs N (:func:`plot`)."""
    return {"eq. 5.1": plot(table(tables[NAME]), Path(out_dir) / "eq-5-1-scalability.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """One row per topology and N (:func:`table`), and chapter 5.3's claims against them (:func:`claims`)."""
    every = table(tables[NAME])
    return {"links, setup time, memory and CPU per topology and N": every, "chapter 5.3's claims": claims(every)}


def plot(summary: pd.DataFrame, path: Path) -> Path:
    """Links vs N (counted in the clusters, beside eq. 5.1, the star and the partial-mesh star), setup time vs N
    with the linear fits of :func:`claims`, memory and idle CPU vs N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = np.arange(2, max(int(summary["n"].max()), 2) + 1)
    fig, (links, times, mem, cpu) = plt.subplots(1, 4, figsize=(19, 4.2), constrained_layout=True)
    links.plot(ns, [full_mesh_links(n) for n in ns], "-", color="C0", label="eq. 5.1: N(N-1)/2")
    for d in sorted(summary.loc[summary["topology"] == PARTIAL_MESH_STAR, "domain_size"].unique()):
        links.plot(ns, [partial_mesh_star_links(n, int(d)) for n in ns], "-.", color="C4",
                   label=f"partial-mesh star, DB domains <= {d}")
    links.plot(ns, [star_links(n) for n in ns], "--", color="C1", label="star: N-1")
    links.plot(summary["n"], summary["virtual_nodes_ready"], "o", color="C2", label="virtual nodes Ready (measured)")
    links.plot(summary["n"], summary["tunnels_connected"], "x", color="C3", ms=9, label="tunnels Connected (measured)")
    failed = summary[summary["setup_failed"] > 0]
    if not failed.empty:
        links.plot(failed["n"], failed["links_formula"], "X", color="#b2182b", ms=11, ls="none",
                   label="did not come up (setup failed)")
    links.set(xlabel="clusters N", ylabel="peering links", title="Peering links vs N (thesis 5.3)")
    links.legend(fontsize=7)
    fits = claims(summary).set_index(["claim", "scope"])
    for (topology, part), marker, color in zip(summary.groupby("topology", sort=False), ("o", "s"), ("C0", "C4")):
        times.plot(part["n"], part["clusters_ready"], f"{marker}:", color=color, alpha=0.6,
                   label=f"{topology}: nodes Ready")
        times.plot(part["n"], part["setup"], f"{marker}-", color=color, label=f"{topology}: setup (nodes + peerings)")
        fit = fits.loc[("setup time grows linearly with N", topology)] if ("setup time grows linearly with N",
                                                                          topology) in fits.index else None
        if fit is not None and np.isfinite(fit["estimate"]):
            line = least_squares({"N": part["n"]}, part["setup"])
            if line is not None:
                xs = np.array([part["n"].min(), part["n"].max()])
                times.plot(xs, line.coef["1"] + line.coef["N"] * xs, "--", color="0.4", lw=0.8,
                           label=f"{topology}: {fit['estimate']:.1f} ± {fit['se']:.1f} s per cluster "
                                 f"({'linear' if fit['holds'] else 'curved' if fit['holds'] is False else '?'})")
        for ax, metric, scale, label in ((mem, "memory_pss", 1 / 1024, "PSS (GiB)"), (cpu, "cpu_idle", 1.0, "cores")):
            ax.plot(part["n"], part[metric] * scale, f"{marker}-", color=color, label=topology)
            ax.set(xlabel="clusters N", ylabel=label)
    times.set(xlabel="clusters N", ylabel="seconds", title="Setup time vs N")
    times.legend(fontsize=7)
    for ax, name, metric in ((mem, "memory", "memory"), (cpu, "idle CPU", "CPU")):
        claim = fits.loc[(f"a peering's extra {metric} is negligible", "every size")]
        per = (f"{claim['estimate']:.3g} ± {claim['se']:.2g} {claim['unit']}, a cluster {claim['cluster_cost']:.3g}"
               if np.isfinite(claim["estimate"]) else "too few sizes to fit")
        ax.set_title(f"Test bed {name} vs N\n{per}", fontsize=9)
        ax.legend(fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
