"""notebooks/10-topology.ipynb: the contract, and a papermill run on tiny parameters (then a replot)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from labkit import paths, results
from labkit.install import KERNEL_NAME
from labkit.runner import STANDARD_PARAMETERS
from labkit.topology import draw

pytestmark = pytest.mark.notebook

NOTEBOOK = paths.notebooks_dir() / "10-topology.ipynb"
FIGURES = ["fig-5-1-links-vs-n", "fig-5-2-independent-groups", "fig-5-3-dependent-groups",
           "fig-6-1-logical-domains", "fig-6-3-two-level-domains", "fig-7-1-testbed", "topology-thesis"]


def _run(tmp_path: Path, caplog: pytest.LogCaptureFixture, **extra: object) -> None:
    parameters = {"env": "thesis", "profile": "quick", "run_id": "t", "run_dir": str(tmp_path / "run"),
                  "figures_dir": str(tmp_path / "fig"), "links_max_n": 100, **extra}
    caplog.set_level(logging.WARNING)
    pm.execute_notebook(NOTEBOOK, tmp_path / "out.ipynb", parameters=parameters, kernel_name=KERNEL_NAME,
                        progress_bar=False, cwd=str(tmp_path))
    unknown = [r.getMessage() for r in caplog.records if "Passed unknown parameter" in r.getMessage()]
    assert not unknown, unknown


def test_contract_and_standard_parameters() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec.name == KERNEL_NAME
    cells = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    statements = ast.parse(params[0].source).body
    assert all(isinstance(s, ast.AnnAssign) and isinstance(s.value, ast.Constant) for s in statements)
    assert all("  # " in line for line in params[0].source.splitlines())
    declared = {s.target.id for s in statements if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    assert declared >= set(STANDARD_PARAMETERS) - {"session"}  # it brings up no test bed
    for cell in cells:
        assert set(cell.metadata.get("tags", [])) <= {"parameters", "setup", "measure", "plot"}
        assert cell.metadata.get("tags") and not cell.outputs and cell.execution_count is None


def test_notebook_draws_every_figure_then_replots_from_its_table(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    _run(tmp_path, caplog)
    for figure in FIGURES:
        assert (tmp_path / "fig" / f"{figure}.png").stat().st_size > 5000, figure
    links = results.read_table(tmp_path / "run", draw.LINKS_TABLE)
    assert sorted(set(links["n"])) == [2, 5, 10, 20, 50, 100]
    assert set(links["model"]) == {"star", "partial mesh star", "full mesh"}
    (tmp_path / "fig" / "fig-5-1-links-vs-n.png").unlink()
    _run(tmp_path, caplog, replot=True, links_max_n=5)  # replot must not recompute: the table keeps N up to 100
    assert (tmp_path / "fig" / "fig-5-1-links-vs-n.png").exists()
    assert sorted(set(results.read_table(tmp_path / "run", draw.LINKS_TABLE)["n"])) == [2, 5, 10, 20, 50, 100]
