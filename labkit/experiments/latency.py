"""Latency (thesis 7.2): round-trip times leaf -> root, as Tables 7.2-7.5 report them.

- Table 7.2, network: VM to VM (each leaf VM pings the root VM).
- Table 7.3, same cluster: a pod on each leaf node pings a pod on the root node, the leaf and
  root VMs being nodes of *one* cluster (:func:`single_cluster`).
- Table 7.4, peered clusters: the same pods, the leaves being clusters peered with the root
  (needs the peering of the test bed: Liqo, or the kit's look-alike).
- Table 7.5: Liqo overhead = mean of 7.4 - mean of 7.3.

Two test beds, one after the other (:func:`beds`): :func:`single_cluster` of the env for Table
7.3, then the env itself (the thesis' test bed, Fig. 7.1) for Tables 7.2 and 7.4: the root and each
leaf are clusters of their own, the root peered with every leaf and offloading a namespace to
them. A probe pod runs on the root's physical node; for each leaf, a probe pod of the root's
offloaded namespace is bound to the leaf's virtual node, so it runs *in the leaf cluster* (the
virtual kubelet's ShadowPod), and that provider-side pod pings the root pod's address across the
peering. The VMs are the same network namespaces on the same bridge in both beds, so Table 7.2's
VM-to-VM pings run on the thesis bed, where the thesis' VMs also ran their clusters.

**The thesis' protocol** (7.2): ``ping`` about 1000 times per test, individually from each leaf to
the root; it gives no interval, so ping's default, 1 s. The defaults follow it (``count`` 1000,
``interval`` 1 s, leaf by leaf): 3 leaves x 1000 s per table. With ``interleave`` (the default),
Tables 7.2 and 7.4 run together, leaf by leaf: the leaf VM's probe and its pod's probe go half an
interval apart, so no probe is ever in flight with another (an RTT is a few ms at most, checked
by :func:`fidelity`): each probe sees what it would see alone, and the full protocol takes two
tables' time instead of three (:func:`duration_s`). ``concurrent`` (the quick profile): every leaf
at once, faster than the thesis, and labelled so in the tables and the report.

Table 7.3's pods cross nodes of one cluster through the cluster's pod network; which data path
carried them is measured, not assumed (:func:`pod_network`: the leaf VM's ``flannel.1`` VXLAN
device and its packet counter), and Table 7.4's peering is the one the test bed says it ran.

Table ``latency``: metric ``rtt`` (ms) per probe and ``loss`` per leaf, labels ``step``, ``leaf``,
``seq``, ``source``, ``target``, the protocol (``count``, ``interval_s``, ``concurrent``,
``interleaved``) and the path (``path``: the pod network's data path, or the peering).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labkit import reference
from labkit.config import Env, validate_env
from labkit.experiments.base import Parameters as BaseParameters
from labkit.experiments.base import Tables, param, thesis
from labkit.experiments.reaction import peering_ran
from labkit.fidelity import Check, Method, holds, within
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
#: The VXLAN device of flannel's vxlan backend (k3s' default pod network) on every node.
FLANNEL_DEVICE = "flannel.1"
#: Thesis table of each step, for the comparison.
THESIS_TABLES = {"vm-to-vm": "table_7_2_network", "pod-same-cluster": "table_7_3_same_cluster",
                 "pod-peered": "table_7_4_liqo_peered"}
#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns.
TABLES = (NAME,)
#: The figure id of :data:`labkit.experiments.EXPERIMENTS` the four tables are drawn as.
EXPERIMENT_FIGURE = "Tables 7.2-7.5"
#: The thesis' protocol: about 1000 probes per leaf and test, ping's default interval (s).
THESIS_PROTOCOL = (1000, 1.0)
#: The bands :func:`fidelity` expects (ms; ``None``: no edge) and why: the thesis' values moved by the differences
#: of the environment (one machine instead of VMs) and of the implementation (userspace WireGuard).
BANDS: dict[str, tuple[float | None, float | None]] = {
    "vm-to-vm": (None, 0.721),
    "kubernetes": (0.0, 0.167),
    "liqo": (0.0, 1.5),
}
BAND_REASONS = {
    "vm-to-vm": "at most the thesis' 0.721 ms: here a round trip crosses two veth pairs and a bridge in one kernel, "
                "with no NIC, wire or hypervisor, which a data-center VM-to-VM round trip has",
    "kubernetes": "above 0: the pod path adds the pods' veths and flannel's VXLAN encapsulation at both ends; at most "
                  "the thesis' 0.167 ms, which also paid the hypervisor's per-packet cost of the larger packets",
    "liqo": "above 0: the peering adds Liqo's gateways, NAT and WireGuard; at most 1.5 ms: userspace WireGuard "
            "(wireguard-go, as Liqo runs here) alone adds 1.0 ms per round trip on average between two namespaces "
            "of this machine (median 0.35 ms, rare stalls of tens of ms; benchmarks/bench_wireguard_rtt.py), and "
            "the rest of Liqo's path costs at most the thesis' whole overhead, 0.458 ms with kernel WireGuard",
}


class Parameters(BaseParameters):
    """What a latency run measures."""

    leaves: int = thesis(3, "the thesis pinged from three leaves, Leaf-1..3 (Tables 7.2-7.4)", ge=1)
    count: int = thesis(1000, "about 1000 probes per test (thesis 7.2)", ge=1)
    interval: float = param(1.0, "ping's default interval: the thesis ran plain `ping`", source="software default",
                            gt=0)
    concurrent: bool = param(False, "False: leaf by leaf as the thesis; True: every leaf at once (faster than "
                                    "the thesis' protocol, labelled so)")
    interleave: bool = param(True, "Tables 7.2 and 7.4 together on the thesis bed, leaf by leaf, their probes half "
                                   "an interval apart (never two in flight): the thesis' protocol per probe in two "
                                   "tables' time instead of three")
    peered: bool = param(True, "also measure Table 7.4 on the env's peered test bed, and derive Table 7.5")


def beds(env: Env, params: Parameters) -> list[Env]:
    """:func:`single_cluster` of ``env`` (Table 7.3), then ``env`` itself (Tables 7.2, 7.4) when ``peered``."""
    single = single_cluster(env, params.leaves)
    return [single, env] if params.peered else [single]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """One test bed of :func:`beds`: Table 7.3 on the single cluster (and 7.2 without the peered bed), Tables 7.2
    and 7.4 on the peered env (7.2 on the single cluster without ``interleave``)."""
    options = {"leaves": params.leaves, "count": params.count, "interval": params.interval,
               "concurrent": params.concurrent, "run_id": "", "scenario": ""}
    vm_here = params.peered and params.interleave
    if len(env.clusters) == 1:
        return {NAME: measure_single_cluster(testbed, env, network=not vm_here, **options)}
    return {NAME: measure_peered(testbed, env, network=vm_here, **options)}


def duration_s(params: Parameters) -> float:
    """Seconds of pinging ``params`` ask for (bring-ups and pod starts aside): per table and leaf ``count x
    interval``; the leaves one after another unless ``concurrent``; Tables 7.2 and 7.4 together with
    ``interleave``. The thesis' protocol: 3 leaves x 1000 s x 2 = 6000 s (100 min) instead of 9000 s."""
    per_table = params.count * params.interval * (1 if params.concurrent else params.leaves)
    return per_table * (3 if params.peered and not params.interleave else 2)


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


