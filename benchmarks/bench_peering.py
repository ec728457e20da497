"""Issue 24's peering measurements on the embedded test bed, for Liqo v0.10.2 or the kit's look-alike.

    python benchmarks/bench_peering.py [--env thesis] [--peering liqo|kit] [--repetitions 10]
                                       [--latency-count 300] [--same-cluster]

One test bed of ``--env`` (the thesis': root + 4 leaves, 10 planned peerings) peered by
``--peering`` (``LABKIT_PEERING``), then, in order:

1. peering time: from every node Ready to every virtual node Ready (Liqo: image import, ``liqoctl
   install`` on every cluster, ``liqoctl peer`` of every pair), target <= 120 s;
2. idle memory 30 s later: PSS of every process of the test bed (target <= 4 GiB), per cluster,
   and of the peering's own processes (Liqo's programs or the look-alike's);
3. Table 7.4: pod-to-pod RTT from three leaves' offloaded pods to a root pod
   (``labkit.experiments.latency.measure_peered``); with ``--same-cluster``, Table 7.3 on a
   single-cluster test bed afterwards, and Table 7.5 = 7.4 - 7.3;
4. Fig. 7.2: ``--repetitions`` cuts of the first leaf's interface (all its VMs), the first right
   after peering, each at a random phase once the node is Ready and (Liqo) the ForeignCluster's
   APIServerStatus Established; the root's virtual node polled every 0.1 s until not
   Ready; the Ready reason and the NetworkUnavailable condition say which path fired (tunnel:
   ``KubeletNotReady`` + ``LiqoNetworkingDown``, look-alike ``LiqoTunnelDisconnected``; API/lease:
   ``NodeStatusUnknown``), and the TunnelEndpoint's status is recorded. Target: median within
   Liqo's 8-11 s.

Prints one line per measurement with the machine's load average, and each target's ratio;
exits 1 when a target is missed. Nothing is written to data/.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from labkit.config import load_env
from labkit.experiments import latency
from labkit.experiments.scalability import process_memory
from labkit.testbed.embedded import EmbeddedTestbed
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.liqoctl import PEERING_ENV
from labkit.testbed.signals import unwind_on_terminate

PEERING_TARGET_S = 120.0
PSS_TARGET_MIB = 4096.0
NOT_READY_BAND_S = (8.0, 11.0)
#: Programs of the peering, by the basename of their ``argv[0]`` (Liqo's, and the look-alike's).
PEERING_PROGRAMS = {"liqo-controller-manager", "liqonet", "crd-replicator", "auth-service", "virtual-kubelet",
                    "wireguard-go", "labkit-liqo-proxy", "vk"}


def load() -> str:
    """The machine's load averages (1, 5, 15 min)."""
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def testbed_pids(vms: list[str]) -> set[int]:
    """Every process in the cgroup trees of the embedded VMs ``vms``."""
    return set().union(*(vmlib.cgroup_pids(vmlib.cgroup_name(vm)) for vm in vms))


def peering_pids(pids: set[int]) -> set[int]:
    """The processes of ``pids`` that belong to the peering (see :data:`PEERING_PROGRAMS`)."""
    out = set()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = {Path(a.decode(errors="replace")).name for a in argv[:2]}
        if names & PEERING_PROGRAMS or any(b"labkit.testbed.embedded.liqo.health" in a for a in argv):
            out.add(pid)
    return out


def memory(tb: EmbeddedTestbed) -> dict[str, float]:
    """PSS (MiB) of the whole test bed, of each cluster, and of the peering's processes."""
    out: dict[str, float] = {}
    every: set[int] = set()
    for cluster in tb.clusters():
        pids = testbed_pids([n.vm.name for n in tb.cluster(cluster).nodes])
        every |= pids
        out[f"cluster {cluster}"] = process_memory(pids)[0]
    out["test bed"] = process_memory(every)[0]
    peering = peering_pids(every)
    out["peering processes"] = process_memory(peering)[0]
    for name, pids in sorted(by_program(peering).items()):
        out[f"program {name}"] = process_memory(pids)[0]
    return out


