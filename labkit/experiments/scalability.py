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

import numpy as np
import pandas as pd
from pydantic import field_validator, model_validator

from labkit import reference
from labkit.config import Env, validate_env
from labkit.experiments.base import Parameters as BaseParameters
from labkit.experiments.base import Tables, TestbedMode, param
from labkit.fidelity import Check, Method
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
#: ``measure`` gets a driver that is not up: bringing each N up is what it measures.
TESTBED: TestbedMode = "created"
#: Metrics and their units.
UNITS = {"clusters_ready": "s", "peerings_ready": "s", "peering_links": "count", "tunnels": "count",
         "virtual_nodes_ready": "count", "memory_pss": "MiB", "memory_rss": "MiB", "down": "s",
         "setup_failed": "bool"}


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
        liqo = getattr(testbed, "liqo", None)  # the embedded driver's record of what it peered
        values["peering_links"] = len(liqo.peerings) if liqo else 0
        values["tunnels"] = len(liqo.tunnels) if liqo else 0
        time.sleep(settle_s)  # past the start-up transients before memory is read
        values["virtual_nodes_ready"] = virtual_nodes_ready(testbed, [c.name for c in env.clusters])
        values["memory_pss"], values["memory_rss"] = process_memory(testbed.processes())
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
    links missing."""
    every = table(tables[NAME])
    summary = every[every["setup_failed"] == 0]
    out = {"sizes_failed": float((every["setup_failed"] > 0).sum())}
    if summary.empty:
        return out
    largest = summary[summary["n"] == summary["n"].max()]
    out |= {"largest_n": float(largest["n"].iloc[0]),
            "links_missing": float((summary["links_formula"] - summary["peering_links"]).abs().sum())}
    if largest["setup"].notna().any():
        out["setup_s_largest_n"] = float(largest["setup"].max())
    return out


def compare(tables: Tables) -> pd.DataFrame:
    """The formula's links against the measured ones, one row per topology and N.

    Keys: ``scalability.peering_links_full_mesh.n<N>`` (eq. 5.1) and
    ``scalability.peering_links_partial_mesh_star.d<d>.n<N>`` (eq. 5.1 in each DB domain plus the star).
    """
    formula = reference.lookup("scalability.peering_links_full_mesh")
    pairs = []
    for row in table(tables[NAME]).itertuples():
        if row.setup_failed:
            continue
        if row.topology == FULL_MESH:
            key, unit = f"scalability.peering_links_full_mesh.n{row.n}", f"links ({formula})"
        else:
            key = f"scalability.peering_links_partial_mesh_star.d{row.domain_size}.n{row.n}"
            unit = f"links (N-1 + {formula} per DB domain of <= {row.domain_size})"
        pairs.append((reference.Published(key, float(row.links_formula), None, None, unit), float(row.peering_links), None, 1))
    return reference.compare(pairs)


def per_cluster_cost(summary: pd.DataFrame, metric: str) -> tuple[float, float]:
    """Least-squares slope and intercept of ``metric`` against N (e.g. MiB per cluster)."""
    data = summary[["n", metric]].dropna()
    if len(data) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(data["n"], data[metric], 1)
    return float(slope), float(intercept)


def fidelity(tables: Tables) -> list[Check]:
    """Eq. 5.1's fidelity checks: none yet."""
    return []


def methods(tables: Tables) -> list[Method]:
    """Eq. 5.1's method beside the thesis': not yet recorded."""
    return []


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Links, setup time and memory vs N (:func:`plot`)."""
    return {"eq. 5.1": plot(table(tables[NAME]), Path(out_dir) / "eq-5-1-scalability.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """One row per topology and N (:func:`table`)."""
    return {"links, setup time and memory per topology and N": table(tables[NAME])}


def plot(summary: pd.DataFrame, path: Path) -> Path:
    """Links vs N (measured beside eq. 5.1, the star and the partial-mesh star), setup times vs N, memory vs N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = np.arange(2, max(int(summary["n"].max()), 2) + 1)
    fig, (links, times, mem) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    links.plot(ns, [full_mesh_links(n) for n in ns], "-", color="C0", label="eq. 5.1: N(N-1)/2")
    for d in sorted(summary.loc[summary["topology"] == PARTIAL_MESH_STAR, "domain_size"].unique()):
        links.plot(ns, [partial_mesh_star_links(n, int(d)) for n in ns], "-.", color="C4",
                   label=f"partial-mesh star, DB domains <= {d}")
    links.plot(ns, [star_links(n) for n in ns], "--", color="C1", label="star: N-1")
    links.plot(summary["n"], summary["peering_links"], "o", color="C2", label="virtual kubelets (measured)")
    links.plot(summary["n"], summary["tunnels"], "x", color="C3", ms=9, label="WireGuard tunnels (measured)")
    failed = summary[summary["setup_failed"] > 0]
    if not failed.empty:
        links.plot(failed["n"], failed["links_formula"], "X", color="#b2182b", ms=11, ls="none",
                   label="did not come up (setup failed)")
    links.set(xlabel="clusters N", ylabel="peering links", title="Peering links vs N (thesis 5.3)")
    links.legend(fontsize=8)
    for (topology, part), marker in zip(summary.groupby("topology", sort=False), ("o", "s")):
        times.plot(part["n"], part["clusters_ready"], f"{marker}:", color="C0", label=f"{topology}: clusters Ready")
        times.plot(part["n"], part["peerings_ready"], f"{marker}--", color="C1", label=f"{topology}: peerings Ready (after)")
        times.plot(part["n"], part["setup"], f"{marker}-", color="C2", label=f"{topology}: total setup")
        for metric, style in (("memory_pss", "-"), ("memory_rss", "--")):
            slope, _ = per_cluster_cost(part, metric)
            per = f", {slope:.0f} MiB per cluster" if np.isfinite(slope) else ""
            mem.plot(part["n"], part[metric] / 1024, f"{marker}{style}",
                     label=f"{topology}: {metric.split('_')[1].upper()}{per}")
    times.set(xlabel="clusters N", ylabel="seconds", title="Setup time vs N")
    times.legend(fontsize=7)
    mem.set(xlabel="clusters N", ylabel="GiB", title="Test bed memory vs N")
    mem.legend(fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
