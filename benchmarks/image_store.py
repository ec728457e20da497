"""What a node pays for the probe, runtime and galera images: importing them, or being seeded from the store.

Run as root, with no test bed up (it mounts an image file system of its own, as the VMs' disk)::

    python benchmarks/image_store.py [--repeat 3]

Each repetition starts a throwaway containerd whose root is on a fresh loop-mounted ext4 (the
VMs' disk, ``benchmarks/vm_disk.py``'s ``image_dir``), once importing the images with
``ctr images import`` (what every node of a test bed did before the store) and once seeding the
root from the node image store first (``labkit.images.store``, built by ``invoke setup``). It
prints the median wall time and CPU time (containerd and ctr: the children's ``os.times``) of
both, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import AbstractContextManager
from pathlib import Path

from vm_disk import image_dir

from labkit import images
from labkit.images import store
from labkit.images.containerd import list_images, private_containerd


def node_cost(root: Path, archives: list[Path], seed_from: store.Store | None) -> tuple[float, float]:
    """Wall and CPU seconds until a fresh containerd under ``root`` lists every image of ``archives``."""
    work = root / "containerd"
    work.mkdir()
    before, start = os.times(), time.monotonic()
    with (private_containerd(work) if seed_from is None else _seeded(work, seed_from)) as socket:
        if seed_from is None:
            for archive in archives:
                images.import_archive(archive, socket)
        listed = {r.ref for r in list_images(socket)}
    wall, after = time.monotonic() - start, os.times()
    missing = {images.archive_ref(a) for a in archives} - listed
    if missing:
        raise SystemExit(f"containerd does not list {sorted(missing)}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def _seeded(work: Path, built: store.Store) -> AbstractContextManager[Path]:
    """A private containerd whose root was seeded from ``built`` before it started."""
    built.seed(work / "root")
    return private_containerd(work)


def main() -> None:
    """Measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it loop-mounts an image and runs containerd)")
    built = store.cached()
    if built is None:
        raise SystemExit("no node image store for the current images: run `invoke setup` first")
    archives = list(built.archives)
    rows: dict[str, list[tuple[float, float]]] = {"import": [], "seed": []}
    for _ in range(args.repeat):
        for case, source in (("import", None), ("seed", built)):
            with image_dir() as root:
                rows[case].append(node_cost(root, archives, source))
    print(f"{len(archives)} images ({', '.join(a.name for a in archives)}), {args.repeat} repetitions, medians")
    print(f"{'case':<8} {'wall (s)':>9} {'CPU (s)':>9}")
    for case, values in rows.items():
        print(f"{case:<8} {statistics.median(v[0] for v in values):>9.2f} {statistics.median(v[1] for v in values):>9.2f}")
    for i, what in enumerate(("wall", "CPU")):
        ratio = statistics.median(v[i] for v in rows["import"]) / statistics.median(v[i] for v in rows["seed"])
        print(f"import / seed ({what}): {ratio:.1f}")


if __name__ == "__main__":
    main()