def by_program(pids: set[int]) -> dict[str, set[int]]:
    """``pids`` grouped by the basename of their program (the script's, for an interpreter)."""
    groups: dict[str, set[int]] = {}
    for pid in pids:
        try:
            argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        names = [Path(a).name for a in argv[:2]]
        name = next((n for n in names if n in PEERING_PROGRAMS), names[0] if names else "?")
        groups.setdefault(name, set()).add(pid)
    return groups


def liqo_pods_timeline(tb: EmbeddedTestbed) -> str:
    """Per cluster: seconds from the first Liqo pod's creation to each Liqo pod's Ready (where install time goes)."""
    from kubernetes import client
    lines = []
    for cluster in tb.clusters():
        pods = client.CoreV1Api(tb.kube(cluster)).list_namespaced_pod("liqo").items
        if not pods:
            continue
        first = min(p.metadata.creation_timestamp for p in pods)
        marks = []
        for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
            ready = next((c.last_transition_time for c in pod.status.conditions or [] if c.type == "Ready"), None)
            name = pod.metadata.labels.get("app.kubernetes.io/name", pod.metadata.name)
            created = (pod.metadata.creation_timestamp - first).total_seconds()
            marks.append(f"{name} +{created:.0f}->{(ready - first).total_seconds():.0f}" if ready else f"{name} +{created:.0f}")
        lines.append(f"{cluster}: " + ", ".join(marks))
    return "; ".join(lines)


def conditions(core: Any, node: str) -> dict[str, tuple[str, str]]:
    """The node's conditions: type -> (status, reason)."""
    return {c.type: (c.status, c.reason) for c in core.read_node(node).status.conditions or []}


def path_of(cond: dict[str, tuple[str, str]]) -> str:
    """Which path made the node not Ready."""
    ready = cond.get("Ready", ("", ""))
    network = cond.get("NetworkUnavailable", ("", ""))
    if ready[1] == "LiqoTunnelDisconnected" or (ready[1] == "KubeletNotReady" and network == ("True", "LiqoNetworkingDown")):
        return "tunnel"
    return "api-lease" if ready[1] == "NodeStatusUnknown" else f"other ({ready[1]})"


def api_server_status(tb: EmbeddedTestbed, consumer: str, provider: str, cut_wall: float) -> str:
    """The consumer's ForeignCluster of ``provider``: APIServerStatus and when it last changed, relative to the cut
    (:mod:`labkit.measure.liqo`; empty for the look-alike)."""
    from kubernetes import client

    from labkit.measure.liqo import API_SERVER_STATUS, api_server_status as status_of
    cond = status_of(client.CustomObjectsApi(tb.kube(consumer)), provider)
    return f"{API_SERVER_STATUS} {cond.status} since cut{cond.changed - cut_wall:+.1f} s" if cond else ""


def tunnel_status(tb: EmbeddedTestbed, cluster: str) -> list[str]:
    """``status.connection.status`` of every TunnelEndpoint of ``cluster``."""
    from kubernetes import client
    teps = client.CustomObjectsApi(tb.kube(cluster)).list_cluster_custom_object("net.liqo.io", "v1alpha1",
                                                                                "tunnelendpoints")["items"]
    return sorted(((t.get("status") or {}).get("connection") or {}).get("status", "?") for t in teps)


