"""labkit.bounds: notebooks record metrics, the env declares bounds, the runner fails a run that breaks one."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from labkit import bounds
from labkit.config import Bound, ConfigError, load_env, validate_env
from labkit.runner import PipelineError, run_pipeline


@pytest.mark.unit
def test_record_merges_and_check_gives_a_verdict_per_bound(tmp_path: Path) -> None:
    bounds.record(tmp_path, "pod_failure", downtime_s_median=17.5)
    bounds.record(tmp_path, "pod_failure", repetitions=3)
    assert bounds.measured(tmp_path) == {"pod_failure.downtime_s_median": 17.5, "pod_failure.repetitions": 3.0}
    verdicts = bounds.check([Bound(metric="pod_failure.downtime_s_median", max=60),
                             Bound(metric="pod_failure.repetitions", min=5),
                             Bound(metric="island.frames_lost", max=0)], tmp_path)
    assert [v.status for v in verdicts] == ["pass", "fail", "not measured"]
    assert [str(v) for v in bounds.failed(verdicts)] == ["pod_failure.repetitions = 3 (bound ≥ 5): fail"]


@pytest.mark.unit
@pytest.mark.parametrize(("experiment", "values", "message"), [
    ("Pod Failure", {"x": 1}, "experiment name"),
    ("pod", {"x": float("nan")}, "finite"),
    ("pod", {"x": "fast"}, "expected a number"),
])
def test_record_refuses_bad_names_and_values(tmp_path: Path, experiment: str, values: dict, message: str) -> None:
    with pytest.raises(bounds.BoundsError, match=message):
        bounds.record(tmp_path, experiment, **values)


@pytest.mark.unit
def test_a_bound_needs_a_limit_and_a_dotted_metric() -> None:
    raw = {"name": "b", "clusters": [{"name": "root", "role": "acc"}],
           "bounds": [{"metric": "pod_failure.downtime_s", "min": 9, "max": 1}, {"metric": "nodots", "max": 1},
                      {"metric": "a.b"}]}
    with pytest.raises(ConfigError) as err:
        validate_env(raw)
    text = str(err.value)
    assert "bounds[0]" in text and "min 9.0 > max 1.0" in text
    assert "bounds[1].metric" in text and "bounds[2]" in text and "needs min or max" in text


@pytest.mark.unit
def test_shipped_envs_bound_experiments_the_pipeline_records() -> None:
    """Every bound names an experiment of the pipeline (whose headline ``record`` writes)."""
    from labkit.experiments import EXPERIMENTS
    from labkit.runner import load_pipeline

    notebooks = {e.notebook for e in load_pipeline().notebooks}
    declared = [b.metric for name in ("thesis", "embedded") for b in load_env(name).bounds]
    assert declared, "the thesis env declares its bounds"
    for metric in declared:
        experiment = metric.split(".", 1)[0]
        assert experiment in EXPERIMENTS and EXPERIMENTS[experiment].notebook in notebooks, metric


def _pipeline(folder: Path) -> Path:
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "labkit", "display_name": "Python (labkit)", "language": "python"}
    params = nbformat.v4.new_code_cell('run_dir: str = "x"  # where\nvalue: float = 1.0  # the measured value')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("from labkit import bounds\n"
                                                  "bounds.record(run_dir, 'demo', downtime_s=value)")]
    nbformat.write(nb, folder / "00-demo.ipynb")
    (folder / "pipeline.yaml").write_text("notebooks:\n  - {notebook: 00-demo.ipynb, figures: false, "
                                          "profiles: {quick: {value: 3}, full: {value: 9}}}\n")
    return folder / "pipeline.yaml"


@pytest.mark.notebook
def test_a_broken_bound_fails_the_run_and_is_in_the_manifest(tmp_path: Path) -> None:
    env = tmp_path / "bounded.yaml"
    env.write_text("name: bounded\nclusters: [{name: root, role: acc}]\n"
                   "bounds: [{metric: demo.downtime_s, max: 5, why: test}]\n")
    pipe = _pipeline(tmp_path / "nb")
    common = {"data_root": tmp_path / "data", "figures_root": tmp_path / "fig", "pipeline_file": pipe,
              "progress": False, "log": lambda _: None}
    run_pipeline(str(env), "quick", run_id="ok", **common)
    ok = json.loads((tmp_path / "data" / "ok" / "manifest.json").read_text())
    assert ok["status"] == "ok" and ok["thresholds"][0]["status"] == "pass" and ok["thresholds"][0]["value"] == 3
    with pytest.raises(PipelineError, match=r"demo.downtime_s = 9 \(bound ≤ 5\): fail"):
        run_pipeline(str(env), "full", run_id="bad", **common)
    bad = json.loads((tmp_path / "data" / "bad" / "manifest.json").read_text())
    assert bad["status"] == "failed" and bad["thresholds"][0]["status"] == "fail"
