"""The C37.118 parser fuzz test at benchmark size: 1,000,000 byte strings by default.

Runs ``tests/grid/test_grid_c37118.py::test_parser_raises_only_frame_error_on_any_bytes`` with
``LABKIT_FUZZ_EXAMPLES`` examples of 100 byte strings each and prints the wall time.

    python benchmarks/bench_grid_fuzz.py [--examples 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=10_000, help="hypothesis examples (x100 byte strings)")
    a = ap.parse_args()
    env = {**os.environ, "LABKIT_FUZZ_EXAMPLES": str(a.examples)}
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/grid/test_grid_c37118.py::test_parser_raises_only_frame_error_on_any_bytes"],
                         cwd=ROOT, env=env)
    print(f"{a.examples * 100:,} byte strings in {time.perf_counter() - t0:.0f} s, exit code {rc}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
