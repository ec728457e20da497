"""The README's main job in CI: the quick pipeline on the embedded default, end to end.

On the embedded default with the kit's Liqo look-alike (``envs/embedded-lookalike.yaml``): on
Liqo v0.10.2 itself the quick pipeline takes longer than CI's 90 minutes leave; Liqo is tested by
tests/peering/test_liqo*.py and test_galera.py (the thesis env, a DB domain across it).

Every notebook of ``notebooks/pipeline.yaml`` measures on real clusters (quick profile), writes
its tables, its comparison with the thesis and its figures; the report is built; the env's
bounds are checked. The pipeline runs once per session (a module fixture); each test below then
checks one experiment's tables. This is the measure path of every experiment notebook; their
plotting paths are tested alone on small tables (tests/test_experiments_replot.py,
tests/test_stream_replot.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from embedded_helpers import require_embedded

from labkit import bounds, fidelity, reference, results
from labkit.config import load_env
from labkit.experiments import latency, reaction, scalability, stream
from labkit.manifest import Manifest
from labkit.runner import PipelineError, load_pipeline, run_pipeline
from labkit.testbed.embedded import leftovers

pytestmark = pytest.mark.embedded

#: The env of the run (the embedded default, peered by the look-alike: see the module's docstring).
ENV = "embedded-lookalike"
#: Thesis numbers the quick run must put beside ours (every published one the pipeline measures).
COMPARED = ("latency_ms.table_7_2_network.avg", "latency_ms.table_7_3_same_cluster.avg",
            "latency_ms.table_7_4_liqo_peered.avg", "latency_ms.table_7_5_liqo_overhead",
            "reaction_s.figure_7_2_virtual_node_not_ready_median", "stream_downtime_s.figure_7_3_pod_failure_median",
            "stream_downtime_s.figure_7_4_cluster_failure_composition.eviction_wait")

#: Every figure of the thesis the pipeline redraws, plus the kit's own (pacing, multi-level run).
FIGURES = ("env-pacing.png", "fig-5-1-links-vs-n.png", "fig-5-2-independent-groups.png", "fig-5-3-dependent-groups.png",
           "fig-6-1-logical-domains.png", "fig-6-2-island.png", "fig-6-3-two-level-domains.png", "fig-7-1-testbed.png",
           "tab-7-2-7-5-latency.png", "fig-7-2-reaction.png", "fig-7-3-pod-failure.png", "fig-7-3-sweep.png",
           "fig-7-4-cluster-failure.png",
           "eq-5-1-scalability.png", "multilevel-pod-failure.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``invoke lab --env embedded --profile quick`` into a temporary data/ and figures/; the run folder."""
    require_embedded()
    root = tmp_path_factory.mktemp("lab")
    start = time.monotonic()
    error = None
    try:
        run_pipeline(ENV, "quick", run_id="ci", data_root=root / "data", figures_root=root / "figures",
                     progress=False)
    except PipelineError as err:  # the tests below say which experiment failed
        error = err
    run_dir = root / "data" / "ci"
    print(f"\nquick pipeline: {(time.monotonic() - start) / 60:.1f} min; " +
          ", ".join(f"{n.notebook} {n.seconds or 0:.0f} s ({n.status})" for n in Manifest.read(run_dir).notebooks))
    if error is not None:
        print(f"pipeline error: {error}")
    yield run_dir


def test_every_notebook_ran_and_the_report_was_built(run: Path) -> None:
    manifest = Manifest.read(run)
    expected = [e.notebook for e in load_pipeline().notebooks if e.runs_on("embedded")]
    assert [n.notebook for n in manifest.notebooks] == expected
    assert {n.notebook: n.status for n in manifest.notebooks} == dict.fromkeys(expected, "ok"), manifest.error
    assert manifest.status == "ok", manifest.error
    figures = run.parents[1] / "figures"
    missing = [f for f in FIGURES if not (figures / f).is_file() or (figures / f).stat().st_size < 10_000]
    assert not missing, missing
    assert (figures / "report.html").stat().st_size > 100_000
    assert leftovers().empty()