#: One probe series of a leaf: the step (table) it measures, the host that pings, the address it pings.
Leg = tuple[str, Host, str]


def ping_leaves(legs: Mapping[str, Sequence[Leg]], *, count: int, interval: float, concurrent: bool = False,
                **keys: Any) -> pd.DataFrame:
    """Ping each leaf's legs; tidy rows labelled with ``leaf``, the protocol and ``interleaved``.

    Leaf by leaf as the thesis did, or with ``concurrent`` every leaf at once. A leaf's legs run
    together, each started ``interval / len(legs)`` after the previous one, so their probes
    alternate and (as long as an RTT stays below that offset) are never in flight together.
    """
    runs = {leaf: [PingCollector(source, target, cluster=leaf, count=count, interval=interval, step=step, **keys)
                   for step, source, target in mine] for leaf, mine in legs.items()}
    for batch in ([list(runs.values())] if concurrent else [[mine] for mine in runs.values()]):
        _staggered(batch, interval)
    protocol = {"count": count, "interval_s": interval, "concurrent": concurrent}
    return pd.concat([c.collect().assign(leaf=leaf, interleaved=len(mine) > 1, **protocol)
                      for leaf, mine in runs.items() for c in mine], ignore_index=True)


def _staggered(groups: Sequence[Sequence[PingCollector]], interval: float) -> None:
    """Run every group's collectors at once, the k-th of each ``k * interval / width`` s after the first; wait for all."""
    width = max(len(g) for g in groups)
    with ExitStack() as stack:
        for k in range(width):
            if k:
                time.sleep(interval / width)
            for group in groups:
                if k < len(group):
                    stack.enter_context(collecting([group[k]]))


