"""The VMs' disk (labkit.testbed.embedded.disk) against the host's file system: file creation and image imports.

Run as root, with no test bed up (it mounts a second image of its own)::

    python benchmarks/vm_disk.py [--files 18000] [--image runtime] [--repeat 2]

For each place, a directory on the host's file system under ``/var/lib`` and a fresh ext4 in a
sparse image file loop-mounted the way the test bed mounts its own, it times creating
``--files`` files of 4 kB (the size of an image layer's file count), and ``ctr images import``
of the image ``--image`` into a throwaway containerd whose root is there (``--image ''`` skips
it). It prints the seconds of each and the host/image ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from labkit import images
from labkit.images.containerd import private_containerd
from labkit.testbed.embedded import disk



@contextmanager
def host_dir(parent: str = "/var/lib") -> Iterator[Path]:
    """A fresh directory under ``parent`` (default: the host's file system, where the VMs' state lived before the disk)."""
    path = Path(tempfile.mkdtemp(prefix="lkt-bench-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def image_dir() -> Iterator[Path]:
    """A fresh ext4 in a sparse image, mounted as :func:`labkit.testbed.embedded.disk.ensure` mounts the VMs' one."""
    work = Path(tempfile.mkdtemp(prefix="lkt-bench-", dir="/var/lib"))
    saved, disk.IMAGE = disk.IMAGE, work / "bench.disk"
    try:
        if disk.ensure(work / "mnt", log=print) != "image":
            raise SystemExit("no loop-mounted image here: nothing to compare")
        yield work / "mnt"
    finally:
        disk.release(work / "mnt")
        disk.IMAGE = saved
        shutil.rmtree(work, ignore_errors=True)


def create_files(root: Path, count: int) -> float:
    """Seconds to create ``count`` files of 4 kB in 100 directories under ``root`` (and delete them)."""
    target = root / "files"
    start = time.monotonic()
    per_dir = max(1, count // 100)
    for d in range(0, count, per_dir):
        folder = target / str(d)
        folder.mkdir(parents=True)
        for i in range(min(per_dir, count - d)):
            (folder / str(i)).write_bytes(b"x" * 4096)
    took = time.monotonic() - start
    shutil.rmtree(target)
    return took


def import_image(root: Path, archive: Path) -> float:
    """Seconds of ``ctr images import`` of ``archive`` into a throwaway containerd rooted under ``root``."""
    work = root / "containerd"
    work.mkdir()
    try:
        with private_containerd(work) as socket:
            start = time.monotonic()
            images.import_archive(archive, socket)
            return time.monotonic() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(place: Callable[[], AbstractContextManager[Path]], what: Callable[[Path], float], repeat: int) -> list[float]:
    """``what`` run ``repeat`` times, each in a fresh ``place``."""
    out = []
    for _ in range(repeat):
        with place() as root:
            out.append(what(root))
    return out


def main() -> None:
    """Measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=18_000)
    ap.add_argument("--image", default="runtime", help="image to import ('' to skip)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it loop-mounts an image and runs containerd)")
    cases: dict[str, Callable[[Path], float]] = {f"create {args.files} files": lambda r: create_files(r, args.files)}
    if args.image:
        archive = images.build(args.image)
        cases[f"import {args.image} ({archive.stat().st_size / 1e6:.0f} MB)"] = lambda r: import_image(r, archive)
    print(f"{'case':<34} {'host (s)':>10} {'image (s)':>10} {'ratio':>7}")
    for name, what in cases.items():
        host = statistics.median(measure(host_dir, what, args.repeat))
        image = statistics.median(measure(image_dir, what, args.repeat))
        print(f"{name:<34} {host:>10.2f} {image:>10.2f} {host / image:>7.1f}")


if __name__ == "__main__":
    main()