def test_every_published_number_is_compared(run: Path) -> None:
    compared = set(reference.read_comparisons(run)["key"])
    assert set(COMPARED) <= compared, set(COMPARED) - compared


def test_every_bound_was_measured_and_holds(run: Path) -> None:
    verdicts = {t["metric"]: (t["status"], t["value"]) for t in Manifest.read(run).thresholds}
    declared = [b.metric for b in load_env(ENV).bounds]
    assert declared and set(verdicts) == set(declared)
    assert set(declared) <= set(bounds.measured(run)), "a bound's metric was not recorded"
    assert all(status == "pass" for status, _ in verdicts.values()), verdicts


def test_latency_tables_7_2_to_7_5(run: Path) -> None:
    rtt = results.read_table(run, "latency").query("metric == 'rtt'")
    assert set(rtt["step"]) == {"vm-to-vm", "pod-same-cluster", "pod-peered"}
    assert set(rtt["leaf"]) == {"leaf-1", "leaf-2", "leaf-3"}
    assert (rtt["value"] > 0).all() and (rtt["value"] < 100).all()  # ms, on one machine
    assert rtt.groupby(["step", "leaf"]).size().min() >= 45  # at most 5 of 50 probes lost
    means = rtt.groupby("step")["value"].mean()
    assert means["pod-peered"] > means["pod-same-cluster"]  # the tunnel costs something
    stats = latency.table(results.read_table(run, "latency")).query("leaf != 'avg'")
    assert stats["protocol"].str.endswith("(faster than the thesis' protocol)").all()  # quick says so
    same = stats[stats["step"] == "pod-same-cluster"]
    assert same["path"].str.startswith("flannel VXLAN").all(), same  # measured on flannel.1's counters
    assert not stats.loc[stats["step"] == "pod-peered", "path"].str.startswith("not recorded").any()


def test_reaction_fig_7_2(run: Path) -> None:
    delays = results.read_table(run, "reaction")
    assert set(delays["method"]) == {"poll", "watch"} and delays["value"].notna().all()
    assert delays["value"].between(7.0, 35.0).all(), delays[["repetition", "method", "value", "reason"]]
    assert set(delays["bed"]) == {reaction.PAIR, reaction.BED}  # the thesis' pair, then the env's bed
    assert not delays["peering"].str.startswith("not recorded").any()  # the test bed said which peering ran
    table = reaction.table(delays).set_index(["bed", "method"])
    for bed in (reaction.PAIR, reaction.BED):
        assert table.loc[(bed, "watch"), "median"] <= table.loc[(bed, "poll"), "median"] + 0.5  # the watch sees it first


def quick_parameters(notebook: str) -> dict[str, Any]:
    """The parameters ``notebook`` ran with in the quick pipeline (notebooks/pipeline.yaml)."""
    return next(e for e in load_pipeline().notebooks if e.notebook == notebook).resolve("quick")


def test_scalability_matches_eq_5_1(run: Path) -> None:
    quick = quick_parameters("70-scalability.ipynb")
    sizes = [("full mesh", n) for n in scalability.parse_sizes(quick["sizes"])]
    sizes += [("partial mesh star", n) for n in scalability.parse_sizes(quick["star_sizes"])]
    summary = scalability.table(results.read_table(run, "scalability"))
    assert list(zip(summary["topology"], summary["n"])) == sizes
    links = [scalability.formula_links(topology, n, quick["domain_size"]) for topology, n in sizes]
    assert links == [3, 3 + 1]  # eq. 5.1 for 3 clusters; the star of 4 + one domain of 2
    for column in ("links_formula", "virtual_nodes_ready", "tunnels_connected"):
        assert list(summary[column]) == links, column
    assert summary["memory_pss"].is_monotonic_increasing