def vxlan_device(host: Host, device: str = FLANNEL_DEVICE) -> tuple[str, int] | None:
    """``device`` of ``host`` as ``("vxlan id <vni> port <port>", tx packets)``; ``None`` when it has none."""
    res = host.run(["ip", "-j", "-s", "-d", "link", "show", device], timeout=15)
    if not res.ok:
        return None
    link = json.loads(res.stdout)[0]
    info = link.get("linkinfo", {})
    data = info.get("info_data", {})
    kind = f"{info.get('info_kind', 'unknown')} id {data.get('id', '?')} port {data.get('port', '?')}"
    return kind, int(link.get("stats64", link.get("stats", {})).get("tx", {}).get("packets", 0))


def pod_network(before: tuple[str, int] | None, after: tuple[str, int] | None, sent: int) -> str:
    """Which data path carried a leaf's ``sent`` pod probes, from its ``flannel.1`` before and after them."""
    if before is None or after is None:
        return "routed, no encapsulation (no flannel.1)"
    carried = after[1] - before[1]
    if after[0].startswith("vxlan") and carried >= sent:
        return f"flannel VXLAN ({FLANNEL_DEVICE}, {after[0]})"
    return f"not through {FLANNEL_DEVICE} ({after[0]}: {carried} packets for {sent} probes)"


