"""Measure image builds: cold, warm, after a labkit code change, and reproducibility.

Run as root (rootfs images need mmdebstrap)::

    python benchmarks/images_build.py [--images pause runtime galera] [--out FILE.json]

For each image it builds into a fresh cache A (cold), again into A (warm, all cached),
then into a fresh cache B (cold again) and compares every layer digest between A and B.
For ``runtime`` it then edits one labkit file in a copy of the checkout and rebuilds in A
(only the wheel layer should rebuild). Results print as a table and go to ``--out`` as JSON.
Nothing touches ``~/.cache/labkit``: caches live in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from labkit import paths
from labkit.images import build_image


def _timed_build(name: str, cache: Path, root: Path) -> tuple[float, object]:
    """Build ``name`` with ``cache`` as LABKIT_CACHE and ``root`` as LABKIT_ROOT."""
    os.environ["LABKIT_CACHE"], os.environ["LABKIT_ROOT"] = str(cache), str(root)
    start = time.monotonic()
    archive = build_image(name, log=lambda line: print("   ", line, flush=True))
    return time.monotonic() - start, archive


def _checkout_copy(dest: Path) -> Path:
    """Copy what the images read from the checkout (labkit/, go/, pyproject, README)."""
    src = paths.repo_root()
    for sub in ("labkit", "go/pause"):
        shutil.copytree(src / sub, dest / sub, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    return dest


def measure(name: str, work: Path) -> dict[str, object]:
    """Cold/warm/code-change timings, sizes and A-vs-B layer digests of image ``name``."""
    root = _checkout_copy(work / f"{name}-checkout")
    cold, a = _timed_build(name, work / f"{name}-A", root)
    warm, _ = _timed_build(name, work / f"{name}-A", root)
    cold_b, b = _timed_build(name, work / f"{name}-B", root)
    row: dict[str, object] = {
        "image": a.ref, "cold_s": round(cold, 1), "warm_s": round(warm, 2), "cold_again_s": round(cold_b, 1),
        "archive_mb": round(a.path.stat().st_size / 1e6, 1),
        "layers": [{"digest": la.digest, "size_mb": round(la.size / 1e6, 2), "same_in_b": la.digest == lb.digest,
                    "same_diff_id_in_b": la.diff_id == lb.diff_id} for la, lb in zip(a.layers, b.layers)],
        "manifest_same_in_b": a.manifest_digest == b.manifest_digest,
    }
    if name == "runtime":
        marker = root / "labkit" / "__init__.py"
        marker.write_text(marker.read_text() + "\n# benchmark edit\n")
        row["code_change_s"] = round(_timed_build(name, work / f"{name}-A", root)[0], 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", nargs="+", default=["pause", "runtime", "galera"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labkit-images-bench-"))
    try:
        rows = []
        for name in args.images:
            print(f"== {name}", flush=True)
            rows.append(measure(name, work))
            print(json.dumps(rows[-1], indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
