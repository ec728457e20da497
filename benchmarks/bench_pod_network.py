"""Pod-to-pod RTT across the VMs of one cluster: plain routes (host-gw) vs flannel's VXLAN data path.

Run as root (it brings up an embedded test bed; set LABKIT_EMBEDDED_WAIT to wait for another)::

    python benchmarks/bench_pod_network.py [--count 1000] [--interval 1.0]

One test bed, two 2-VM clusters: ``gw`` (``flannel_backend="host-gw"``: a route to the other
VM's pod /24 via its lab address, what the kit programmed before) and ``vx`` (``vxlan``, k3s'
default: ``flannel.1``, Table 7.3's baseline). In each, a probe pod on the second VM pings a
probe pod on the first VM (Table 7.3's leaf -> root direction) ``count`` times at ``interval``
(``ping``'s default 1 s, the thesis' protocol). The two clusters are pinged at the same time, the
second half an interval after the first, so both see the same load of the shared machine.
Prints, per data path, the RTT mean +- standard deviation, median, 5th/95th percentiles and loss;
the difference of the means with its standard error and Welch's p; the load average before and
after; and flannel.1's packet counters (the VXLAN cluster's grow by the pings; the host-gw
cluster has no flannel.1).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time

import numpy as np
from scipy import stats

from labkit.testbed.base import PingResult, ping_with
from labkit.testbed.embedded import ClusterSpec, EmbeddedEnv, EmbeddedTestbed, VmSpec, flannel
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.pods import start_pods, probe_pod

NAMESPACE = "labkit-bench"
CASES = {"host-gw": "gw", "vxlan": "vx"}


def uptime() -> str:
    """``uptime``'s line (the load of the shared machine)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def ping_both(tb: EmbeddedTestbed, count: int, interval: float) -> dict[str, PingResult]:
    """Each cluster's second-VM pod pings its first-VM pod ``count`` times; the two at once, half an interval apart."""
    pairs = {}
    for backend, name in CASES.items():
        image = tb.load_image(name, "probe")
        pods = start_pods(tb.kube(name), NAMESPACE, [probe_pod(f"probe-{vm}", image, node=vm)
                                                     for vm in (f"{name}-a", f"{name}-b")])
        pairs[backend] = (pods[1], pods[0].address)
    results: dict[str, PingResult] = {}

    def run(backend: str) -> None:
        source, target = pairs[backend]
        # ping_with allows count x interval + 12 s; on a loaded machine 1000 probes 1 s apart took longer
        # (the exec was cut before ping's summary), so the exec gets 20 % more
        results[backend] = ping_with(lambda argv, timeout: source.run(argv, timeout=timeout * 1.2), target,
                                     count, interval, timeout=2.0)

    threads = [threading.Thread(target=run, args=(b,)) for b in CASES]
    for i, thread in enumerate(threads):
        if i:
            time.sleep(interval / 2)
        thread.start()
    for thread in threads:
        thread.join()
    return results


def summary(rtt: np.ndarray) -> str:
    """Mean +- std, median, p5/p95 and max of RTTs in ms."""
    p5, p50, p95 = np.percentile(rtt, [5, 50, 95])
    return (f"{rtt.mean():.4f} +- {rtt.std(ddof=1):.4f}  median {p50:.4f}  p5 {p5:.4f}  p95 {p95:.4f}  "
            f"max {rtt.max():.3f}")


def main() -> None:
    """Bring up the two clusters, ping, print the table, tear down."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000, help="pings per data path (thesis: ~1000)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between pings (ping's default: 1)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it brings up an embedded test bed)")
    env = EmbeddedEnv(clusters=tuple(ClusterSpec(name, (VmSpec(f"{name}-a"), VmSpec(f"{name}-b")), flannel_backend=b)
                                     for b, name in CASES.items()), dns=False)
    tb = EmbeddedTestbed()
    try:
        tb.up(env)
        load_before = uptime()
        counters_before = {vm: flannel.counters(vmlib.netns_name(vm)) for vm in ("gw-b", "vx-b")}
        start = time.monotonic()
        results = ping_both(tb, args.count, args.interval)
        took = time.monotonic() - start
        counters_after = {vm: flannel.counters(vmlib.netns_name(vm)) for vm in ("gw-b", "vx-b")}
        load_after = uptime()
    finally:
        tb.down()
    rtt = {b: np.array(r.rtt_ms) for b, r in results.items()}
    print(f"pod -> pod across the 2 VMs of one cluster, {args.count} pings at {args.interval:g} s per data path, "
          f"both paths pinged together (pods started and pinged in {took:.0f} s)")
    print(f"load before: {load_before}")
    print(f"load after:  {load_after}")
    for backend, r in results.items():
        print(f"{backend:<8} n={len(r.rtt_ms):<5} loss {r.loss:.1%}  RTT ms: {summary(rtt[backend])}")
    gw, vx = rtt["host-gw"], rtt["vxlan"]
    diff = vx.mean() - gw.mean()
    se = float(np.sqrt(gw.var(ddof=1) / len(gw) + vx.var(ddof=1) / len(vx)))
    p = stats.ttest_ind(vx, gw, equal_var=False).pvalue
    print(f"vxlan - host-gw: {diff * 1000:+.1f} us (mean; SE {se * 1000:.1f} us, Welch p {p:.2g}); "
          f"median {(np.median(vx) - np.median(gw)) * 1000:+.1f} us; ratio of means {vx.mean() / gw.mean():.3f}")
    for vm, before in counters_before.items():
        after = counters_after[vm]
        print(f"{vm}: no flannel.1" if after is None or before is None else
              f"flannel.1 of {vm}: +{after[0] - before[0]} sent, +{after[1] - before[1]} received")

if __name__ == "__main__":
    main()
