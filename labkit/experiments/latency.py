"""Latency (thesis 7.2): round-trip times leaf -> root, as Tables 7.2-7.5 report them.

- Table 7.2, network: VM to VM (each leaf VM pings the root VM).
- Table 7.3, same cluster: a pod on each leaf node pings a pod on the root node, the leaf and
  root VMs being nodes of *one* cluster (:func:`single_cluster`).
- Table 7.4, peered clusters: the same pods, the leaves being clusters peered with the root
  (needs the Liqo-compatible peering of the embedded test bed).
- Table 7.5: Liqo overhead = mean of 7.4 - mean of 7.3.

The thesis pinged ~1000 times per test, leaf by leaf; so do we (``count`` per leaf, leaves
one after another).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from labkit import reference
from labkit.config import Env, validate_env
from labkit.measure import collecting
from labkit.measure.ping import PingCollector
from labkit.testbed import off_event_loop, running
from labkit.testbed.pods import probe_pod, start_pods

NAMESPACE = "labkit-latency"
#: Thesis table of each step, for the comparison.
TABLES = {"vm-to-vm": "table_7_2_network", "pod-same-cluster": "table_7_3_same_cluster",
          "pod-peered": "table_7_4_liqo_peered"}


def single_cluster(env: Env, leaves: int = 3) -> Env:
    """The same VMs (the root and the first ``leaves`` leaves) as nodes of one cluster (Table 7.3)."""
    vms = [env.root.nodes[0].name] + [c.nodes[0].name for c in env.clusters if c.role != "acc"][:leaves]
    raw = {"name": f"{env.name}-single", "seed": env.seed, "backend": env.backend.model_dump(mode="json"),
           "tuning": env.tuning.model_dump(mode="json"),
           "clusters": [{"name": "single", "role": "acc", "nodes": [{"name": vm} for vm in vms]}]}
    return validate_env(raw, source=f"single_cluster({env.name})")


def leaf_names(env: Env, leaves: int) -> list[str]:
    """The first ``leaves`` leaf VMs of ``env`` (thesis: Leaf-1..3)."""
    names = [n.name for c in env.clusters for n in c.nodes if n.name != env.root.nodes[0].name]
    return names[:leaves]


def ping_each(sources: Sequence[Any], target: str, *, step: str, count: int, interval: float,
              **keys: str) -> pd.DataFrame:
    """Ping ``target`` from each source in turn (as the thesis did); tidy rows labelled with ``leaf``."""
    frames = []
    for source, leaf in sources:
        collector = PingCollector(source, target, cluster=leaf, count=count, interval=interval, step=step, **keys)
        with collecting([collector]):
            pass
        frames.append(collector.collect().assign(leaf=leaf))
    return pd.concat(frames, ignore_index=True)


def measure_single_cluster(testbed: Any, env: Env, *, leaves: int, count: int, interval: float,
                           **keys: str) -> pd.DataFrame:
    """Tables 7.2 and 7.3 on a test bed running :func:`single_cluster`: VM and pod RTT, leaf -> root."""
    root_vm = env.root.nodes[0].name
    leaves_vms = leaf_names(env, leaves)
    vm_rows = ping_each([(testbed.host(vm), vm) for vm in leaves_vms], testbed.host(root_vm).address,
                        step="vm-to-vm", count=count, interval=interval, **keys)
    cluster = env.root.name
    image = testbed.load_image(cluster, "runtime")
    pods = start_pods(testbed.kube(cluster), NAMESPACE,
                      [probe_pod(f"probe-{vm}", image, node=vm) for vm in [root_vm, *leaves_vms]])
    root_pod, leaf_pods = pods[0], pods[1:]
    pod_rows = ping_each(list(zip(leaf_pods, leaves_vms)), root_pod.address, step="pod-same-cluster",
                         count=count, interval=interval, **keys)
    return pd.concat([vm_rows, pod_rows], ignore_index=True)


@off_event_loop
def run_single_cluster(env: Env, *, leaves: int, count: int, interval: float, **keys: str) -> pd.DataFrame:
    """Bring up :func:`single_cluster` of ``env``, measure Tables 7.2 and 7.3, always tear down."""
    single = single_cluster(env, leaves)
    with running(single) as testbed:
        return measure_single_cluster(testbed, single, leaves=leaves, count=count, interval=interval, **keys)


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


def compare(summary: pd.DataFrame) -> pd.DataFrame:
    """The thesis vs labkit rows of every measured step (Tables 7.2-7.4, and 7.5 when both 7.3 and 7.4 exist)."""
    pairs = []
    for row in summary.itertuples():
        key = f"latency_ms.{TABLES[row.step]}.{row.leaf}"
        try:
            ref = reference.published(key, "ms", n=reference.THESIS_PING_N)
        except KeyError:  # e.g. leaf-4: the thesis measured three leaves
            continue
        pairs.append((ref, float(row.mean), float(row.std), int(row.n)))
    avg = summary[summary["leaf"] == "avg"].set_index("step")
    if {"pod-same-cluster", "pod-peered"} <= set(avg.index):
        over = avg.loc["pod-peered", "mean"] - avg.loc["pod-same-cluster", "mean"]
        spread = float(np.hypot(avg.loc["pod-peered", "std"], avg.loc["pod-same-cluster", "std"]))
        pairs.append((reference.published("latency_ms.table_7_5_liqo_overhead", "ms", n=reference.THESIS_PING_N),
                      float(over), spread, int(avg.loc["pod-peered", "n"])))
    return reference.compare(pairs)


def plot(summary: pd.DataFrame, rows: pd.DataFrame, path: Any) -> Any:
    """Bars of mean ± std per leaf, ours beside the thesis', one panel per table; ECDF of every probe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    steps = [s for s in TABLES if s in set(summary["step"])]
    fig, axes = plt.subplots(1, len(steps) + 1, figsize=(4.2 * (len(steps) + 1), 3.4), constrained_layout=True)
    for ax, step in zip(axes, steps):
        ours = summary[summary["step"] == step].set_index("leaf")
        x = np.arange(len(ours))
        thesis = [reference.lookup(f"latency_ms.{TABLES[step]}").get(leaf, [np.nan, np.nan]) for leaf in ours.index]
        ax.bar(x - 0.2, ours["mean"], 0.4, yerr=ours["std"], capsize=3, label="labkit")
        ax.bar(x + 0.2, [t[0] for t in thesis], 0.4, yerr=[t[1] for t in thesis], capsize=3, label="thesis")
        ax.set_xticks(x, ours.index)
        ax.set(title=f"Table 7.{TABLES[step].split('_')[2]}: {step}", ylabel="RTT (ms)")
        ax.legend(fontsize=8)
    sns.ecdfplot(rows[rows["metric"] == "rtt"], x="value", hue="step", ax=axes[-1])
    axes[-1].set(xlabel="RTT (ms)", title="every probe", xscale="log")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
