"""20-latency end to end on the embedded test bed, tiny: env -> testbeds (one cluster, then peered clusters) ->
ping collectors -> parquet -> figure."""

from __future__ import annotations

from pathlib import Path

import papermill as pm
import pytest
from embedded_helpers import require_embedded

from labkit import paths, reference, results

pytestmark = pytest.mark.embedded


def test_latency_notebook_measures_tables_7_2_to_7_5(tmp_path: Path) -> None:
    require_embedded()
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    pm.execute_notebook(str(paths.notebooks_dir() / "20-latency.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"env": "thesis", "run_id": "t", "run_dir": str(run_dir),
                                    "figures_dir": str(figures), "leaves": 2, "count": 5, "interval": 0.2,
                                    "peered": True},
                        kernel_name="labkit", progress_bar=False, cwd=str(paths.repo_root()))
    rows = results.read_table(run_dir, "latency")
    rtt = rows[rows["metric"] == "rtt"]
    assert set(rtt["step"]) == {"vm-to-vm", "pod-same-cluster", "pod-peered"}
    assert set(rtt["leaf"]) == {"leaf-1", "leaf-2"}
    assert (rtt["value"] > 0).all() and (rtt["value"] < 100).all()  # ms, on one machine
    assert rtt.groupby(["step", "leaf"]).size().min() >= 4  # at most one of 5 probes lost
    comparison = reference.read_comparisons(run_dir)
    assert {"latency_ms.table_7_2_network.avg", "latency_ms.table_7_3_same_cluster.avg",
            "latency_ms.table_7_4_liqo_peered.avg", "latency_ms.table_7_5_liqo_overhead"} <= set(comparison["key"])
    peered = rtt[rtt["step"] == "pod-peered"]
    # the probes ran in the leaf clusters: the providers' twins (ReplicaSet pods) of the home pods
    assert peered["source"].str.fullmatch(r"probe-leaf-\d-[a-z0-9]{5}").all(), set(peered["source"])
    assert (figures / "tab-7-2-7-5-latency.png").stat().st_size > 10_000
    # teardown: down() raises (failing the notebook) if it leaves anything; leftovers() here would race
    # with the next engineer's test bed, which may start as soon as ours releases the machine lock