def measure_single_cluster(testbed: Testbed, env: Env, *, leaves: int, count: int, interval: float,
                           concurrent: bool = False, network: bool = True, **keys: str) -> pd.DataFrame:
    """Table 7.3 (and 7.2 with ``network``) on a test bed running :func:`single_cluster`: pod RTT leaf -> root.

    Each leaf's pod probes are labelled with the data path that carried them (:func:`pod_network`).
    """
    root_vm = env.root.nodes[0].name
    leaves_vms = leaf_names(env, leaves)
    frames = []
    if network:
        target = testbed.host(root_vm).address
        frames.append(ping_leaves({vm: [("vm-to-vm", testbed.host(vm), target)] for vm in leaves_vms}, count=count,
                                  interval=interval, concurrent=concurrent, **keys).assign(bed="single cluster"))
    cluster = env.root.name
    image = testbed.load_image(cluster, PROBE_IMAGE)
    pods = start_pods(testbed.kube(cluster), NAMESPACE,
                      [probe_pod(f"probe-{vm}", image, node=vm) for vm in [root_vm, *leaves_vms]])
    root_pod, leaf_pods = pods[0], pods[1:]
    try:
        before = {vm: vxlan_device(testbed.host(vm)) for vm in leaves_vms}
        rows = ping_leaves({vm: [("pod-same-cluster", pod, root_pod.address)] for pod, vm in zip(leaf_pods, leaves_vms)},
                           count=count, interval=interval, concurrent=concurrent, **keys)
        received = rows[rows["metric"] == "rtt"].groupby("leaf").size()
        paths = {vm: pod_network(before[vm], vxlan_device(testbed.host(vm)), int(received.get(vm, 0)))
                 for vm in leaves_vms}
        frames.append(rows.assign(path=rows["leaf"].map(paths), bed="single cluster"))
    finally:
        stop_pods(testbed.kube(cluster), NAMESPACE, [p.name for p in pods])
    return pd.concat(frames, ignore_index=True)


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
                   network: bool = False, **keys: str) -> pd.DataFrame:
    """Table 7.4 (and 7.2 with ``network``, interleaved) on ``env``'s peered test bed: RTT from ``leaves`` leaves to the root.

    The root's probe pod runs on its physical node; each leaf's probe is a pod of the namespace
    the root offloads (:func:`offloaded_leaves`), bound to the leaf's virtual node ``liqo-<leaf>``,
    and pings from its twin in the leaf. With ``network``, each leaf's VM pings the root's VM
    half an interval before its pod pings the root pod (:func:`ping_leaves`). The probes are
    deleted afterwards (the test bed may be shared with the next experiment).
    """
    root = env.root.name
    namespace, names = offloaded_leaves(env, leaves)
    image = load_image(testbed, [root, *names], PROBE_IMAGE)
    api = testbed.kube(root)
    homes = [probe_pod(f"probe-{leaf}", image, node=f"liqo-{leaf}") for leaf in names]
    for home in homes:
        home["spec"]["tolerations"] = [VIRTUAL_NODE_TOLERATION]
    vms = {c.name: c.nodes[0].name for c in env.clusters}
    try:
        root_pod = start_pods(api, NAMESPACE, [probe_pod(f"probe-{root}", image, node=env.root.nodes[0].name)])[0]
        start_pods(api, namespace, homes)
        legs: dict[str, list[Leg]] = {leaf: [] for leaf in names}
        if network:
            target = testbed.host(env.root.nodes[0].name).address
            for leaf in names:
                legs[leaf].append(("vm-to-vm", testbed.host(vms[leaf]), target))
        for leaf in names:
            legs[leaf].append(("pod-peered", provider_pod(testbed, leaf, f"probe-{leaf}"), root_pod.address))
        rows = ping_leaves(legs, count=count, interval=interval, concurrent=concurrent, **keys)
        return rows.assign(path=np.where(rows["step"] == "pod-peered", peering_ran(testbed), None), bed="peered")
    finally:
        stop_pods(api, namespace, [h["metadata"]["name"] for h in homes])
        stop_pods(api, NAMESPACE, [f"probe-{root}"])


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of RTT per step and leaf, plus an ``avg`` row per step; with the median and 95th percentile (the
    probes' tails are long on a shared machine), the loss, the protocol and the path.

    The ``avg`` row is the mean of the leaves' means (as the thesis averages its tables) and the
    root mean square of the leaves' standard deviations (which is how the thesis' Tables 7.2 and
    7.4 compute their Avg spread: 0.581 and 0.821 ms; Table 7.3's 0.267 ms is not, see
    docs/experiments.md); its median is the median of the leaves' medians, its p95 their largest.
    """
    rtt = rows[rows["metric"] == "rtt"]
    per_leaf = rtt.groupby(["step", "leaf"])["value"].agg(mean="mean", std="std", n="count", median="median",
                                                          p95=lambda v: v.quantile(0.95)).reset_index()
    loss = rows[rows["metric"] == "loss"].groupby(["step", "leaf"])["value"].max().rename("loss")
    per_leaf = per_leaf.join(loss, on=["step", "leaf"])
    per_leaf["protocol"] = [protocol(g) for _, g in rtt.groupby(["step", "leaf"])]
    per_leaf["path"] = [_path(g) for _, g in rtt.groupby(["step", "leaf"])]
    avg = per_leaf.groupby("step").apply(
        lambda g: pd.Series({"mean": g["mean"].mean(), "std": float(np.sqrt((g["std"] ** 2).mean())),
                             "n": int(g["n"].sum()), "median": g["median"].median(), "p95": g["p95"].max(),
                             "loss": g["loss"].max(),
                             "protocol": "; ".join(dict.fromkeys(g["protocol"])),
                             "path": "; ".join(dict.fromkeys(g["path"]))}),
        include_groups=False).reset_index().assign(leaf="avg")
    order = {step: i for i, step in enumerate(THESIS_TABLES)}
    columns = ["step", "leaf", "mean", "std", "n", "median", "p95", "loss", "protocol", "path"]
    out = pd.concat([per_leaf, avg], ignore_index=True)[columns]
    return out.sort_values("step", key=lambda c: c.map(order), kind="stable", ignore_index=True)


def protocol(rows: pd.DataFrame) -> str:
    """How ``rows`` (one step and leaf, or more) were probed, as it reads; says when it is not the thesis' protocol."""
    if "interval_s" not in rows or rows["interval_s"].isna().all():
        return "not recorded"
    count, interval = int(rows["count"].max()), float(rows["interval_s"].max())
    concurrent = bool(rows["concurrent"].fillna(False).astype(bool).any())
    interleaved = bool(rows["interleaved"].fillna(False).astype(bool).any()) if "interleaved" in rows else False
    text = f"{count} probes {interval:g} s apart, {'every leaf at once' if concurrent else 'leaf by leaf'}"
    text += ", beside the other table's, half an interval apart" if interleaved else ""
    thesis_way = count >= THESIS_PROTOCOL[0] and interval == THESIS_PROTOCOL[1] and not concurrent
    return text + (" (the thesis' protocol)" if thesis_way else " (faster than the thesis' protocol)")


