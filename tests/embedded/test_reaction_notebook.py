"""30-reaction end to end on the embedded test bed, tiny: two peered clusters -> provider cut -> both
observers -> parquet -> Fig. 7.2."""

from __future__ import annotations

from pathlib import Path

import papermill as pm
import pytest
from embedded_helpers import require_embedded

from labkit import paths, reference, results

pytestmark = pytest.mark.embedded


def test_reaction_notebook_times_the_virtual_node_not_ready(tmp_path: Path) -> None:
    require_embedded()
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    pm.execute_notebook(str(paths.notebooks_dir() / "30-reaction.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"env": "thesis", "run_id": "t", "run_dir": str(run_dir),
                                    "figures_dir": str(figures), "repetitions": 2, "timeout": 60.0},
                        kernel_name="labkit", progress_bar=False, cwd=str(paths.repo_root()))
    delays = results.read_table(run_dir, "reaction")
    assert len(delays) == 4 and set(delays["method"]) == {"poll", "watch"}
    assert set(delays["repetition"]) == {0, 1} and set(delays["unit"]) == {"s"}
    assert delays["value"].notna().all()  # each cut was seen by both observers
    # the tunnel check fires after 5 lost pings 2 s apart; the API path after the 20 s grace period
    assert delays["value"].between(7.0, 35.0).all(), delays[["repetition", "method", "value", "reason"]]
    assert set(delays["path"]) <= {"tunnel", "api-lease"} and set(delays["node"]) == {"liqo-leaf-1"}
    for _, rep in delays.groupby("repetition"):  # the watch sees it no later than the 0.4 s poll (+ one list)
        by = rep.set_index("method")["value"]
        assert by["watch"] <= by["poll"] + 0.5
    nodes = results.read_table(run_dir, "reaction-nodes")
    assert set(nodes["metric"]) == {"node_ready", "fault"}
    assert (nodes[nodes["metric"] == "node_ready"]["value"] == 1.0).any()  # Ready again after each recovery
    comparison = reference.read_comparisons(run_dir).set_index("key")
    assert comparison.loc["reaction_s.figure_7_2_virtual_node_not_ready_median", "thesis_mean"] == 9.75
    assert (figures / "fig-7-2-reaction.png").stat().st_size > 10_000
    # teardown: down() raises (failing the notebook) if it leaves anything; leftovers() here would race
    # with the next engineer's test bed, which may start as soon as ours releases the machine lock
