"""Reaction (thesis 7.3, Fig. 7.2): how long the consumer takes to see a lost provider's virtual node NotReady.

The thesis peered two clusters (consumer -> provider), disabled the network interface of the
provider's VM running Liqo, stamped the time, and listed the consumer's nodes every 0.4 s
(``kubectl get node`` in a loop) until the virtual node read NotReady: median 9.75 s.

Here, on the env's test bed (the thesis': the root peered with four leaves, which peer in a mesh),
the root is the consumer and one leaf the provider (:func:`provider_of`); each repetition:

1. waits until the virtual node ``liqo-<provider>`` is Ready;
2. starts two observers of the consumer at once: a Kubernetes watch on Nodes (receive time,
   ms) and the thesis' own method, a list of Nodes every ``poll_interval`` s
   (:class:`~labkit.measure.nodes.NodeReadyWatch`, :class:`~labkit.measure.nodes.NodeReadyPoll`);
3. after a random pause of up to one gateway ping interval (2 s; seeded by the env), so the cuts
   do not all fall at the same phase of the tunnel check's timer (the repetitions' own rhythm is
   a multiple of it), injects ``cluster-disconnect`` on the provider (every VM of it loses its lab
   interface), whose stamp is the time zero;
4. waits until both observers saw the node not Ready, recovers the interface (always), and
   waits for Ready again before the next repetition.

The reason of the Ready condition says which path fired (see docs/peering.md): the gateway's
tunnel check (no pong for 5 x 2 s: ``KubeletNotReady``, the look-alike's ``LiqoTunnelDisconnected``)
or the API path (the virtual kubelet stops renewing its Lease, the consumer's controller manager
sets ``NodeStatusUnknown`` after its grace period).

Tables: ``reaction`` (metric ``not_ready_delay``, unit ``s``, one row per repetition and method,
labels ``repetition``, ``method``, ``reason``, ``path``, ``node``) and ``reaction-nodes`` (every
readiness observation, metric ``node_ready``, plus the fault stamps, metric ``fault``).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labkit import reference
from labkit.config import Env
from labkit.experiments.base import Parameters as BaseParameters
from labkit.experiments.base import Tables, param, thesis
from labkit.fidelity import Check, Method
from labkit.faults import ClusterDisconnect, FaultLog, FaultSpec, injected
from labkit.measure import collecting
from labkit.measure.nodes import NodeReadyPoll, NodeReadyWatch, not_ready_delay, wait_node
from labkit.results import tidy
from labkit.testbed import Testbed
from labkit.waiting import poll

#: Thesis key of the published median (Fig. 7.2).
REFERENCE_KEY = "reaction_s.figure_7_2_virtual_node_not_ready_median"
#: Step label of every row.
STEP = "provider-disconnect"
#: Ready-condition reasons and the path that set them: Liqo v0.10.2's virtual kubelet sets Ready=False
#: ``KubeletNotReady`` (with NetworkUnavailable ``LiqoNetworkingDown``) when its TunnelEndpoint leaves
#: Connected; the look-alike's says ``LiqoTunnelDisconnected``; the consumer's controller manager
#: sets ``NodeStatusUnknown`` when the Lease is not renewed within its grace period.
PATHS = {"KubeletNotReady": "tunnel", "LiqoTunnelDisconnected": "tunnel", "NodeStatusUnknown": "api-lease"}
#: The observation methods, the thesis' first.
METHODS = ("poll", "watch")
#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns: the delays, and every observation with the fault stamps.
TABLES = (NAME, f"{NAME}-nodes")


class Parameters(BaseParameters):
    """What a reaction run measures."""

    repetitions: int = param(20, "disconnections of the provider; the thesis gives a median, not its count", ge=1)
    provider: str | None = param(None, "the leaf to disconnect; None: the first cluster the root peers with")
    poll_interval: float = thesis(0.4, "the thesis listed the nodes every 0.4 s (`kubectl get node` in a loop, 7.3)",
                                  gt=0)
    timeout: float = param(90.0, "seconds to wait for NotReady, and for Ready again, per repetition", gt=0)
    settle_s: float = param(3.0, "seconds between repetitions: the tunnel check and the Lease settle", ge=0)


def beds(env: Env, params: Parameters) -> list[Env]:
    """The env's own test bed (the thesis': the root peered with every leaf)."""
    return [env]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """``repetitions`` disconnections of :func:`provider_of`: the ``reaction`` and ``reaction-nodes`` tables."""
    delays, observations = measure_reactions(testbed, env, repetitions=params.repetitions, provider=params.provider,
                                             poll_interval=params.poll_interval, timeout=params.timeout,
                                             settle_s=params.settle_s, run_id="", scenario="")
    return {NAME: delays, f"{NAME}-nodes": observations}


def provider_of(env: Env, provider: str | None = None) -> str:
    """The leaf to disconnect: ``provider``, or the first cluster the root peers with (virtual node ``liqo-<leaf>``).

    Raises
    ------
    ValueError
        When the root peers with no cluster, or not with ``provider``.
    """
    from labkit.topology import plan

    providers = [v.provider for v in plan(env).virtual_nodes if v.consumer == env.root.name]
    if not providers:
        raise ValueError(f"env {env.name!r}: the root {env.root.name!r} peers with no cluster to disconnect")
    if provider is None:
        return providers[0]
    if provider not in providers:
        raise ValueError(f"env {env.name!r}: the root does not peer with {provider!r}; it peers with {providers}")
    return provider


def path_of(reason: str) -> str:
    """Which detection path a Ready-condition reason comes from (``tunnel``, ``api-lease`` or ``other``)."""
    return PATHS.get(reason, "other")


def _saw_not_ready(collector: Any, node: str, since: pd.Timestamp) -> bool:
    """Whether ``collector`` has recorded ``node`` not Ready at or after ``since``."""
    rows = collector.frame()
    if rows.empty:
        return False
    t = pd.to_datetime(rows["t"], utc=True)
    return bool(((rows["node"] == node) & (t >= since) & (rows["value"] == 0.0)).any())


def delay_rows(observed: pd.DataFrame, node: str, fault_t: pd.Timestamp, repetition: int) -> list[dict[str, Any]]:
    """One ``not_ready_delay`` row per method: seconds from ``fault_t`` to the first NotReady, and its reason.

    A method that never saw the node not Ready gets ``value`` NaN and path ``not-observed``.
    """
    out = []
    for method in METHODS:
        mine = observed[observed["method"] == method]
        delay = not_ready_delay(mine, node, fault_t)
        if delay is None:
            reason, path = "", "not-observed"
        else:
            first = mine[(mine["node"] == node) & (mine["t"] >= fault_t) & (mine["value"] == 0.0)].sort_values("t")
            reason = str(first["reason"].iloc[0])
            path = path_of(reason)
        out.append({"t": fault_t, "metric": "not_ready_delay", "unit": "s",
                    "value": float("nan") if delay is None else delay, "repetition": repetition,
                    "method": method, "reason": reason, "path": path, "node": node})
    return out


def repetition(testbed: Testbed, env: Env, provider: str, index: int, *, poll_interval: float, timeout: float,
               phase_s: float = 0.0, **keys: str) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """One disconnection of ``provider`` (``phase_s`` seconds after both observers started):
    delays per method, and every observation and fault stamp."""
    from kubernetes import client

    consumer = env.root.name
    node = f"liqo-{provider}"
    core = client.CoreV1Api(testbed.kube(consumer))
    wait_node(core, node, ready=True, timeout=timeout)
    labels = {"step": STEP, **keys}
    watch = NodeReadyWatch(client.CoreV1Api(testbed.kube(consumer)), cluster=consumer, nodes=[node], **labels)
    poller = NodeReadyPoll(client.CoreV1Api(testbed.kube(consumer)), cluster=consumer, nodes=[node],
                           interval=poll_interval, **labels)
    log = FaultLog()
    spec = FaultSpec(name=f"disconnect-{index}", action=ClusterDisconnect(cluster=provider))
    with collecting([watch, poller]):
        time.sleep(1.0 + phase_s)  # both observers record the Ready state before the cut
        with injected(testbed, env, spec, log):
            fault_t = log.injected_at(spec.name)
            poll(lambda: all(_saw_not_ready(c, node, fault_t) for c in (watch, poller)), timeout=timeout, interval=0.1)
        wait_node(core, node, ready=True, timeout=timeout)
    observed = pd.concat([watch.collect(), poller.collect()], ignore_index=True)
    faults = log.table(**labels).assign(cluster=provider)
    everything = pd.concat([observed, faults], ignore_index=True).assign(repetition=index)
    return delay_rows(observed, node, fault_t, index), everything


def measure_reactions(testbed: Testbed, env: Env, *, repetitions: int, provider: str | None = None,
                      poll_interval: float = 0.4, timeout: float = 90.0, settle_s: float = 3.0,
                      **keys: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 7.2 on ``env``'s running test bed: ``repetitions`` disconnections of :func:`provider_of` ``provider``.

    Returns
    -------
    tuple of DataFrame
        The ``reaction`` table (delays) and the ``reaction-nodes`` table (observations).
    """
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    provider = provider_of(env, provider)
    rng = random.Random(env.seed)
    delays: list[dict[str, Any]] = []
    observations = []
    for index in range(repetitions):
        rows, observed = repetition(testbed, env, provider, index, poll_interval=poll_interval, timeout=timeout,
                                    phase_s=rng.uniform(0.0, env.tuning.liqo.gateway_ping_interval_s), **keys)
        delays += rows
        observations.append(observed)
        time.sleep(settle_s)  # the tunnel check and the Lease settle before the next cut
    table = tidy(delays, step=STEP, cluster=env.root.name, **keys)
    return table, pd.concat(observations, ignore_index=True)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: n, missed, median, quartiles, IQR, min, max, mean, std (s) and the paths that fired."""
    out = []
    for method, grp in rows[rows["metric"] == "not_ready_delay"].groupby("method", sort=False):
        v = grp["value"].dropna()
        q1, med, q3 = (np.quantile(v, [0.25, 0.5, 0.75]) if len(v) else (np.nan,) * 3)
        paths = grp.loc[grp["value"].notna(), "path"].value_counts()
        out.append({"method": method, "n": int(len(v)), "missed": int(grp["value"].isna().sum()),
                    "median": med, "q1": q1, "q3": q3, "iqr": q3 - q1,
                    "min": v.min() if len(v) else np.nan, "max": v.max() if len(v) else np.nan,
                    "mean": v.mean() if len(v) else np.nan, "std": v.std() if len(v) > 1 else np.nan,
                    "paths": ", ".join(f"{p}: {k}" for p, k in paths.items())})
    return pd.DataFrame(out)


def headline(tables: Tables) -> dict[str, float]:
    """The numbers an env's bounds may limit: median delay per method (s) and the missed detections."""
    out: dict[str, float] = {}
    for row in table(tables[NAME]).itertuples():
        if row.n:
            out[f"not_ready_s_median_{row.method}"] = float(row.median)
        out[f"missed_{row.method}"] = float(row.missed)
    return out