def _path(rows: pd.DataFrame) -> str:
    """The data path recorded for ``rows`` (the pod network of Table 7.3, the peering of Table 7.4)."""
    if "path" not in rows:
        return "not recorded"
    paths = [str(p) for p in rows["path"].dropna().unique() if str(p) not in ("", "None")]
    if not paths:
        return "the lab network" if set(rows["step"]) == {"vm-to-vm"} else "not recorded"
    return "; ".join(paths)


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


def overhead(stats: pd.DataFrame, base: str = "pod-same-cluster", top: str = "pod-peered") -> tuple[float, float] | None:
    """Table 7.5 from a :func:`table`: mean of ``top``'s avg minus ``base``'s avg, with the std of a difference of
    two probes, as the thesis combines them (0.864 = √(0.821² + 0.267²)); None without both steps."""
    avg = stats[stats["leaf"] == "avg"].set_index("step")
    if not {base, top} <= set(avg.index):
        return None
    over = float(avg.loc[top, "mean"] - avg.loc[base, "mean"])
    return over, float(np.hypot(avg.loc[top, "std"], avg.loc[base, "std"]))


def _published(table_key: str) -> str:
    mean, std = reference.lookup(f"latency_ms.{table_key}")
    return f"{mean} ± {std} ms"


def fidelity(tables: Tables) -> list[Check]:
    """Tables 7.2-7.5's checks: the thesis' protocol, each table's band given one machine instead of VMs and
    userspace WireGuard, the pod network's data path, the interleaving, and no probe lost (:data:`BANDS`)."""
    rows = tables[NAME]
    rtt = rows[rows["metric"] == "rtt"]
    stats = table(rows)
    avg = stats[stats["leaf"] == "avg"].set_index("step")
    figure = EXPERIMENT_FIGURE

    def mean(step: str) -> float | None:
        return float(avg.loc[step, "mean"]) if step in avg.index else None

    per_leaf = stats[stats["leaf"] != "avg"]
    fewest = int(per_leaf["n"].min()) if len(per_leaf) else None
    enough = int(0.99 * THESIS_PROTOCOL[0])  # "approximately 1000": a lost probe or ten does not change the protocol
    followed = (all("(the thesis' protocol)" in p for p in per_leaf["protocol"]) and fewest >= enough) \
        if fewest is not None else None
    out = [holds(figure, "protocol: probes per leaf and step, their interval, leaf by leaf", followed,
                 expected=f"≥ {enough} probes {THESIS_PROTOCOL[1]:g} s apart, leaf by leaf",
                 observed=fewest, unit="probes (fewest of a leaf)", basis="protocol",
                 thesis="~1000 probes per test, leaf by leaf",
                 reason="the thesis pinged about 1000 times per test from each leaf in turn, at ping's default 1 s "
                        f"(it gives no interval); this run: {'; '.join(dict.fromkeys(per_leaf['protocol']))}")]
    band = BANDS["vm-to-vm"]
    out.append(within(figure, "Table 7.2: VM → root RTT, mean of the leaves", mean("vm-to-vm"), low=band[0],
                      high=band[1], unit="ms", thesis=_published("table_7_2_network.avg"), **_spread(avg, "vm-to-vm"),
                      reason=BAND_REASONS["vm-to-vm"]))
    kube = overhead(stats, "vm-to-vm", "pod-same-cluster")
    t72, t73 = reference.lookup("latency_ms.table_7_2_network.avg")[0], reference.lookup(
        "latency_ms.table_7_3_same_cluster.avg")[0]
    band = BANDS["kubernetes"]
    out.append(within(figure, "Table 7.3 - 7.2: pod network overhead in one cluster", kube[0] if kube else None,
                      low=band[0], high=band[1], strict_low=True, unit="ms", thesis=f"{t73} - {t72} = {t73 - t72:.3f} ms",
                      spread=f"± {kube[1]:.3f}" if kube else "", reason=BAND_REASONS["kubernetes"]))
    same = per_leaf[per_leaf["step"] == "pod-same-cluster"]
    vxlan = int(same["path"].str.startswith("flannel VXLAN").sum())
    out.append(holds(figure, "Table 7.3: pod probes carried by flannel's VXLAN data path",
                     vxlan == len(same) if len(same) else None, observed=vxlan, unit=f"of {len(same)} leaves",
                     expected="every leaf", basis="kit", thesis="k3s' default: flannel, VXLAN backend",
                     reason="the thesis' clusters were k3s with its default pod network (flannel's VXLAN); measured "
                            "on each leaf VM: flannel.1's packet counter rose by at least its probes"))
    liqo = overhead(stats)
    band = BANDS["liqo"]
    out.append(within(figure, "Table 7.5: Liqo overhead (7.4 - 7.3)", liqo[0] if liqo else None, low=band[0],
                      high=band[1], strict_low=True, unit="ms", thesis=_published("table_7_5_liqo_overhead"),
                      spread=f"± {liqo[1]:.3f}" if liqo else "", n=int(avg.loc["pod-peered", "n"]) if liqo else None,
                      reason=BAND_REASONS["liqo"]))
    paired = rtt[rtt["interleaved"].fillna(False).astype(bool)] if "interleaved" in rtt else rtt.head(0)
    if len(paired):
        half = float(paired["interval_s"].max()) * 1000 / 2
        out.append(within(figure, "Tables 7.2 and 7.4 interleaved: the slowest probe", float(paired["value"].max()),
                          high=half, unit="ms", basis="protocol", n=len(paired),
                          reason="the two tables' probes go half an interval apart: a probe slower than that would "
                                 "have been in flight with the other table's, which the thesis' protocol never had"))
    lost = rows[rows["metric"] == "loss"]["value"]
    out.append(within(figure, "probes lost, the worst leaf and step", 100 * float(lost.max()) if len(lost) else None,
                      high=1.0, unit="%", basis="kit", n=len(lost),
                      reason="no link is lossy on one machine: a lost probe means a path broke while it was measured"))
    return out


