"""The notebook contract, checked on every notebook of the pipeline, and 00-environment's wiring."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from testbook import testbook

from labkit import paths
from labkit.experiments import EXPERIMENTS
from labkit.runner import load_pipeline

TAGS = {"parameters", "setup", "deploy", "inject", "measure", "plot"}
NOTEBOOKS = [paths.notebooks_dir() / e.notebook for e in load_pipeline().notebooks]


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.unit
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_contract(path: Path) -> None:
    cells = _code_cells(path)
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: exactly one parameters cell"
    for stmt in ast.parse(params[0].source).body:
        assert isinstance(stmt, ast.AnnAssign), f"{path.name}: parameters must be typed (`x: int = 1`)"
        empty = isinstance(stmt.value, ast.Dict) and not stmt.value.keys  # an experiment's `params: dict = {}`
        assert isinstance(stmt.value, ast.Constant) or empty, f"{path.name}: parameters must be literals"
    for line in params[0].source.splitlines():
        assert "  # " in line, f"{path.name}: comment every parameter: {line!r}"
    for cell in cells:
        tags = set(cell.metadata.get("tags", []))
        assert tags and tags <= TAGS, f"{path.name}: cell tags {tags} not among {TAGS}"
        assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name}: committed outputs"


@pytest.mark.notebook
def test_environment_notebook_records_and_plots(tmp_path: Path) -> None:
    nb_path = paths.notebooks_dir() / "00-environment.ipynb"
    with testbook(nb_path, execute="parameters", kernel_name="labkit") as tb:
        tb.inject(f"run_dir = {str(tmp_path / 'run')!r}; figures_dir = {str(tmp_path / 'fig')!r}; "
                  "run_id = 't'; pacing_ticks = 20; replot = False", pop=True)
        rest = [i for i, c in enumerate(tb.cells)
                if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
        tb.execute_cell(rest)
        assert "count" in tb.cell_output_text(rest[-1])  # the summary of the pacing table
    pacing = pd.read_parquet(tmp_path / "run" / "pacing.parquet")
    assert len(pacing) == 20 and set(pacing["metric"]) == {"tick_lateness"}
    assert (pacing["value"] > -1).all()  # a tick is never much early: absolute deadlines
    assert (tmp_path / "fig" / "env-pacing.png").stat().st_size > 1000


@pytest.mark.unit
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_an_experiment_notebook_is_one_record_and_one_plot_call(name: str) -> None:
    """The notebook of every experiment holds nothing but its parameters, one measure call and one plot call."""
    experiment = EXPERIMENTS[name]
    cells = {tuple(c.metadata["tags"]): c.source for c in _code_cells(paths.notebooks_dir() / experiment.notebook)}
    assert "params: dict = {}" in cells[("parameters",)] and "session: str" in cells[("parameters",)]
    assert cells[("measure",)] == (f"if not replot:\n    experiments.record({name!r}, env, run_dir, params, "
                                   "run_id=run_id, session=session)")
    assert cells[("plot",)] == f"experiments.plot({name!r}, run_dir, figures_dir)"


@pytest.mark.unit
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_module_has_the_one_shape(name: str) -> None:
    from labkit.experiments.base import Parameters

    module = EXPERIMENTS[name].module
    assert module.NAME == name and module.TABLES[0] == name  # its tables bear its name
    assert issubclass(module.Parameters, Parameters)
    for part in ("beds", "measure", "headline", "compare", "figures", "summary"):
        assert callable(getattr(module, part)), f"{name}.{part}"
    assert EXPERIMENTS[name].notebook in {e.notebook for e in load_pipeline().notebooks}
