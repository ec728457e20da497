"""Reaction (thesis 7.3, Fig. 7.2): how long the consumer takes to see a lost provider's virtual node NotReady.

The thesis peered two clusters (consumer -> provider), disabled the network interface of the
provider's VM running Liqo, stamped the time, and listed the consumer's nodes every 0.4 s
(``kubectl get node`` in a loop) until the virtual node read NotReady: median 9.75 s.

Here on two test beds, one after the other (:func:`beds`): the thesis' **pair** (:func:`pair_env`:
the root and one leaf, the root peered with it one way) and the env's own **bed** (the thesis'
Fig. 7.1: the root peered with four leaves, which peer in a mesh), the bed the stream experiments
see. On both the root is the consumer and one leaf the provider (:func:`provider_of`); each
repetition:

1. waits until the virtual node ``liqo-<provider>`` is Ready and, on Liqo, until the consumer's
   ForeignCluster reads the provider's API server ``Established`` again
   (:func:`~labkit.measure.liqo.wait_api_server_established`): Liqo checks it every 15 s, and a
   cut while it still reads ``Error`` from the previous one makes the node NotReady only at its
   Lease's grace period (the API path below; the thesis does not say how far apart its cuts were);
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

Liqo v0.10.2's gateway declares a tunnel down when no pong has arrived for ping interval x loss
threshold (2 s x 5 = 10 s), checked every interval x threshold / 10 = 1 s
(``pkg/liqonet/conncheck/receiver.go``). The last pong before a cut arrived 0-2 s before it, so
the tunnel is declared down 8-11 s after the cut (:func:`tunnel_window`); the virtual kubelet then
sets its node NotReady. :func:`fidelity` checks each bed's median against that window (plus the
observer's own lag) and the thesis' 9.75 s lies inside it.

Tables: ``reaction`` (metric ``not_ready_delay``, unit ``s``, one row per bed, repetition and
method, labels ``bed`` (``pair`` or ``bed``), ``repetition``, ``method``, ``reason``, ``path``,
``node``, ``peering`` (which peering ran, as the test bed says), ``ping_interval_s`` and
``loss_threshold`` (the gateway's timers of the run)) and ``reaction-nodes`` (every readiness
observation, metric ``node_ready``, plus the fault stamps, metric ``fault``).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import model_validator

from labkit import reference
from labkit.config import Env, validate_env
from labkit.experiments.base import Parameters as BaseParameters
from labkit.experiments.base import Tables, param, thesis
from labkit.faults import ClusterDisconnect, FaultLog, FaultSpec, injected
from labkit.fidelity import Check, Method, holds, within
from labkit.measure import collecting
from labkit.measure.liqo import wait_api_server_established
from labkit.measure.nodes import NodeReadyPoll, NodeReadyWatch, not_ready_delay, wait_node
from labkit.results import tidy
from labkit.testbed import Testbed
from labkit.testbed.liqoctl import runs_liqo
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
#: The beds: the thesis' pair of clusters, and the env's own test bed.
PAIR, BED = "pair", "bed"
#: Seconds the virtual kubelet and the API server may add to the gateway's verdict before a watch
#: sees NotReady (a status write on 2 shared cores), in :func:`fidelity`'s window.
UPDATE_LAG_S = 0.5
#: How far the pair's and the bed's medians may differ: one tick of the gateway's disconnect
#: observer (interval x threshold / 10 = 1 s); the bed's other peerings are not on the path measured.
PAIR_BED_TOLERANCE_S = 1.0
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
    pair: bool = thesis(True, "the thesis measured two clusters, a consumer peered with a provider (7.3)")
    bed: bool = param(True, "also the env's own test bed (the thesis' Fig. 7.1), which the stream experiments see")

    @model_validator(mode="after")
    def _some_bed(self) -> Parameters:
        if not (self.pair or self.bed):
            raise ValueError("pair and bed are both false: no test bed to measure on")
        return self


def beds(env: Env, params: Parameters) -> list[Env]:
    """The pair (:func:`pair_env`) when ``pair``, then ``env`` itself when ``bed`` (once, when ``env`` is a pair)."""
    pair = pair_env(env, params.provider) if params.pair else None
    if pair is not None and (not params.bed or len(env.clusters) == 2):
        return [pair]
    return [pair, env] if pair is not None else [env]


def bed_of(env: Env) -> str:
    """``pair`` for a test bed of two clusters (the thesis'), ``bed`` for a larger one."""
    return PAIR if len(env.clusters) == 2 else BED


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """``repetitions`` disconnections of :func:`provider_of` on one bed of :func:`beds`: ``reaction`` and
    ``reaction-nodes``, labelled with the bed, the peering the test bed ran and the gateway's timers."""
    delays, observations = measure_reactions(testbed, env, repetitions=params.repetitions, provider=params.provider,
                                             poll_interval=params.poll_interval, timeout=params.timeout,
                                             settle_s=params.settle_s, run_id="", scenario="")
    labels = {"bed": bed_of(env), "peering": peering_ran(testbed),
              "ping_interval_s": env.tuning.liqo.gateway_ping_interval_s,
              "loss_threshold": env.tuning.liqo.gateway_ping_loss_threshold}
    return {NAME: delays.assign(**labels), f"{NAME}-nodes": observations.assign(bed=labels["bed"])}


def peering_ran(testbed: Testbed) -> str:
    """Which peering ran, as the test bed says (real Liqo or the kit's look-alike); ``not recorded`` when it does not."""
    return str(getattr(testbed, "peering", "") or "not recorded by the test bed")


def pair_env(env: Env, provider: str | None = None) -> Env:
    """The thesis' pair: ``env``'s root and one leaf (:func:`provider_of`), the root peered with it one way.

    Backend, timers and seed come from ``env``; nothing is offloaded (the thesis' pair ran no workload).
    """
    leaf = provider_of(env, provider)
    keep = [c.model_dump(mode="json", exclude_defaults=True) for c in env.clusters if c.name in (env.root.name, leaf)]
    raw = {"name": f"{env.name}-pair", "seed": env.seed, "backend": env.backend.model_dump(mode="json"),
           "tuning": env.tuning.model_dump(mode="json"), "clusters": keep,
           "peerings": [{"consumer": env.root.name, "provider": leaf}]}
    return validate_env(raw, source=f"pair_env({env.name}, {leaf})")


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
    api = testbed.kube(consumer)
    core = client.CoreV1Api(api)
    wait_node(core, node, ready=True, timeout=timeout)
    wait_api_server_established(client.CustomObjectsApi(api), provider, timeout=timeout, required=runs_liqo(env))
    labels = {"step": STEP, **keys}
    watch = NodeReadyWatch(client.CoreV1Api(api), cluster=consumer, nodes=[node], **labels)
    poller = NodeReadyPoll(client.CoreV1Api(api), cluster=consumer, nodes=[node],
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


def labelled(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the labels of every bed: tables from before the pair was measured came from the env's bed."""
    defaults = {"bed": BED, "peering": "not recorded by the test bed",
                "ping_interval_s": float("nan"), "loss_threshold": float("nan")}
    return rows.assign(**{k: v for k, v in defaults.items() if k not in rows})


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per bed and method: n, missed, median, quartiles, IQR, min, max, mean, std (s), the paths that fired
    and the peering that ran."""
    out = []
    delays = labelled(rows[rows["metric"] == "not_ready_delay"])
    for (bed, method), grp in delays.groupby(["bed", "method"], sort=False):
        v = grp["value"].dropna()
        q1, med, q3 = (np.quantile(v, [0.25, 0.5, 0.75]) if len(v) else (np.nan,) * 3)
        paths = grp.loc[grp["value"].notna(), "path"].value_counts()
        out.append({"bed": bed, "method": method, "n": int(len(v)), "missed": int(grp["value"].isna().sum()),
                    "median": med, "q1": q1, "q3": q3, "iqr": q3 - q1,
                    "min": v.min() if len(v) else np.nan, "max": v.max() if len(v) else np.nan,
                    "mean": v.mean() if len(v) else np.nan, "std": v.std() if len(v) > 1 else np.nan,
                    "paths": ", ".join(f"{p}: {k}" for p, k in paths.items()),
                    "peering": ", ".join(sorted(set(grp["peering"].astype(str))))})
    order = {PAIR: 0, BED: 1}
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    return frame.sort_values(["bed", "method"], key=lambda c: c.map(order) if c.name == "bed" else c,
                             ignore_index=True)


def headline(tables: Tables) -> dict[str, float]:
    """The numbers an env's bounds may limit: per bed and method the median delay (s) and the missed detections;
    ``not_ready_s_median_<method>`` is the larger of the beds' medians, ``missed_<method>`` their sum."""
    out: dict[str, float] = {}
    stats = table(tables[NAME])
    for row in stats.itertuples():
        if row.n:
            out[f"{row.bed}_not_ready_s_median_{row.method}"] = float(row.median)
        out[f"{row.bed}_missed_{row.method}"] = float(row.missed)
    for method, grp in stats.groupby("method"):
        if grp["n"].sum():
            out[f"not_ready_s_median_{method}"] = float(grp["median"].max())
        out[f"missed_{method}"] = float(grp["missed"].sum())
    return out


def compare(tables: Tables) -> pd.DataFrame:
    """Thesis vs labkit: the median delay (the thesis published a median).

    The row keyed :data:`REFERENCE_KEY` is the thesis' own set-up and method (the pair, 0.4 s
    poll); the others are keyed ``<REFERENCE_KEY>.<bed>.<method>``. ``labkit_mean`` holds our
    *median*, ``labkit_std`` our std.
    """
    ref = reference.published(REFERENCE_KEY, "s")
    pairs = []
    for row in table(tables[NAME]).itertuples():
        if row.n == 0:
            continue
        key = ref if (row.bed, row.method) == (PAIR, "poll") else \
            reference.Published(f"{REFERENCE_KEY}.{row.bed}.{row.method}", ref.mean, ref.std, ref.n, ref.unit)
        pairs.append((key, float(row.median), None if np.isnan(row.std) else float(row.std), int(row.n)))
    return reference.compare(pairs)


def tunnel_window(ping_interval_s: float = 2.0, loss_threshold: int = 5) -> tuple[float, float]:
    """Seconds after a cut in which Liqo v0.10.2's gateway declares the tunnel down.

    The disconnect observer runs every ``interval x threshold / 10`` and declares the peer down
    once more than ``interval x threshold`` have passed since the last pong; that pong came 0 to
    one interval before the cut. So: from ``interval x (threshold - 1)`` to ``interval x
    threshold + interval x threshold / 10`` (8-11 s with the defaults 2 s and 5).
    """
    silence = ping_interval_s * loss_threshold
    return silence - ping_interval_s, silence + silence / 10


def _timers(rows: pd.DataFrame) -> tuple[float, int]:
    """The gateway's ping interval and loss threshold the rows were measured with (Liqo's defaults when unrecorded)."""
    interval = pd.to_numeric(rows.get("ping_interval_s"), errors="coerce").dropna() if "ping_interval_s" in rows else []
    threshold = pd.to_numeric(rows.get("loss_threshold"), errors="coerce").dropna() if "loss_threshold" in rows else []
    return (float(interval.iloc[0]) if len(interval) else 2.0, int(threshold.iloc[0]) if len(threshold) else 5)


def fidelity(tables: Tables) -> list[Check]:
    """Fig. 7.2's checks, per bed: each observer's median in Liqo's window, every NotReady from the tunnel
    check, none missed; and the pair's median within one observer tick of the bed's."""
    rows = labelled(tables[NAME])
    delays = rows[rows["metric"] == "not_ready_delay"]
    interval, threshold = _timers(delays)
    low, high = tunnel_window(interval, threshold)
    poll_s = float(reference.lookup("reaction_s.polling_interval"))
    published = f"{reference.lookup(REFERENCE_KEY)} s (median)"
    window = (f"Liqo v0.10.2 declares the tunnel down {low:g}-{high:g} s after a cut (no pong for {interval:g} s x "
              f"{threshold}, checked every {interval * threshold / 10:g} s)")
    out: list[Check] = []
    for row in table(tables[NAME]).itertuples():
        where = "the pair" if row.bed == PAIR else "the env bed"
        lag = UPDATE_LAG_S + (poll_s if row.method == "poll" else 0.0)
        observer = "a 0.4 s poll (the thesis')" if row.method == "poll" else "a watch"
        out.append(within(
            "Fig. 7.2", f"NotReady delay, median, {where}, {observer}", row.median if row.n else None, low=low,
            high=high + lag, unit="s", basis="software", thesis=published if row.method == "poll" else "",
            spread=f"IQR {row.q1:.2f}–{row.q3:.2f}" if row.n else "", n=int(row.n),
            reason=f"{window}; + {lag:g} s for the virtual kubelet's update and the observer"))
        mine = delays[(delays["bed"] == row.bed) & (delays["method"] == row.method)]
        other = int((mine["value"].notna() & (mine["path"] != "tunnel")).sum())
        out.append(holds(
            "Fig. 7.2", f"every NotReady from the tunnel check, {where}, {observer}",
            other == 0 and row.missed == 0 if len(mine) else None, observed=other + int(row.missed), unit="cuts",
            expected="0 cuts seen another way or missed", n=len(mine), basis="software",
            reason="the tunnel check (10 s) fires before the API path (Lease grace 20 s, Table 7.1): another path "
                   "or a missed cut means the tunnel check did not work"))
    stats = table(tables[NAME])
    poll = stats[(stats["method"] == "poll") & (stats["n"] > 0)].set_index("bed")
    if {PAIR, BED} <= set(poll.index):
        gap = abs(float(poll.loc[PAIR, "median"] - poll.loc[BED, "median"]))
        out.append(within(
            "Fig. 7.2", "pair vs env bed: difference of the poll medians", gap, high=PAIR_BED_TOLERANCE_S, unit="s",
            basis="software", n=int(poll["n"].sum()),
            reason="the bed's other peerings are not on the path measured: the medians may differ by one tick "
                   "of the gateway's disconnect observer"))
    return out


def methods(tables: Tables) -> list[Method]:
    """Fig. 7.2: the thesis' pair and 0.4 s poll, ours on the pair and the bed, and what still differs."""
    rows = labelled(tables[NAME])
    delays = rows[rows["metric"] == "not_ready_delay"]
    stats = table(tables[NAME])
    interval, threshold = _timers(delays)
    beds_run = "; ".join(f"{'the pair' if r.bed == PAIR else 'the env bed (the root peered with every leaf)'}: "
                         f"{r.n + r.missed} cuts" for r in stats[stats["method"] == "poll"].itertuples())
    peering = ", ".join(sorted(set(delays["peering"].astype(str)))) or "not recorded by the test bed"
    look_alike = "look-alike" in peering
    return [Method(
        "Fig. 7.2",
        thesis="two clusters, the consumer peered one way with the provider (Liqo v0.10.2, k3s v1.24.17); a script "
               "disabled the network interface of the provider's VM running Liqo and stamped the time; the consumer "
               "ran `kubectl get node` every 0.4 s until the virtual node read NotReady; the median (9.75 s) of a "
               "number of cuts the thesis does not give",
        ours=f"{beds_run}; the provider VM's lab interface cut and stamped; two observers of the consumer at once, "
             f"a list of nodes every 0.4 s (the thesis') and a watch; cuts at a random phase of the gateway's "
             f"{interval:g} s ping; peering: {peering}; gateway ping {interval:g} s x {threshold}",
        environment="network namespaces on one 2-core machine instead of 4-core VMs on Crownlabs; the API servers "
                    "and the observers share those cores",
        implementation=("the kit's Liqo look-alike (its own virtual kubelet and tunnel check, on Liqo's rule) "
                        "instead of Liqo v0.10.2" if look_alike else
                        "none for the timers measured (Liqo v0.10.2 built from its source); its WireGuard runs in "
                        "user space (wireguard-go)" if peering.startswith("Liqo") else
                        f"unknown: the test bed did not say which peering ran ({peering})"))]


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Fig. 7.2 (:func:`plot`)."""
    return {"Fig. 7.2": plot(tables[NAME], Path(out_dir) / "fig-7-2-reaction.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """The delays per bed and observation method (:func:`table`)."""
    return {"interface down -> virtual node NotReady (s)": table(tables[NAME])}


def plot(rows: pd.DataFrame, path: Path) -> Path:
    """Box plot (points coloured by path) and ECDF of the delays per bed and method, Liqo's window shaded and
    the thesis' median as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    thesis = float(reference.lookup(REFERENCE_KEY))
    data = labelled(rows[(rows["metric"] == "not_ready_delay") & rows["value"].notna()])
    data = data.assign(observer=[f"{'pair' if b == PAIR else 'env bed'}\n{m}"
                                 for b, m in zip(data["bed"], data["method"])], path=data["path"].astype(str))
    order = [f"{b}\n{m}" for b in ("pair", "env bed") for m in METHODS if f"{b}\n{m}" in set(data["observer"])]
    low, high = tunnel_window(*_timers(data))
    fig, (box, ecdf) = plt.subplots(1, 2, figsize=(11, 3.9), constrained_layout=True)
    for ax in (box, ecdf):
        span = ax.axhspan if ax is box else ax.axvspan
        span(low, high, color="C2", alpha=0.12, label=f"Liqo's tunnel check: {low:g}-{high:g} s")
    sns.boxplot(data=data, x="observer", y="value", order=order, ax=box, color="0.85", showfliers=False)
    sns.stripplot(data=data, x="observer", y="value", order=order, hue="path", ax=box, size=5, jitter=0.15)
    box.axhline(thesis, color="C3", ls="--", label=f"thesis median {thesis} s")
    box.set(xlabel="bed and observer (poll: the thesis' 0.4 s `get nodes`; watch: ms receive time)",
            ylabel="interface down -> virtual node NotReady (s)", title="Fig. 7.2: consumer reaction")
    box.legend(fontsize=7)
    sns.ecdfplot(data=data, x="value", hue="observer", hue_order=order, ax=ecdf)
    ecdf.axvline(thesis, color="C3", ls="--")
    ecdf.set(xlabel="delay (s)", title=f"ECDF ({len(data)} detections)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
