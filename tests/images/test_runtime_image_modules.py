"""The runtime image holds ``labkit.grid`` without the host-only packages: prove the pods' code needs none.

The image leaves out :data:`labkit.images.sources.EXCLUDED_FROM_IMAGE` (notebooks, plotting,
test bed control, parquet). A subprocess blocks their imports and runs what the pods run: it imports
every ``python -m labkit.grid.<program>`` module, solves a network as the PMUs do, estimates
the state as the estimator does, and writes CSV as the estimator and the recorder do.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labkit.images.sources import HOST_ONLY_MODULES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

POD_WORK = """
import importlib.abc, sys

class HostOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the runtime image")

sys.meta_path.insert(0, HOST_ONLY := HostOnly())
import numpy as np
import pandas as pd
from labkit.grid import pdc, pmu, recorder, se  # the pods' programs
from labkit.grid.phasors import PhasorSource

source = PhasorSource("case14", range(14), seed=1)
channels = [ch for chans in source.channels for ch in chans]
estimate = se.LinearPmuEstimator("case14", channels).estimate(np.concatenate(source.sample()))
assert np.isfinite(estimate.v).all()
pd.DataFrame({"v": np.abs(estimate.v)}).to_csv(OUT, index=False)
assert recorder.Recorder("127.0.0.1", 1, 1, OUT + ".rec").flush() == 0
print("ok", sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED))
"""


def test_the_pods_programs_run_without_the_host_only_packages(tmp_path: Path) -> None:
    script = f"BLOCKED = {set(HOST_ONLY_MODULES)!r}\nOUT = {str(tmp_path / 'v.csv')!r}\n" + textwrap.dedent(POD_WORK)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok []"
    assert (tmp_path / "v.csv").stat().st_size > 0


def test_the_blocker_does_block() -> None:
    script = ("BLOCKED = {'kubernetes'}\nOUT = ''\n" + textwrap.dedent(POD_WORK)).replace(
        "from labkit.grid import", "import kubernetes\nfrom labkit.grid import")
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "kubernetes is not in the runtime image" in res.stderr
