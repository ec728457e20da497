"""What userspace WireGuard adds to a round trip on this machine: the basis of Table 7.5's fidelity band.

    sudo python benchmarks/bench_wireguard_rtt.py [--count 200] [--interval 0.2]

Two network namespaces of the kit's own (``lkt-wgb-a``, ``lkt-wgb-b``) joined by a veth pair, the
way two embedded VMs meet on the lab bridge, and a ``wireguard-go`` tunnel between them
(``labkit.testbed.embedded.liqo.wireguard``, what Liqo's gateway runs here in user space). From
the first namespace, ``ping`` the second over the veth, then over the tunnel; print both RTTs,
their difference (WireGuard's cost per round trip: two encryptions, two decryptions, four
crossings of a TUN device) and its ratio to the thesis' whole Liqo overhead (Table 7.5, 0.458 ms,
kernel WireGuard). ``labkit.experiments.latency.BANDS["liqo"]`` expects Table 7.5 here at most
1.5 ms; this says how much of that is the tunnel alone. Everything is removed afterwards; nothing
is written to data/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from labkit import reference
from labkit.testbed.base import parse_ping
from labkit.testbed.embedded import linux, netpair
from labkit.testbed.embedded.liqo import wireguard

NS_A, NS_B = "lkt-wgb-a", "lkt-wgb-b"
VETH_A, VETH_B = "lkt-wgba", "lkt-wgbb"
ADDR_A, ADDR_B = "10.251.1.1", "10.251.1.2"
PAIR = netpair.NetPair((NS_A, NS_B), (ADDR_A, ADDR_B), links=(VETH_A, VETH_B))
#: The last tunnel index, far from those a test bed's look-alike peering takes (from 0 up).
INDEX = 255


def rtts(target: str, count: int, interval: float) -> list[float]:
    """``count`` pings from ``NS_A`` to ``target``, ``interval`` s apart: the RTTs (ms)."""
    proc = subprocess.run(["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", target],
                          capture_output=True, text=True, timeout=count * interval + 30,
                          preexec_fn=lambda: linux.setns(f"/run/netns/{NS_A}", linux.CLONE_NEWNET))
    return list(parse_ping(target, proc.stdout, count).rtt_ms)


def describe(name: str, values: list[float]) -> str:
    return (f"{name}: mean {statistics.fmean(values):.3f} ms, median {statistics.median(values):.3f} ms, "
            f"std {statistics.stdev(values):.3f} ms (n = {len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    for prog in ("wireguard-go", "wg", "ping"):
        if not shutil.which(prog):
            print(f"{prog} is not installed (invoke setup installs it)", file=sys.stderr)
            return 2
    tunnel = None
    with netpair.joined(PAIR):
        try:
            tunnel = wireguard.Tunnel(INDEX, wireguard.Side(NS_A, ADDR_A), wireguard.Side(NS_B, ADDR_B),
                                      Path(tempfile.mkdtemp(prefix="lkt-wgb-")))
            tunnel.up()
            rtts(tunnel.peer_ips[0], 3, 0.2)  # the handshake, before anything is measured
            veth = rtts(ADDR_B, args.count, args.interval)
            tun = rtts(tunnel.peer_ips[0], args.count, args.interval)
        finally:
            if tunnel is not None:
                tunnel.down()
    overhead = statistics.fmean(tun) - statistics.fmean(veth)
    thesis = reference.lookup("latency_ms.table_7_5_liqo_overhead")[0]
    load = os.getloadavg()
    print(f"{args.count} pings {args.interval:g} s apart; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(describe("veth (lab network)", veth))
    print(describe("wireguard-go tunnel", tun))
    print(f"userspace WireGuard per round trip: {overhead:.3f} ms; "
          f"ratio to the thesis' whole Liqo overhead ({thesis} ms): {overhead / thesis:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