def _spread(avg: pd.DataFrame, step: str) -> dict[str, Any]:
    """``spread`` (± the Avg row's std) and ``n`` of ``step``'s avg row, for a :class:`~labkit.fidelity.Check`."""
    if step not in avg.index:
        return {}
    return {"spread": f"± {avg.loc[step, 'std']:.3f}", "n": int(avg.loc[step, "n"])}


def methods(tables: Tables) -> list[Method]:
    """Tables 7.2-7.5: the thesis' ping protocol, ours in this run (protocol, pod network, peering), what differs."""
    stats = table(tables[NAME])
    per_leaf = stats[stats["leaf"] != "avg"]
    protocols = "; ".join(dict.fromkeys(per_leaf["protocol"])) or "not measured"
    pod_net = "; ".join(dict.fromkeys(per_leaf.loc[per_leaf["step"] == "pod-same-cluster", "path"])) or "not measured"
    peering = "; ".join(dict.fromkeys(per_leaf.loc[per_leaf["step"] == "pod-peered", "path"])) or "not measured"
    flannel = pod_net.startswith("flannel VXLAN")
    return [Method(
        EXPERIMENT_FIGURE,
        thesis="`ping` about 1000 times per test, individually from each of 3 leaves to the root (interval not "
               "given: ping's default, 1 s); 7.2 VM to VM, 7.3 pod to pod across nodes of one k3s cluster (flannel "
               "VXLAN, k3s' default), 7.4 pod to pod across clusters peered with Liqo v0.10.2; mean ± std per leaf, "
               "Avg the mean of the leaves; 7.5 = Avg 7.4 - Avg 7.3",
        ours=f"{protocols}; 7.3 on the same VMs as nodes of one cluster, pod network: {pod_net}; 7.2 and 7.4 on the "
             f"thesis bed (5 single-node clusters), peering: {peering}",
        environment="network namespaces on one 2-core machine joined by veth pairs and a bridge, instead of 4-core VMs "
                    "on a data-center network: no NIC, wire or hypervisor on any path, so every RTT is far smaller",
        implementation="; ".join([
            "flannel's VXLAN data path programmed by the kit as flannel's vxlan backend does (flannel itself does "
            "not build here)" if flannel else f"pod network not flannel's VXLAN ({pod_net})",
            "Liqo's tunnel is userspace WireGuard (wireguard-go), where Liqo v0.10.2 defaults to the kernel's"
            + (" (the kit's Liqo look-alike peers)" if "look-alike" in peering else "")]))]


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Tables 7.2-7.5 as one figure (:func:`plot`)."""
    rows = tables[NAME]
    return {"Tables 7.2-7.5": plot(table(rows), rows, Path(out_dir) / "tab-7-2-7-5-latency.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """Mean ± std per step and leaf (:func:`table`)."""
    return {"RTT per step and leaf (ms)": table(tables[NAME])}


def _above_zero(means: Sequence[float], stds: Sequence[float]) -> np.ndarray:
    """Error bars of ± std that stop at 0 (an RTT is positive; a long tail makes std exceed the mean)."""
    m, s = np.asarray(means, dtype=float), np.asarray(stds, dtype=float)
    return np.vstack([np.minimum(s, m), s])


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
        ax.bar(x - 0.2, ours["mean"], 0.4, yerr=_above_zero(ours["mean"], ours["std"]), capsize=3, label="labkit")
        ax.plot(x - 0.2, ours["median"], "k_", ms=12, label="labkit median")
        ax.bar(x + 0.2, [t[0] for t in theirs], 0.4,
               yerr=_above_zero([t[0] for t in theirs], [t[1] for t in theirs]), capsize=3, label="thesis")
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
    leaves = stats[stats["leaf"] != "avg"]
    fig.suptitle(f"{'; '.join(dict.fromkeys(leaves['protocol']))}\n7.3's pod network: "
                 f"{'; '.join(dict.fromkeys(leaves.loc[leaves['step'] == 'pod-same-cluster', 'path'])) or '-'}; "
                 f"7.4's peering: {'; '.join(dict.fromkeys(leaves.loc[leaves['step'] == 'pod-peered', 'path'])) or '-'}",
                 fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
