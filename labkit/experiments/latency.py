"""Latency (thesis 7.2): round-trip times leaf -> root, as Tables 7.2-7.5 report them.

- Table 7.2, network: VM to VM (each leaf VM pings the root VM).
- Table 7.3, same cluster: a pod on each leaf node pings a pod on the root node, the leaf and
  root VMs being nodes of *one* cluster (:func:`single_cluster`).
- Table 7.4, peered clusters: the same pods, the leaves being clusters peered with the root
  (needs the peering of the test bed: Liqo, or the kit's look-alike).
- Table 7.5: Liqo overhead = mean of 7.4 - mean of 7.3.

Two test beds, one after the other (:func:`beds`): :func:`single_cluster` of the env for Tables
7.2 and 7.3, then the env itself (the thesis' test bed, Fig. 7.1) for 7.4: the root and each leaf
are clusters of their own, the root peered with every leaf and offloading a namespace to them. A
probe pod runs on the root's physical node; for each leaf, a probe pod of the root's offloaded
namespace is bound to the leaf's virtual node, so it runs *in the leaf cluster* (the virtual
kubelet's ShadowPod), and that provider-side pod pings the root pod's address across the peering.

The thesis pinged about 1000 times per test, leaf by leaf (``count`` per leaf; ``concurrent``:
every leaf at once instead). Table ``latency``: metric ``rtt`` (ms) per probe and ``loss`` per
leaf, labels ``step``, ``leaf``, ``seq``, ``source``, ``target``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import reference
from labkit.config import Env, validate_env
from labkit.experiments.base import Parameters as BaseParameters
from labkit.experiments.base import Tables, param, thesis
from labkit.fidelity import Check, Method
from labkit.measure import collecting
from labkit.measure.ping import PingCollector
from labkit.testbed import Host, Testbed, TestbedError, load_image
from labkit.testbed.pods import PodHost, probe_pod, start_pods, stop_pods, twin_pods
from labkit.waiting import wait_until

NAMESPACE = "labkit-latency"
#: Liqo's virtual nodes carry this NoExecute taint; pods bound to one must tolerate it.
VIRTUAL_NODE_TOLERATION = {"key": "virtual-node.liqo.io/not-allowed", "operator": "Exists", "effect": "NoExecute"}
#: Image of the probe pods: ``ping`` in the runtime image's rootfs alone (59 of its 224 MB).
PROBE_IMAGE = "probe"
#: Thesis table of each step, for the comparison.
THESIS_TABLES = {"vm-to-vm": "table_7_2_network", "pod-same-cluster": "table_7_3_same_cluster",
                 "pod-peered": "table_7_4_liqo_peered"}
#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)


class Parameters(BaseParameters):
    """What a latency run measures."""

    leaves: int = thesis(3, "the thesis pinged from three leaves, Leaf-1..3 (Tables 7.2-7.4)", ge=1)
    count: int = thesis(1000, "about 1000 probes per test (thesis 7.2)", ge=1)
    interval: float = param(1.0, "ping's default interval: the thesis ran plain `ping`", source="software default",
                            gt=0)
    concurrent: bool = param(False, "False: leaf by leaf as the thesis; True: every leaf at once, so that 1000 "
                                    "probes per leaf fit a run's time budget")
    peered: bool = param(True, "also measure Table 7.4 on the env's peered test bed, and derive Table 7.5")


def beds(env: Env, params: Parameters) -> list[Env]:
    """:func:`single_cluster` of ``env`` (Tables 7.2, 7.3), then ``env`` itself (Table 7.4) when ``peered``."""
    single = single_cluster(env, params.leaves)
    return [single, env] if params.peered else [single]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """One test bed of :func:`beds`: Tables 7.2 and 7.3 on the single cluster, Table 7.4 on the peered env."""
    options = {"leaves": params.leaves, "count": params.count, "interval": params.interval,
               "concurrent": params.concurrent, "run_id": "", "scenario": ""}
    if len(env.clusters) == 1:
        return {NAME: measure_single_cluster(testbed, env, **options)}
    return {NAME: measure_peered(testbed, env, **options)}


def single_cluster(env: Env, leaves: int = 3) -> Env:
    """The same VMs (the root and the first ``leaves`` leaves) as nodes of one cluster (Table 7.3)."""
    vms = [env.root.nodes[0].name] + [c.nodes[0].name for c in env.clusters if c.role != "acc"][:leaves]
    raw = {"name": f"{env.name}-single", "seed": env.seed, "backend": env.backend.model_dump(mode="json"),
           "tuning": env.tuning.model_dump(mode="json"),
           "clusters": [{"name": "single", "role": "acc", "nodes": [{"name": vm} for vm in vms]}]}
    return validate_env(raw, source=f"single_cluster({env.name})")


def offloaded_leaves(env: Env, leaves: int) -> tuple[str, list[str]]:
    """The namespace the root offloads and the first ``leaves`` leaf clusters it reaches (Table 7.4).

    Raises
    ------
    ValueError
        When the root offloads nothing, or to fewer than ``leaves`` clusters.
    """
    from labkit.topology import plan

    root = env.root.name
    offloads = [o for o in plan(env).offloads if o.consumer == root]
    if not offloads:
        raise ValueError(f"env {env.name!r}: the root {root!r} offloads no namespace; Table 7.4 needs one")
    reached = [c.name for c in env.clusters if c.name in set(offloads[0].providers)]
    if len(reached) < leaves:
        raise ValueError(f"env {env.name!r}: the root offloads {offloads[0].namespace!r} to {reached}, "
                         f"{leaves} leaves requested")
    return offloads[0].namespace, reached[:leaves]


def leaf_names(env: Env, leaves: int) -> list[str]:
    """The first ``leaves`` leaf VMs of ``env`` (thesis: Leaf-1..3)."""
    names = [n.name for c in env.clusters for n in c.nodes if n.name != env.root.nodes[0].name]
    return names[:leaves]


def ping_each(sources: Sequence[tuple[Host, str]], target: str, *, step: str, count: int, interval: float,
              concurrent: bool = False, **keys: str) -> pd.DataFrame:
    """Ping ``target`` from each source; tidy rows labelled with ``leaf``.

    Leaf by leaf as the thesis did, or with ``concurrent`` all sources at once (one collector
    thread each): ``count`` probes then take ``count * interval`` seconds for every leaf
    together, and each leaf's path is probed while the others carry a few packets a second.
    """
    collectors = [(PingCollector(source, target, cluster=leaf, count=count, interval=interval, step=step, **keys),
                   leaf) for source, leaf in sources]
    for batch in ([collectors] if concurrent else [[c] for c in collectors]):
        with collecting([collector for collector, _ in batch]):
            pass
    return pd.concat([collector.collect().assign(leaf=leaf) for collector, leaf in collectors], ignore_index=True)


def measure_single_cluster(testbed: Testbed, env: Env, *, leaves: int, count: int, interval: float,
                           concurrent: bool = False, **keys: str) -> pd.DataFrame:
    """Tables 7.2 and 7.3 on a test bed running :func:`single_cluster`: VM and pod RTT, leaf -> root."""
    root_vm = env.root.nodes[0].name
    leaves_vms = leaf_names(env, leaves)
    vm_rows = ping_each([(testbed.host(vm), vm) for vm in leaves_vms], testbed.host(root_vm).address,
                        step="vm-to-vm", count=count, interval=interval, concurrent=concurrent, **keys)
    cluster = env.root.name
    image = testbed.load_image(cluster, PROBE_IMAGE)
    pods = start_pods(testbed.kube(cluster), NAMESPACE,
                      [probe_pod(f"probe-{vm}", image, node=vm) for vm in [root_vm, *leaves_vms]])
    root_pod, leaf_pods = pods[0], pods[1:]
    try:
        pod_rows = ping_each(list(zip(leaf_pods, leaves_vms)), root_pod.address, step="pod-same-cluster",
                             count=count, interval=interval, concurrent=concurrent, **keys)
    finally:
        stop_pods(testbed.kube(cluster), NAMESPACE, [p.name for p in pods])
    return pd.concat([vm_rows, pod_rows], ignore_index=True)


def provider_pod(testbed: Testbed, provider: str, home_pod: str, timeout: float = 120.0) -> PodHost:
    """The running provider-side twin of ``home_pod`` (offloaded to ``provider``), as a host to exec in.

    The virtual kubelet serves no ``exec``, so commands run in the provider's own pod, found by
    :func:`labkit.testbed.pods.twin_pods`.

    Raises
    ------
    TestbedError
        When no such pod runs with an IP within ``timeout`` seconds.
    """
    from kubernetes import client

    core = client.CoreV1Api(testbed.kube(provider))

    def twin() -> PodHost | None:
        pods = [p for p in twin_pods(core, home_pod)
                if p.status.phase == "Running" and p.status.pod_ip and not p.metadata.deletion_timestamp]
        return PodHost(core, pods[0].metadata.namespace, pods[0].metadata.name, pods[0].status.pod_ip) if pods else None

    return wait_until(twin, timeout=timeout, error=TestbedError,
                      message=f"no running twin of pod {home_pod!r} in cluster {provider!r} after {timeout:.0f} s")


def measure_peered(testbed: Testbed, env: Env, *, leaves: int, count: int, interval: float, concurrent: bool = False,
                   **keys: str) -> pd.DataFrame:
    """Table 7.4 on ``env``'s peered test bed: pod RTT from ``leaves`` leaf clusters to the root.

    The root's probe pod runs on its physical node; each leaf's probe is a pod of the namespace
    the root offloads (:func:`offloaded_leaves`), bound to the leaf's virtual node ``liqo-<leaf>``,
    and pings from its twin in the leaf. The probes are deleted afterwards (the test bed may be
    shared with the next experiment).
    """
    root = env.root.name
    namespace, names = offloaded_leaves(env, leaves)
    image = load_image(testbed, [root, *names], PROBE_IMAGE)
    api = testbed.kube(root)
    homes = [probe_pod(f"probe-{leaf}", image, node=f"liqo-{leaf}") for leaf in names]
    for home in homes:
        home["spec"]["tolerations"] = [VIRTUAL_NODE_TOLERATION]
    try:
        root_pod = start_pods(api, NAMESPACE, [probe_pod(f"probe-{root}", image, node=env.root.nodes[0].name)])[0]
        start_pods(api, namespace, homes)
        sources = [(provider_pod(testbed, leaf, f"probe-{leaf}"), leaf) for leaf in names]
        return ping_each(sources, root_pod.address, step="pod-peered", count=count, interval=interval,
                         concurrent=concurrent, **keys)
    finally:
        stop_pods(api, namespace, [h["metadata"]["name"] for h in homes])
        stop_pods(api, NAMESPACE, [f"probe-{root}"])


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of RTT per step and leaf, plus an ``avg`` row per step.

    The ``avg`` row is the mean of the leaves' means (as the thesis averages its tables) and
    the pooled standard deviation of all probes of the step.
    """
    rtt = rows[rows["metric"] == "rtt"]
    per_leaf = rtt.groupby(["step", "leaf"])["value"].agg(mean="mean", std="std", n="count").reset_index()
    avg = per_leaf.groupby("step").apply(
        lambda g: pd.Series({"mean": g["mean"].mean(), "std": float(np.sqrt((g["std"] ** 2).mean())),
                             "n": int(g["n"].sum())}), include_groups=False).reset_index().assign(leaf="avg")
    return pd.concat([per_leaf, avg], ignore_index=True)[["step", "leaf", "mean", "std", "n"]]


