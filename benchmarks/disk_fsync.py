"""fsync on the VMs' shared disk while another VM writes, against tmpfs (what a memory-backed emptyDir gives).

Run as root, with no test bed up (it mounts an image of its own, as ``vm_disk.py`` does)::

    python benchmarks/disk_fsync.py [--flood-mb 6000] [--fsyncs 60]

Every VM of the embedded test bed keeps its state on one loop-mounted ext4
(:mod:`labkit.testbed.embedded.disk`), so an ``fsync`` in one VM waits behind the writes
another VM queued on that device (an image import's). For each place, a fresh ext4 image
mounted as the test bed mounts it and a tmpfs, it times ``--fsyncs`` writes of 4 kB each
followed by ``fsync``, 50 ms apart, while a thread writes ``--flood-mb`` MB to the ext4 image,
and prints the median, the 90th percentile and the sum, and the ext4/tmpfs ratio of the sums.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from contextlib import nullcontext
from pathlib import Path

from vm_disk import host_dir, image_dir

CHUNK = 1 << 20


def flood(target: Path, megabytes: int, stop: threading.Event) -> None:
    """Write ``megabytes`` MB of zeros to ``target`` (no fsync), as an image import's unpacking does."""
    block = bytes(CHUNK)
    with target.open("wb") as out:
        for _ in range(megabytes):
            if stop.is_set():
                return
            out.write(block)


def fsync_latencies(place: Path, count: int) -> list[float]:
    """Seconds of each of ``count`` 4 kB write + fsync of a new file in ``place``, 50 ms apart."""
    out = []
    for i in range(count):
        start = time.monotonic()
        fd = os.open(place / f"s{i}", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
        out.append(time.monotonic() - start)
        time.sleep(0.05)
    return out


def summary(latencies: list[float]) -> str:
    """Median, 90th percentile (ms) and sum (s)."""
    ordered = sorted(latencies)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"median {statistics.median(ordered) * 1e3:7.1f} ms  p90 {p90 * 1e3:7.1f} ms  sum {sum(ordered):6.2f} s"


def main() -> None:
    """Measure and print both places."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood-mb", type=int, default=6000)
    ap.add_argument("--fsyncs", type=int, default=60)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it loop-mounts an image)")
    sums = {}
    with image_dir() as disk:
        for name, place in (("shared disk (ext4 on loop)", nullcontext(disk)), ("tmpfs", host_dir("/dev/shm"))):
            with place as where:
                stop = threading.Event()
                writer = threading.Thread(target=flood, args=(disk / "flood", args.flood_mb, stop))
                writer.start()
                time.sleep(1.0)  # the writer's dirty pages pile up first
                try:
                    latencies = fsync_latencies(where, args.fsyncs)
                finally:
                    stop.set()
                    writer.join()
                    (disk / "flood").unlink()
                sums[name] = sum(latencies)
                print(f"{name:<28} {summary(latencies)}")
    print(f"shared disk / tmpfs (sums): {sums['shared disk (ext4 on loop)'] / sums['tmpfs']:.0f}x")


if __name__ == "__main__":
    main()