def cuts(tb: EmbeddedTestbed, consumer: str, provider: str, repetitions: int, seed: int) -> list[dict[str, Any]]:
    """Fig. 7.2: cut ``provider``'s VMs off ``repetitions`` times; the delay until its virtual node is not Ready.

    Each cut waits, as notebook 30 does, for the node Ready and (on Liqo) the ForeignCluster's
    ``APIServerStatus`` Established again.
    """
    from kubernetes import client

    from labkit.measure.liqo import wait_api_server_established
    core, custom = client.CoreV1Api(tb.kube(consumer)), client.CustomObjectsApi(tb.kube(consumer))
    on_liqo = getattr(tb.liqo, "kind", "") == "liqo"
    node = f"liqo-{provider}"
    rng = random.Random(seed)
    hosts = [tb.host(n.vm.name) for n in tb.cluster(provider).nodes]
    peered_at = time.monotonic()
    rows = []
    for index in range(repetitions):
        while conditions(core, node).get("Ready", ("",))[0] != "True":
            time.sleep(0.2)
        wait_api_server_established(custom, provider, timeout=90.0, required=on_liqo)
        time.sleep(rng.uniform(0.0, 2.0) + (0.0 if index == 0 else 3.0))
        since_peering = time.monotonic() - peered_at
        for host in hosts:
            host.iface_down()
        cut, cut_wall = time.monotonic(), time.time()
        try:
            while True:
                cond = conditions(core, node)
                if cond.get("Ready", ("",))[0] != "True":
                    break
                if time.monotonic() - cut > 90:
                    cond = {"Ready": ("True", "never NotReady in 90 s")}
                    break
                time.sleep(0.1)
            delay = time.monotonic() - cut
            row = {"repetition": index, "delay_s": delay, "path": path_of(cond), "ready": cond.get("Ready"),
                   "network": cond.get("NetworkUnavailable"), "tunnel": tunnel_status(tb, consumer),
                   "api": api_server_status(tb, consumer, provider, cut_wall),
                   "since_peering_s": since_peering, "load": load()}
        finally:
            for host in hosts:
                host.iface_up()
        rows.append(row)
        print(f"cut {index}: {provider} NotReady in {consumer} after {row['delay_s']:.2f} s ({row['path']}: Ready "
              f"{row['ready']}, NetworkUnavailable {row['network']}, TunnelEndpoints {row['tunnel']}, "
              f"{row['api'] or 'no ForeignCluster'}; "
              f"{since_peering:.0f} s after peering; {row['load']})", flush=True)
    return rows


def quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartiles."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def star(env: Any, n: int) -> int:
    """Notebook 70's partial-mesh star of ``n`` clusters (DB domains of 4): does it come up, and at what cost."""
    from labkit.experiments import scalability
    print(f"start: {load()}", flush=True)
    start = time.monotonic()
    rows = scalability.measure_size(EmbeddedTestbed(log=print), scalability.region_env(env, n, 4),
                                    topology=scalability.PARTIAL_MESH_STAR,
                                    domain_size=4, run_id="bench", scenario="bench-star")
    values = dict(zip(rows["metric"], rows["value"]))
    planned = int(rows["links_planned"].iloc[0])
    print(f"partial-mesh star N={n}: {planned} peerings planned ({int(rows['links_formula'].iloc[0])} by the formula), "
          f"{int(values['virtual_nodes_ready'])} virtual nodes Ready, {int(values['tunnels_connected'])} tunnels "
          f"connected; clusters Ready in {values['clusters_ready']:.1f} s, peered {values['peerings_ready']:.1f} s "
          f"later; PSS {values['memory_pss']:.0f} MiB, RSS {values['memory_rss']:.0f} MiB, idle CPU "
          f"{values['cpu_idle']:.2f} cores; down {values['down']:.1f} s; {time.monotonic() - start:.0f} s in all; "
          f"{load()}", flush=True)
    return 0 if values["virtual_nodes_ready"] == planned else 1