def headline(tables: Tables) -> dict[str, float]:
    """The numbers an env's bounds may limit (``labkit.bounds``): the average RTT of each step, in ms."""
    avg = table(tables[NAME]).query("leaf == 'avg'")
    return {f"{row.step.replace('-', '_')}_rtt_ms": float(row.mean) for row in avg.itertuples()}


def compare(tables: Tables) -> pd.DataFrame:
    """The thesis vs labkit rows of every measured step (Tables 7.2-7.4, and 7.5 when both 7.3 and 7.4 exist)."""
    stats = table(tables[NAME])
    pairs = []
    for row in stats.itertuples():
        key = f"latency_ms.{THESIS_TABLES[row.step]}.{row.leaf}"
        try:
            ref = reference.published(key, "ms", n=reference.THESIS_PING_N)
        except KeyError:  # e.g. leaf-4: the thesis measured three leaves
            continue
        pairs.append((ref, float(row.mean), float(row.std), int(row.n)))
    over = overhead(stats)
    if over is not None:
        n = int(stats.query("leaf == 'avg' and step == 'pod-peered'")["n"].iloc[0])
        pairs.append((reference.published("latency_ms.table_7_5_liqo_overhead", "ms", n=reference.THESIS_PING_N),
                      over[0], over[1], n))
    return reference.compare(pairs)


