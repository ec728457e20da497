"""labkit.report: a report a researcher can read and cite, from a run's tables alone.

The ``unit`` tests check each table (readable names, units, no index, no cut cell, no NaN,
verdicts); the ``notebook`` test runs 90-report on a small synthetic run and reads the HTML page
the runner would publish.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest

from labkit import bounds, fidelity, paths, reference, report, results
from labkit.config import load_env
from labkit.experiments import latency, reaction
from labkit.manifest import Manifest


def _latency_rows() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for step, base in (("vm-to-vm", 0.10), ("pod-same-cluster", 0.14), ("pod-peered", 0.8)):
        for leaf in ("leaf-1", "leaf-2", "leaf-3"):
            labels = {"step": step, "leaf": leaf, "cluster": leaf, "count": 100, "interval_s": 0.05,
                      "concurrent": True, "interleaved": step != "pod-same-cluster",
                      "path": {"pod-same-cluster": "flannel VXLAN (flannel.1, vxlan id 1 port 8472)",
                               "pod-peered": "Liqo v0.10.2 (built from its source, driven with liqoctl)"}.get(step)}
            rows += [{**labels, "metric": "rtt", "unit": "ms", "value": float(v), "seq": i,
                      "t": pd.Timestamp("2026-01-01", tz="UTC")} for i, v in enumerate(base + rng.gamma(2, 0.01, 30))]
            rows.append({**labels, "metric": "loss", "unit": "ratio", "value": 0.0, "seq": -1,
                         "t": pd.Timestamp("2026-01-01", tz="UTC")})
    return results.tidy(rows, run_id="r", scenario="latency")


def _reaction_rows() -> pd.DataFrame:
    rows = [{"t": pd.Timestamp("2026-01-01", tz="UTC"), "metric": "not_ready_delay", "unit": "s", "value": v,
             "repetition": i, "method": m, "reason": "KubeletNotReady", "path": "tunnel", "node": "liqo-leaf-1",
             "bed": bed, "peering": "Liqo v0.10.2 (built from its source, driven with liqoctl)",
             "ping_interval_s": 2.0, "loss_threshold": 5}
            for bed, values in (("pair", [9.2, 9.9, 10.3]), ("bed", [11.9, 12.4, 12.9]))
            for m in ("poll", "watch") for i, v in enumerate(values)]
    return results.tidy(rows, run_id="r", scenario="reaction", step=reaction.STEP, cluster="root")


def _run(tmp_path: Path, draw: bool = False) -> tuple[Path, Path]:
    """A run folder as the quick pipeline leaves it for 20 and 30 (tables, comparisons, checks, metrics; figures
    with ``draw``)."""
    run_dir, figures = tmp_path / "data" / "r", tmp_path / "figures"
    Manifest(run_id="r", env="thesis", profile="quick", seed=1).write(run_dir)
    for name, module, tables in (("latency", latency, {"latency": _latency_rows()}),
                                 ("reaction", reaction, {"reaction": _reaction_rows()})):
        reference.write_comparison(run_dir, name, module.compare(tables))
        fidelity.write(run_dir, name, module.fidelity(tables), module.methods(tables))
        bounds.record(run_dir, name, **module.headline(tables))
        if draw:
            module.figures(tables, figures)
    return run_dir, figures


@pytest.mark.unit
def test_results_read_as_a_researcher_cites_them(tmp_path: Path) -> None:
    run_dir, _ = _run(tmp_path)
    checks = fidelity.read_checks(run_dir)
    table = report.results_table(checks, "Fig. 7.2")
    assert list(table.columns) == ["what", "thesis", "ours", "spread", "n", "expected here", "basis", "verdict",
                                   "reason"]
    first = table.iloc[0]
    assert first["thesis"] == "9.75 s (median)" and first["ours"].endswith(" s") and first["spread"].startswith("IQR")
    assert set(table["verdict"]) <= {"pass", "fail", "not measured"} and "fail" in set(table["verdict"])
    page = report.html_table(table)
    assert "<th>verdict</th>" in page and "NaN" not in page and "nan" not in page.lower().replace("nanosec", "")


@pytest.mark.unit
def test_the_fidelity_table_names_method_differences_and_verdict_per_figure(tmp_path: Path) -> None:
    run_dir, _ = _run(tmp_path)
    table = report.fidelity_table(run_dir)
    assert list(table["figure"]) == ["Tables 7.2-7.5", "Fig. 7.2"]  # the thesis' order
    latency_row = table.iloc[0]
    assert "1000 times per test" in latency_row["thesis' method"] and "100 probes 0.05 s apart" in latency_row["ours"]
    assert latency_row["verdict"].startswith("fail") and "protocol" in latency_row["failed checks"]  # quick says so
    assert "userspace WireGuard" in latency_row["implementation"]
    assert table.iloc[1]["verdict"].startswith(("pass", "fail"))


@pytest.mark.unit
def test_published_numbers_read_with_names_units_and_spreads(tmp_path: Path) -> None:
    run_dir, _ = _run(tmp_path)
    table = report.comparison_table(run_dir)
    row = table[(table["figure"] == "Table 7.2") & (table["what"] == "VM → root RTT, leaf-1")].iloc[0]
    assert row["thesis"] == "0.689 ± 0.447 ms" and re.fullmatch(r"[\d.]+ ± [\d.]+ ms", row["ours"])
    pair = table[table["what"] == "NotReady delay, median"].iloc[0]
    assert (pair["figure"], pair["thesis"]) == ("Fig. 7.2", "9.75 s")
    assert report.quantity("reaction_s.figure_7_2_virtual_node_not_ready_median.bed.watch") == (
        "Fig. 7.2", "NotReady delay, median, bed, watch")
    assert report.quantity("some_new.key") == ("—", "some new.key")
    assert not table.isna().any().any()


@pytest.mark.unit
def test_missing_values_never_read_nan_and_cells_are_never_cut() -> None:
    long = "x" * 400
    frame = pd.DataFrame({"a": [np.nan, 1.23456789], "b": [None, long], "c": [pd.NA, "pass (2 of 2)"]})
    page = report.html_table(frame)
    assert "nan" not in page.lower() and "None" not in page and "<NA>" not in page and long in page
    assert page.count(report.MISSING) == 3 and "1.235" in page and "font-weight:bold" in page  # the verdict stands out
    assert "<th></th>" not in page  # no index column
    assert report.number(float("nan"), "ms") == report.MISSING and report.number(0.12345, "ms") == "0.1235 ms"


@pytest.mark.unit
def test_figures_are_titled_and_ordered_as_the_thesis(tmp_path: Path) -> None:
    for name in ("multilevel-pod-failure", "fig-7-2-reaction", "tab-7-2-7-5-latency", "eq-5-1-scalability",
                 "env-pacing", "fig-5-1-links-vs-n", "fig-6-2-island"):
        (tmp_path / f"{name}.png").write_bytes(b"x")
    assert [p.stem for p in report.figures(tmp_path)] == [
        "env-pacing", "fig-5-1-links-vs-n", "eq-5-1-scalability", "fig-6-2-island", "fig-7-2-reaction",
        "tab-7-2-7-5-latency", "multilevel-pod-failure"]
    assert report.figure_title(tmp_path / "tab-7-2-7-5-latency.png").startswith("Tables 7.2-7.5: Round-trip time")
    assert report.figure_of(tmp_path / "fig-5-1-links-vs-n.png") == "Fig. 5.1"
    assert report.figure_of(tmp_path / "fig-7-3-sweep.png") == "Fig. 7.3 sweep"
    assert report.figure_of(tmp_path / "fig-7-3-pod-failure.png") == "Fig. 7.3"
    assert [p.stem for p in report.other_figures(tmp_path)] == ["env-pacing", "fig-5-1-links-vs-n"]


@pytest.mark.unit
def test_sections_follow_the_thesis_and_carry_checks_and_figures(tmp_path: Path) -> None:
    run_dir, figures = _run(tmp_path, draw=True)
    sections = report.sections(run_dir, figures)
    assert [s.figure for s in sections] == ["Tables 7.2-7.5", "Fig. 7.2"]
    assert sections[1].images == (figures / "fig-7-2-reaction.png",) and len(sections[1].results) == 9
    assert "fail" in report.overview(run_dir) and "profile **quick**" in report.overview(run_dir)


@pytest.mark.unit
def test_bounds_and_run_summary_read_without_gaps(tmp_path: Path) -> None:
    run_dir, _ = _run(tmp_path)
    table = report.bounds_table(load_env("thesis").bounds, run_dir)
    assert "not measured" in set(table["value"]) and set(table["status"]) >= {"pass", "not measured"}
    assert not table.isna().any().any()
    summary = report.run_summary(run_dir)
    assert summary.loc["run id", "value"] == "r" and summary.loc["peering", "value"] == "not recorded"


@pytest.mark.notebook
def test_the_report_page_has_verdicts_figures_and_no_gaps(tmp_path: Path) -> None:
    run_dir, figures = _run(tmp_path, draw=True)
    out = tmp_path / "90.ipynb"
    pm.execute_notebook(str(paths.notebooks_dir() / "90-report.ipynb"), str(out),
                        parameters={"env": "thesis", "run_dir": str(run_dir), "figures_dir": str(figures)},
                        kernel_name="labkit", progress_bar=False, cwd=str(paths.repo_root()))
    page = report.to_html(out, tmp_path / "report.html").read_text()
    tables = re.findall(r"<table class=\"labkit\".*?</table>", page, re.S)
    assert len(tables) >= 5  # fidelity, two sections, published numbers, bounds, run
    text = " ".join(tables)
    assert "NaN" not in text and ">nan<" not in text and "..." not in text and "…" not in text
    assert ">pass<" in text and ">fail<" in text and "9.75 s (median)" in text
    assert page.count("data:image/png;base64") >= 2  # the figures are embedded
    assert "Fig. 7.2: Reaction" in page and "welch" not in page.lower()
