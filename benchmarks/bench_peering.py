"""Issue 11's peering targets on the embedded test bed (needs root; about 4 min + 25 s per repetition).

    python benchmarks/bench_peering.py [--env thesis] [--repetitions 10]

1. The env up, then peered as planned (thesis: 4 root -> leaf + 6 leaf <-> leaf): the time from
   clusters Ready to every virtual node Ready (target <= 60 s), and each virtual kubelet's
   resident memory after it idled 10 s (target <= 50 MiB).
2. Virtual-node NotReady detection with Liqo's default timers, ``--repetitions`` provider
   disconnections on the thesis' two-cluster pair (``labkit.experiments.reaction``): median and
   spread per observation method, and which path fired (tunnel check or API/lease).

Prints one line per measurement and the ratio of each to its target; exits 1 when a target is
missed. Nothing is written to data/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from labkit.config import load_env
from labkit import experiments
from labkit.experiments import reaction
from labkit.testbed import running
from labkit.testbed.embedded.liqo.peering import vk_memory

PEERING_TARGET_S = 60.0
VK_RSS_TARGET_MIB = 50.0


def peering(env_name: str) -> bool:
    """Bring ``env_name`` up peered; print peering time and VK memory against their targets."""
    env = load_env(env_name)
    with running(env, log=lambda _: None) as testbed:
        took = testbed.timings["peering_s"]
        time.sleep(10)  # idle
        memory = [mib for _, mib in vk_memory()]
    print(f"clusters Ready in {testbed.timings['ready_s']:.1f} s; {len(memory)} peerings Ready in {took:.1f} s "
          f"(target {PEERING_TARGET_S:.0f} s, ratio {took / PEERING_TARGET_S:.2f})")
    print(f"virtual kubelet RSS: median {statistics.median(memory):.1f} MiB, max {max(memory):.1f} MiB "
          f"(target {VK_RSS_TARGET_MIB:.0f} MiB, ratio {max(memory) / VK_RSS_TARGET_MIB:.2f})")
    return took <= PEERING_TARGET_S and max(memory) <= VK_RSS_TARGET_MIB


def detection(env_name: str, repetitions: int) -> None:
    """Print the NotReady detection delay per method: median, IQR, range, and the paths that fired."""
    tables = experiments.measure("reaction", load_env(env_name), reaction.Parameters(repetitions=repetitions))
    for row in reaction.table(tables["reaction"]).itertuples():
        print(f"NotReady detection ({row.method}, n={row.n}, missed {row.missed}): median {row.median:.2f} s, "
              f"IQR {row.q1:.2f}-{row.q3:.2f} s, range {row.min:.2f}-{row.max:.2f} s; paths {row.paths} "
              f"(thesis median 9.75 s, ratio {row.median / 9.75:.2f})")


def main(argv: list[str] | None = None) -> int:
    """Run both measurements; 0 when the targets are met."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="thesis", help="env file in envs/ (default: thesis)")
    ap.add_argument("--repetitions", type=int, default=10, help="provider disconnections (default: 10)")
    args = ap.parse_args(argv)
    met = peering(args.env)
    detection(args.env, args.repetitions)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