def overhead(stats: pd.DataFrame) -> tuple[float, float] | None:
    """Table 7.5 from a :func:`table`: mean of 7.4's avg minus 7.3's avg, with the combined std (None without both)."""
    avg = stats[stats["leaf"] == "avg"].set_index("step")
    if not {"pod-same-cluster", "pod-peered"} <= set(avg.index):
        return None
    over = float(avg.loc["pod-peered", "mean"] - avg.loc["pod-same-cluster", "mean"])
    return over, float(np.hypot(avg.loc["pod-peered", "std"], avg.loc["pod-same-cluster", "std"]))


def fidelity(tables: Tables) -> list[Check]:
    """Tables 7.2-7.5's fidelity checks: none yet."""
    return []


def methods(tables: Tables) -> list[Method]:
    """Tables 7.2-7.5's method beside the thesis': not yet recorded."""
    return []


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Tables 7.2-7.5 as one figure (:func:`plot`)."""
    rows = tables[NAME]
    return {"Tables 7.2-7.5": plot(table(rows), rows, Path(out_dir) / "tab-7-2-7-5-latency.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """Mean ± std per step and leaf (:func:`table`)."""
    return {"RTT per step and leaf (ms)": table(tables[NAME])}


def plot(stats: pd.DataFrame, rows: pd.DataFrame, path: Path) -> Path:
    """Bars of mean ± std per leaf, ours beside the thesis', one panel per table (7.2-7.4, and 7.5 when
    both 7.3 and 7.4 were measured); ECDF of every probe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    steps = [s for s in THESIS_TABLES if s in set(stats["step"])]
    over = overhead(stats)
    panels = len(steps) + (over is not None) + 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), constrained_layout=True)
    for ax, step in zip(axes, steps):
        ours = stats[stats["step"] == step].set_index("leaf")
        x = np.arange(len(ours))
        published = reference.lookup(f"latency_ms.{THESIS_TABLES[step]}")
        theirs = [published.get(leaf, [np.nan, np.nan]) for leaf in ours.index]
        ax.bar(x - 0.2, ours["mean"], 0.4, yerr=ours["std"], capsize=3, label="labkit")
        ax.bar(x + 0.2, [t[0] for t in theirs], 0.4, yerr=[t[1] for t in theirs], capsize=3, label="thesis")
        ax.set_xticks(x, ours.index)
        ax.set(title=f"Table 7.{THESIS_TABLES[step].split('_')[2]}: {step}", ylabel="RTT (ms)")
        ax.legend(fontsize=8)
    if over is not None:
        ax = axes[len(steps)]
        published = reference.lookup("latency_ms.table_7_5_liqo_overhead")
        ax.bar([0, 1], [over[0], published[0]], yerr=[over[1], published[1]], capsize=3, color=["C0", "C1"])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks([0, 1], ["labkit", "thesis"])
        ax.set(title="Table 7.5: Liqo overhead (7.4 - 7.3)", ylabel="RTT difference (ms)")
    sns.ecdfplot(rows[rows["metric"] == "rtt"], x="value", hue="step", ax=axes[-1])
    axes[-1].set(xlabel="RTT (ms)", title="every probe", xscale="log")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