def compare(tables: Tables) -> pd.DataFrame:
    """Thesis vs labkit: the median delay (the thesis published a median).

    The row keyed :data:`REFERENCE_KEY` is the thesis' own method (0.4 s poll); the watch's row
    is keyed ``<REFERENCE_KEY>.watch``. ``labkit_mean`` holds our *median*, ``labkit_std`` our std.
    """
    ref = reference.published(REFERENCE_KEY, "s")
    pairs = []
    for row in table(tables[NAME]).itertuples():
        if row.n == 0:
            continue
        key = ref if row.method == "poll" else reference.Published(f"{REFERENCE_KEY}.{row.method}", ref.mean,
                                                                   ref.std, ref.n, ref.unit)
        pairs.append((key, float(row.median), None if np.isnan(row.std) else float(row.std), int(row.n)))
    return reference.compare(pairs)


def fidelity(tables: Tables) -> list[Check]:
    """Fig. 7.2's fidelity checks: none yet."""
    return []


def methods(tables: Tables) -> list[Method]:
    """Fig. 7.2's method beside the thesis': not yet recorded."""
    return []


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Fig. 7.2 (:func:`plot`)."""
    return {"Fig. 7.2": plot(tables[NAME], Path(out_dir) / "fig-7-2-reaction.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """The delays per observation method (:func:`table`)."""
    return {"interface down -> virtual node NotReady (s)": table(tables[NAME])}


def plot(rows: pd.DataFrame, path: Path) -> Path:
    """Box plot (points coloured by path) and ECDF of the delays per method, the thesis' median as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    thesis = float(reference.lookup(REFERENCE_KEY))
    data = rows[(rows["metric"] == "not_ready_delay") & rows["value"].notna()].copy()
    data["method"] = data["method"].astype(str)
    data["path"] = data["path"].astype(str)
    order = [m for m in METHODS if m in set(data["method"])]
    fig, (box, ecdf) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    sns.boxplot(data=data, x="method", y="value", order=order, ax=box, color="0.85", showfliers=False)
    sns.stripplot(data=data, x="method", y="value", order=order, hue="path", ax=box, size=5, jitter=0.15)
    box.axhline(thesis, color="C3", ls="--", label=f"thesis median {thesis} s")
    box.set(xlabel="observer (poll: the thesis' 0.4 s `get nodes`; watch: ms receive time)",
            ylabel="interface down -> virtual node NotReady (s)", title="Fig. 7.2: consumer reaction")
    box.legend(fontsize=8)
    sns.ecdfplot(data=data, x="value", hue="method", hue_order=order, ax=ecdf)
    ecdf.axvline(thesis, color="C3", ls="--")
    ecdf.set(xlabel="delay (s)", title=f"ECDF ({len(data) // max(1, len(order))} repetitions)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
