"""20-latency end to end on the embedded test bed, tiny: env -> testbed -> ping collectors -> parquet -> figure."""

from __future__ import annotations

from pathlib import Path

import papermill as pm
import pytest
from embedded_helpers import require_embedded

from labkit import paths, reference, results
from labkit.testbed.embedded import leftovers

pytestmark = pytest.mark.embedded


def test_latency_notebook_measures_tables_7_2_and_7_3(tmp_path: Path) -> None:
    require_embedded()
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    pm.execute_notebook(str(paths.notebooks_dir() / "20-latency.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"env": "thesis", "run_id": "t", "run_dir": str(run_dir),
                                    "figures_dir": str(figures), "leaves": 2, "count": 5, "interval": 0.2},
                        kernel_name="labkit", progress_bar=False, cwd=str(paths.repo_root()))
    rows = results.read_table(run_dir, "latency")
    rtt = rows[rows["metric"] == "rtt"]
    assert set(rtt["step"]) == {"vm-to-vm", "pod-same-cluster"}
    assert set(rtt["leaf"]) == {"leaf-1", "leaf-2"}
    assert (rtt["value"] > 0).all() and (rtt["value"] < 100).all()  # ms, on one machine
    assert rtt.groupby(["step", "leaf"]).size().min() >= 4  # at most one of 5 probes lost
    comparison = reference.read_comparisons(run_dir)
    assert {"latency_ms.table_7_2_network.avg", "latency_ms.table_7_3_same_cluster.avg"} <= set(comparison["key"])
    assert (figures / "tab-7-2-7-3-latency.png").stat().st_size > 10_000
    assert leftovers().empty()  # the notebook tore its test bed down