def _downtimes_add_up(rows, phases: set[str], high_phases: set[str] = frozenset()) -> None:  # noqa: ANN001
    for stream_name, expected in (("low", phases), ("high", phases | high_phases)):
        d = stream.downtimes(rows, stream_name)
        assert len(d) >= 1 and np.isfinite(d["downtime_s"]).all()
        assert d["downtime_s"].between(0.1, 400).all()
        for profile in stream.profiles(rows):  # the named profiles; a sweep point's repetitions restart at 1
            wide = stream.phase_table(rows, stream_name, profile)
            assert expected <= set(wide.columns), (stream_name, profile, wide)
            inside = wide.drop(columns=["detection"] if "eviction" not in wide else []).sum(axis=1)
            mine = stream.downtimes(rows, stream_name, profile).set_index("repetition")["downtime_s"]
            assert np.allclose(inside.to_numpy(), mine.reindex(inside.index).to_numpy()), (stream_name, profile)


def test_pod_failure_fig_7_3(run: Path) -> None:
    rows = results.read_table(run, "pod_failure")
    _downtimes_add_up(rows, {"detection", "termination", "restart", "config fetch", "reconnect", "readiness",
                             "first frame"}, {"high reconnect"})
    assert (rows[rows["metric"] == "phase"]["config_source"].dropna() == "db").any()  # the PDC read the DB
    quick = quick_parameters("40-pod-failure.ipynb")
    reps = stream.repetitions_table(rows).set_index("profile")
    assert list(reps.loc["thesis", "restarts"]) == list(range(1, quick["repetitions"]["thesis"] + 1))  # one pod
    assert (reps.loc["fast", "restarts"] == 1).all()                                                    # fresh pods
    assert set(rows.query("profile == 'sweep'")["sweep_parameter"]) == {"base", *quick["sweep"]}
    timers = results.read_table(run, "pod_failure_timers")
    readiness = timers.query("setting == 'readiness_period_s' and profile in ['thesis', 'fast']")
    assert list(readiness["value"]) == [10, 1]  # Kubernetes' default, the kit's fast profile
    for setting, values in quick["sweep"].items():  # each point of the sweep ran with its value
        points = timers.query("profile == 'sweep' and sweep_parameter == @setting and setting == @setting")
        assert sorted(points["value"]) == sorted(values), (setting, points)
    checks = fidelity.read_checks(run).query("experiment == 'pod_failure'")
    assert len(checks) >= 8 and set(checks["verdict"]) <= {"pass", "fail"}


def test_cluster_failure_fig_7_4(run: Path) -> None:
    rows = results.read_table(run, "cluster_failure")
    _downtimes_add_up(rows, {"detection", "eviction", "restart", "readiness", "first frame"}, {"high reconnect"})
    for profile in ("thesis", "fast"):
        comp = stream.composition(rows, "high", profile).median()
        assert 5 < comp["not_ready_detection"] < 30   # the gateway's 5 lost pings, 2 s apart
        assert 0 < comp["eviction_wait"] < 20         # the 5 s toleration of Table 7.1
    assert len(fidelity.read_checks(run).query("experiment == 'cluster_failure'")) >= 7


def test_island_fig_6_2(run: Path) -> None:
    lost = stream.island_table(results.read_table(run, "island")).set_index("stream")
    isolation_s = quick_parameters("60-island.ipynb")["isolation_s"]
    assert lost.loc["low", "lost"] == 0 and lost.loc["low", "expected"] >= isolation_s * 30
    assert lost.loc["high", "lost"] > 0.5 * lost.loc["high", "expected"]  # the high PDC lost the isolated source


def test_multilevel_downtime(run: Path) -> None:
    rows = results.read_table(run, "multilevel")
    _downtimes_add_up(rows, {"restart", "first frame"})
    print(stream.downtimes(rows).to_string())