def main(argv: list[str] | None = None) -> int:
    """Bring the env up, measure, tear down; 0 when every target is met."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="thesis", help="env file in envs/ (default: thesis)")
    ap.add_argument("--peering", choices=("liqo", "kit"), help=f"who peers (default: the env's; sets {PEERING_ENV})")
    ap.add_argument("--repetitions", type=int, default=10, help="provider disconnections (default: 10)")
    ap.add_argument("--latency-count", type=int, default=300, help="pings per leaf for Table 7.4 (default: 300)")
    ap.add_argument("--same-cluster", action="store_true", help="also Table 7.3 (a second test bed) and Table 7.5")
    ap.add_argument("--star", type=int, default=0, metavar="N",
                    help="only bring up notebook 70's partial-mesh star of N clusters (DB domains of 4) and report it")
    args = ap.parse_args(argv)
    unwind_on_terminate()  # kill (SIGTERM) tears the test bed down too
    if args.peering:
        os.environ[PEERING_ENV] = args.peering
    env = load_env(args.env)
    if args.star:
        return star(env, args.star)
    met = True
    print(f"start: {load()}", flush=True)
    tb = EmbeddedTestbed(log=lambda line: None)
    tb.up(env)
    try:
        t = tb.timings
        peering_s = t["peering_s"]
        print(f"peering: {tb.peering}; clusters Ready in {t['ready_s']:.1f} s; {len(tb.liqo.peerings)} peerings, every "
              f"virtual node Ready {peering_s:.1f} s later (Liqo install {t.get('liqo_install_s', 0):.1f} s; "
              f"target {PEERING_TARGET_S:.0f} s, ratio {peering_s / PEERING_TARGET_S:.2f}); offloading "
              f"{t['offloading_s']:.1f} s; {load()}", flush=True)
        print("per peering: " + ", ".join(f"{c}->{p} {v.took_s:.1f} s" for (c, p), v in sorted(tb.liqo.peerings.items())))
        if getattr(tb.liqo, "kind", "") == "liqo":
            print("installs: " + ", ".join(f"{c} {s:.1f} s" for c, s in sorted(tb.liqo.installed.items())))
            print(f"Liqo pods, created -> Ready (s after the cluster's first): {liqo_pods_timeline(tb)}", flush=True)
        met &= peering_s <= PEERING_TARGET_S
        time.sleep(30)
        mem = memory(tb)
        print(f"idle PSS: test bed {mem['test bed']:.0f} MiB (target {PSS_TARGET_MIB:.0f}, ratio "
              f"{mem['test bed'] / PSS_TARGET_MIB:.2f}); peering processes {mem['peering processes']:.0f} MiB; "
              + ", ".join(f"{k} {v:.0f}" for k, v in mem.items() if k.startswith(("cluster", "program")))
              + f"; {load()}", flush=True)
        met &= mem["test bed"] <= PSS_TARGET_MIB
        rtt = latency.measure_peered(tb, env, leaves=3, count=args.latency_count, interval=0.05, concurrent=False,
                                     run_id="bench", scenario="bench-peering")
        rtt = rtt[rtt["metric"] == "rtt"]
        peered_mean = float(rtt["value"].mean())
        print(f"Table 7.4 pod -> root pod across the peering: mean {peered_mean:.3f} ms, sd {rtt['value'].std():.3f} "
              f"(n={len(rtt)}; by leaf " + ", ".join(f"{k} {v:.3f}" for k, v in rtt.groupby('leaf')['value'].mean().items())
              + f"; thesis 1.346 ms); {load()}", flush=True)
        consumer = env.root.name
        provider = sorted(p for c, p in tb.liqo.peerings if c == consumer)[0]
        rows = cuts(tb, consumer, provider, args.repetitions, env.seed)
    finally:
        tb.down()
    delays = [r["delay_s"] for r in rows]
    later = delays[1:] or delays
    q1, q3 = quartiles(delays)
    median = statistics.median(delays)
    paths = {p: sum(r["path"] == p for r in rows) for p in sorted({r["path"] for r in rows})}
    print(f"Fig. 7.2 NotReady delay, n={len(delays)}: median {median:.2f} s, IQR {q1:.2f}-{q3:.2f}, range "
          f"{min(delays):.2f}-{max(delays):.2f} s; paths {paths}; first cut (right after peering) {delays[0]:.2f} s, "
          f"the others median {statistics.median(later):.2f} s (thesis 9.75 s; Liqo's band "
          f"{NOT_READY_BAND_S[0]:.0f}-{NOT_READY_BAND_S[1]:.0f} s)", flush=True)
    met &= NOT_READY_BAND_S[0] <= median <= NOT_READY_BAND_S[1]
    if args.same_cluster:
        single_env = latency.single_cluster(env, leaves=3)
        bed = EmbeddedTestbed(log=lambda line: None)
        try:
            bed.up(single_env)
            single = latency.measure_single_cluster(bed, single_env, leaves=3, count=args.latency_count,
                                                    interval=0.05, run_id="bench", scenario="bench-peering")
        finally:
            bed.down()
        pods = single[(single["step"] == "pod-same-cluster") & (single["metric"] == "rtt")]
        same = float(pods["value"].mean())
        print(f"Table 7.3 pod -> pod same cluster: mean {same:.3f} ms; Table 7.5 Liqo overhead "
              f"{peered_mean - same:.3f} ms (thesis 0.458 ms); {load()}", flush=True)
    print(f"end: {load()}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
