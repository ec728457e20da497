"""labkit.runner + labkit.manifest: the pipeline writes its manifest first, completes it last,
stops at a failing notebook and records it; figures are redrawn from data alone."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nbformat
import pytest

from labkit import paths
from labkit.config import ConfigError
from labkit.experiments import by_notebook
from labkit.manifest import Manifest, git_info, new_run_id, package_versions
from labkit.runner import (EXPERIMENT_PARAMETERS, PipelineError, execute, load_pipeline, notebook_parameters,
                           rebuild_figures, run_pipeline)

PARAMS = ('run_dir: str = "x"  # where to write\n'
          'figures_dir: str = "f"  # figures\n'
          'replot: bool = False  # redraw only\n'
          'value: int = 1  # a number to write')


def _notebook(path: Path, body: str, params: str = PARAMS) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "labkit", "display_name": "Python (labkit)", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def _pipeline(tmp_path: Path, fail_second: bool = False) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    body = ("from pathlib import Path\n"
            "if not replot:\n    Path(run_dir).mkdir(parents=True, exist_ok=True)\n"
            "    Path(run_dir, 'v.txt').write_text(str(value))\n"
            "Path(figures_dir).mkdir(parents=True, exist_ok=True)\n"
            "Path(figures_dir, 'fig.txt').write_text(Path(run_dir, 'v.txt').read_text())")
    _notebook(tmp_path / "00-first.ipynb", body)
    _notebook(tmp_path / "10-second.ipynb", "raise RuntimeError('boom')" if fail_second else "pass")
    _notebook(tmp_path / "20-third.ipynb", "pass")
    (tmp_path / "pipeline.yaml").write_text(
        "notebooks:\n"
        "  - {notebook: 00-first.ipynb, parameters: {value: 3}, profiles: {full: {value: 9}}}\n"
        "  - {notebook: 10-second.ipynb, figures: false}\n"
        "  - {notebook: 20-third.ipynb, backends: [vms]}\n")
    return tmp_path / "pipeline.yaml"


@pytest.mark.notebook
def test_the_kernel_talks_over_ipc_and_does_not_warn(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    nb = _notebook(tmp_path / "00-ipc.ipynb", "import ipykernel.kernelapp as k\n"
                   "print(k.IPKernelApp.instance().transport)")
    execute(nb, tmp_path / "out.ipynb", {})
    out = [o for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells for o in c.get("outputs", [])]
    assert out[0]["text"].strip() == "ipc"
    assert "without encryption" not in capfd.readouterr().err


@pytest.mark.notebook
def test_pipeline_runs_and_completes_the_manifest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    pipe = _pipeline(tmp_path / "nb_ok")
    m = run_pipeline("thesis", "full", run_id="r1", data_root=tmp_path / "data", figures_root=tmp_path / "fig",
                     pipeline_file=pipe, progress=False, log=lambda _: None)
    data = json.loads((tmp_path / "data" / "r1" / "manifest.json").read_text())
    assert data["status"] == "ok" and data["ended_utc"] >= data["started_utc"]
    assert [n["notebook"] for n in data["notebooks"]] == ["00-first.ipynb", "10-second.ipynb"]  # 20 is vms-only
    assert all(n["status"] == "ok" and n["seconds"] > 0 for n in data["notebooks"])
    assert data["notebooks"][0]["parameters"]["value"] == 9  # the full profile wins
    assert data["notebooks"][1]["parameters"] == {"run_dir": str(tmp_path / "data" / "r1"),
                                                  "figures_dir": str(tmp_path / "fig"), "replot": False}
    assert set(data["git"]) == {"sha", "dirty"} and data["packages"]["pandas"].startswith("2.3")
    assert data["seed"] == m.seed and data["host"]["cpus"] >= 1
    assert (tmp_path / "data" / "r1" / "notebooks" / "00-first.ipynb").exists()
    assert (tmp_path / "fig" / "fig.txt").read_text() == "9"
    assert not [r for r in caplog.records if "Passed unknown parameter" in r.getMessage()]


@pytest.mark.notebook
def test_failing_notebook_stops_the_run_and_is_recorded(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path / "nb_bad", fail_second=True)
    with pytest.raises(PipelineError, match=r"10-second.ipynb failed in cell \d+: RuntimeError: boom"):
        run_pipeline("thesis", "quick", run_id="r2", data_root=tmp_path / "data", figures_root=tmp_path / "fig",
                     pipeline_file=pipe, progress=False, log=lambda _: None)
    m = Manifest.read(tmp_path / "data" / "r2")
    assert m.status == "failed" and "boom" in (m.error or "")
    assert [(n.notebook, n.status) for n in m.notebooks] == [("00-first.ipynb", "ok"), ("10-second.ipynb", "failed")]
    assert m.ended_utc is not None


@pytest.mark.notebook
def test_figures_are_redrawn_from_data_alone(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path / "nb_fig")
    run_pipeline("thesis", "quick", run_id="r3", data_root=tmp_path / "data", figures_root=tmp_path / "fig",
                 pipeline_file=pipe, progress=False, log=lambda _: None)
    (tmp_path / "fig" / "fig.txt").unlink()
    written = rebuild_figures(tmp_path / "data" / "r3", figures_root=tmp_path / "fig", pipeline_file=pipe,
                              progress=False, log=lambda _: None)
    assert written == [tmp_path / "fig" / "fig.txt"]
    assert (tmp_path / "fig" / "fig.txt").read_text() == "3"


@pytest.mark.notebook
def test_figures_are_redrawn_from_a_moved_run(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path / "nb")
    run_pipeline("thesis", "quick", run_id="r4", data_root=tmp_path / "data", figures_root=tmp_path / "fig",
                 pipeline_file=pipe, progress=False, log=lambda _: None)
    moved = (tmp_path / "data" / "r4").rename(tmp_path / "elsewhere")
    (moved / "v.txt").write_text("7")  # the moved run's table, not the recorded path's (which is gone)
    rebuild_figures(moved, figures_root=tmp_path / "fig", pipeline_file=pipe, progress=False, log=lambda _: None)
    assert (tmp_path / "fig" / "fig.txt").read_text() == "7"


@pytest.mark.unit
def test_unknown_parameter_is_an_error(tmp_path: Path) -> None:
    nb = _notebook(tmp_path / "00-x.ipynb", "pass")
    with pytest.raises(PipelineError, match=r"unknown parameter\(s\) \['valeu'\]"):
        notebook_parameters(nb, {"valeu": 2}, {})
    assert notebook_parameters(nb, {"value": 2}, {"run_dir": "d", "seed": 3}) == {"run_dir": "d", "value": 2}


@pytest.mark.unit
def test_notebook_without_parameters_cell_is_refused(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, tmp_path / "00-y.ipynb")
    with pytest.raises(PipelineError, match="no cell tagged 'parameters'"):
        notebook_parameters(tmp_path / "00-y.ipynb", {}, {})


@pytest.mark.unit
def test_the_shipped_pipeline_loads() -> None:
    pipeline = load_pipeline()
    assert pipeline.notebooks[0].notebook == "00-environment.ipynb"
    assert pipeline.notebooks[0].resolve("quick")["pacing_ticks"] < pipeline.notebooks[0].resolve("full")["pacing_ticks"]


@pytest.mark.unit
def test_the_shipped_pipeline_gives_every_experiment_its_checked_parameters() -> None:
    for entry in load_pipeline().notebooks:
        experiment = by_notebook(entry.notebook)
        for profile in ("quick", "full"):
            own = entry.own_parameters(profile)
            if experiment is None:
                assert EXPERIMENT_PARAMETERS not in own
                continue
            params = own[EXPERIMENT_PARAMETERS]
            assert set(params) == set(experiment.module.Parameters.model_fields)  # every default resolved
            assert experiment.parameters(params).model_dump(mode="json") == params


@pytest.mark.unit
def test_a_bad_experiment_parameter_stops_the_run_before_anything_runs(tmp_path: Path) -> None:
    shutil.copy(paths.notebooks_dir() / "20-latency.ipynb", tmp_path / "20-latency.ipynb")
    (tmp_path / "pipeline.yaml").write_text("notebooks:\n  - {notebook: 20-latency.ipynb, parameters: {count: 0},"
                                            " profiles: {quick: {cout: 5}}}\n")
    with pytest.raises(ConfigError, match=r"(?s)20-latency.ipynb: count: .*greater than or equal to 1.*"
                                          r"20-latency.ipynb: cout: Extra inputs are not permitted"):
        run_pipeline("thesis", "quick", run_id="bad", data_root=tmp_path / "data", figures_root=tmp_path / "fig",
                     pipeline_file=tmp_path / "pipeline.yaml", progress=False, log=lambda _: None)
    assert not (tmp_path / "data" / "bad").exists()  # no manifest: nothing ran


@pytest.mark.unit
def test_manifest_round_trip_and_helpers(tmp_path: Path) -> None:
    m = Manifest(run_id=new_run_id(), env="thesis", profile="quick", seed=1)
    m.write(tmp_path)
    assert Manifest.read(tmp_path) == m
    assert "pandas" in package_versions() and "python" in package_versions()
    assert git_info(tmp_path) == {"sha": None, "dirty": None}
    with pytest.raises(FileNotFoundError, match="no manifest"):
        Manifest.read(tmp_path / "nope")
