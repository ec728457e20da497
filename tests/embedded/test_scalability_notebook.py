"""70-scalability end to end on the embedded test bed, tiny: N = 2 and 3 clusters -> peered -> links, times,
memory -> parquet -> figure."""

from __future__ import annotations

from pathlib import Path

import papermill as pm
import pytest
from embedded_helpers import require_embedded

from labkit import paths, reference, results
from labkit.experiments import scalability

pytestmark = pytest.mark.embedded


def test_scalability_notebook_counts_links_and_times_setup(tmp_path: Path) -> None:
    require_embedded()
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    pm.execute_notebook(str(paths.notebooks_dir() / "70-scalability.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"env": "thesis", "run_id": "t", "run_dir": str(run_dir),
                                    "figures_dir": str(figures), "sizes": "2,3"},
                        kernel_name="labkit", progress_bar=False, cwd=str(paths.repo_root()))
    summary = scalability.table(results.read_table(run_dir, "scalability")).set_index("n")
    assert list(summary.index) == [2, 3]
    # eq. 5.1: every pair of clusters peered once, one virtual kubelet and one tunnel per pair, all Ready
    for column in ("peering_links", "tunnels", "virtual_nodes_ready"):
        assert list(summary[column]) == [1, 3], column
    assert (summary["clusters_ready"] > 0).all() and (summary["peerings_ready"] > 0).all()
    # memory grows with the clusters: roughly 150-900 MiB each (control plane, kubelet, containerd)
    pss = summary["memory_pss"]
    assert 150 * 2 < pss.loc[2] < 900 * 2 and pss.loc[3] > pss.loc[2]
    assert (summary["memory_rss"] >= summary["memory_pss"]).all()
    comparison = reference.read_comparisons(run_dir).set_index("key")
    assert comparison.loc["scalability.peering_links_full_mesh.n3", "diff"] == 0
    assert (figures / "eq-5-1-scalability.png").stat().st_size > 10_000
    # teardown: down() raises (failing the notebook) if it leaves anything; leftovers() here would race
    # with the next engineer's test bed, which may start as soon as ours releases the machine lock
