"""The stream notebooks (40, 50, 60, 80) redraw from tidy tables alone, and the harness' analysis.

The tables are made here from synthetic recorder frames and PDC log milestones with the same
functions the measurement uses (``labkit.experiments.stream``), so the replot path sees what a
run writes. The ``unit`` tests check the phase split and the frame accounting on their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest

from stream_helpers import FPS, HIGH_S, PHASE_S, T0, downtime_rows, frames_at, timers_rows

from labkit import paths, results
from labkit.deploy.chain import chain_of, grid_clusters
from labkit.experiments import stream
from labkit.faults import FaultLog

def _island_rows() -> pd.DataFrame:
    cut, back = T0 + 10.0, T0 + 40.0
    frames = pd.concat([frames_at("low", T0, T0 + 60.0, []),
                        frames_at("high", T0, T0 + 60.0, [(cut - 0.01, back + 2.0)])],
                       ignore_index=True)
    rows = stream.island_rows(frames, cut, back, FPS, cluster="leaf-2", colocated=True, run_id="t", scenario="island")
    return stream.experiment_table(rows, frames, FaultLog(), {"run_id": "t", "scenario": "island"})


def _replot(notebook: str, run_dir: Path, figures: Path, out: Path, **extra: object) -> None:
    pm.execute_notebook(str(paths.notebooks_dir() / notebook), str(out),
                        parameters={"run_id": "t", "run_dir": str(run_dir), "figures_dir": str(figures),
                                    "replot": True, **extra},
                        kernel_name="labkit", progress_bar=False, cwd=str(paths.repo_root()))


@pytest.mark.unit
def test_phases_add_up_to_the_downtime_and_stay_in_order() -> None:
    split = stream.phase_split(10.0, 20.0, [("detection", 12.0), ("eviction", 11.0), ("restart", None),
                                             ("startup", 13.5), ("config fetch", 15.0), ("reconnect", 25.0)])
    assert [p for p, _, _ in split] == ["detection", "eviction", "startup", "config fetch", "reconnect",
                                         "first frame"]
    assert sum(b - a for _, a, b in split) == pytest.approx(10.0)
    assert all(b >= a for _, a, b in split)                     # the eviction seen "before" NotReady is clamped
    assert dict((p, b - a) for p, a, b in split)["config fetch"] == pytest.approx(1.5)
    assert split[-2:] == [("reconnect", 15.0, 20.0), ("first frame", 20.0, 20.0)]  # clamped at first_new
    with pytest.raises(ValueError, match="before"):
        stream.phase_split(5.0, 4.0, [])


@pytest.mark.unit
def test_pdc_log_milestones_are_parsed_with_milliseconds() -> None:
    logs = stream.parse_log("2026-11-29 10:22:05,123 labkit.grid.pdc INFO process started\n"
                            "garbage line\n"
                            "2026-11-29 10:22:06,200 labkit.grid.pmu INFO PDC pdc-low listening on 0.0.0.0:4712\n"
                            "2026-11-29 10:22:06,300 labkit.grid.pdc INFO input pmu-1 connected\n"
                            "2026-11-29 10:22:06,100 labkit.grid.pdc INFO config-fetch name=pdc-low source=db "
                            "address=pdc-config-db.test.svc:3306/labkit seconds=0.123400 attempts=2\n"
                            "2026-11-29 10:23:06,000 labkit.grid.pmu INFO PDC pdc-low stopping on SIGTERM\n"
                            "2026-11-29 10:23:06,042 labkit.grid.pmu INFO PDC pdc-low stopped\n")
    assert list(logs["event"]) == ["process started", "listening", "input connected", "config fetched", "stopping",
                                   "stopped"]
    assert logs["t"].iloc[1] - logs["t"].iloc[0] == pytest.approx(1.077)
    assert logs["t"].iloc[5] - logs["t"].iloc[4] == pytest.approx(0.042, abs=1e-6)
    assert logs.set_index("event").loc["config fetched", "seconds"] == pytest.approx(0.1234)
    assert logs.set_index("event").loc["config fetched", "input"] == "db"
    assert logs.set_index("event").loc["input connected", "input"] == "pmu-1"


@pytest.mark.unit
def test_repetition_rows_measure_each_phase_at_both_pdcs() -> None:
    rows = downtime_rows("pod-failure", cluster_failure=False)
    for stream_name, tail in (("low", {}), ("high", HIGH_S)):
        wide = stream.phase_table(rows, stream_name)
        d = stream.downtimes(rows, stream_name)
        expected = {**PHASE_S, **tail} if tail else PHASE_S
        assert list(wide.columns) == ["detection", *[p for p in stream.PHASES if p in expected]]
        inside = wide.drop(columns="detection").sum(axis=1)
        assert np.allclose(inside.to_numpy(), d["downtime_s"].to_numpy())           # the phases add up
        for phase, seconds in expected.items():
            if phase == "restart":   # repetition k restarted k - 1 s later (a growing back-off)
                assert list(wide[phase].round(2)) == pytest.approx([0.8, 1.8, 2.8], abs=0.05)
            elif phase == "readiness" and stream_name == "high":
                continue                         # the high stream's readiness ends with its own first frame
            else:
                assert wide[phase].median() == pytest.approx(seconds, abs=0.05), (stream_name, phase)
        assert (wide["detection"] - 5.05).abs().max() < 0.01   # fault -> SIGTERM, before the downtime
    assert stream.missing_table(rows).empty
    cmp = stream.compare_pod_failure(rows)
    assert list(cmp["stream"]) == ["low", "high"] and (cmp["thesis_mean"] == 16.41).all()
    assert (cmp["labkit_n"] == 3).all()


@pytest.mark.unit
def test_the_downtime_after_a_fault_is_its_outage_however_short() -> None:
    fault, removed = T0 + 10.0, T0 + 31.0
    frames = frames_at("low", T0, T0 + 60.0, [(fault + 3.0, fault + 3.12),     # 3 frames a busy PDC dropped
                                               (fault + 20.0, fault + 20.43),  # the restart: 0.43 s, 12 frames
                                               (removed + 4.0, removed + 9.0)])  # the next repetition's fresh pod
    d = stream.downtime_after(frames, fault, "low", until=removed)
    assert d is not None and d["missing_frames"] == 12
    assert d["value"] == pytest.approx(13 / FPS)
    assert stream.downtime_after(frames, fault, "low")["missing_frames"] > 12   # unbounded, the next one is longer
    assert stream.downtime_after(frames, fault + 25.0, "low", until=removed) is None


@pytest.mark.unit
def test_a_milestone_not_observed_is_named_and_its_time_goes_to_the_next_phase() -> None:
    rows = downtime_rows("pod-failure", cluster_failure=False, unobserved=2)
    missing = stream.missing_table(rows)
    assert list(missing["repetition"]) == [2, 2] and set(missing["stream"]) == {"low", "high"}
    assert (missing["missing"] == "termination,readiness").all()
    assert "pod watch" in missing["what"].iloc[0] and "stopped" in missing["what"].iloc[0]
    wide = stream.phase_table(rows, "low")
    assert np.isnan(wide.loc[2, "termination"]) and np.isnan(wide.loc[2, "readiness"])
    assert wide.loc[2, "restart"] == pytest.approx(PHASE_S["termination"] + PHASE_S["restart"] + 1.0, abs=0.05)
    assert wide.loc[2, "first frame"] == pytest.approx(PHASE_S["readiness"] + PHASE_S["first frame"], abs=0.05)


@pytest.mark.unit
def test_the_decomposition_gives_each_profiles_median_phases() -> None:
    rows = downtime_rows("pod-failure", cluster_failure=False, profiles=("thesis", "fast"))
    dec = stream.decomposition(rows, "high")
    assert list(dec.index) == ["thesis", "fast"]
    assert dec.loc["thesis", "high reconnect"] == pytest.approx(HIGH_S["high reconnect"], abs=0.05)
    assert dec.loc["fast", "restart"] == pytest.approx(1.8, abs=0.05)
    assert dec.loc["thesis", "sum of medians"] == pytest.approx(dec.loc["thesis", "downtime median"], abs=0.1)
    assert list(stream.table(rows)["profile"].unique()) == ["thesis", "fast"]
    reps = stream.repetitions_table(rows)
    assert len(reps) == 6 and {"downtime low (s)", "downtime high (s)"} <= set(reps.columns)


@pytest.mark.unit
def test_the_sweep_table_puts_the_base_under_every_swept_setting() -> None:
    rows = []
    for setting, value, extra in (("base", None, 0.0), ("readiness_period_s", 1.0, -1.5),
                                  ("pdc_reconnect_s", 0.1, -1.0)):
        part = downtime_rows("pod-failure", cluster_failure=False, reps=2)
        shift = part["metric"] == "stream_downtime"
        rows.append(part.assign(profile="sweep", sweep_parameter=setting, sweep_value=value,
                                value=part["value"].where(~shift, part["value"] + extra)))
    from labkit.workloads.timers import THESIS

    timers = pd.DataFrame(stream.timer_rows(THESIS, profile="sweep", sweep_parameter="base"))
    sweep = stream.sweep_table(stream.concat(rows), timers)
    assert list(zip(sweep["setting"], sweep["value"])) == [("readiness_period_s", 1.0), ("readiness_period_s", 10.0),
                                                           ("pdc_reconnect_s", 0.1), ("pdc_reconnect_s", 1.5)]
    assert list(sweep["base"]) == [False, True, False, True]
    by = sweep.set_index(["setting", "value"])
    assert by.loc[("readiness_period_s", 10.0), "high median (s)"] - by.loc[("readiness_period_s", 1.0),
                                                                             "high median (s)"] == pytest.approx(1.5)
    assert (sweep["n"] == 2).all()


@pytest.mark.unit
def test_the_cluster_failure_terms_and_the_composed_thesis_total() -> None:
    rows = downtime_rows("cluster-failure", cluster_failure=True, profiles=("thesis", "fast"))
    comp = stream.composition(rows, "high", "thesis").median()
    assert comp["not_ready_detection"] == pytest.approx(9.5, abs=0.05)
    assert comp["eviction_wait"] == pytest.approx(5.0, abs=0.05)
    # eviction -> process started (0.2 + 0.8, + the median repetition's extra 1 s), startup, fetch, reconnect,
    # readiness, then the high PDC's reconnect and first frame
    assert comp["pod_restart"] == pytest.approx(0.2 + 0.8 + 1.0 + 0.3 + 0.1 + 0.1 + 2.0 + 1.0 + 0.3, abs=0.05)
    assert "termination" not in stream.phase_table(rows, "high").columns   # its cluster is cut off: not expected
    assert stream.missing_table(rows).empty
    cmp = stream.compare_cluster_failure(rows)
    total = cmp[cmp["key"].str.endswith(".total")]
    assert list(total["thesis_mean"]) == pytest.approx([31.16] * 4)   # 2 profiles x 2 PDCs, composed
    assert stream.composed_total() == pytest.approx(9.75 + 5 + 16.41)


@pytest.mark.unit
def test_island_counts_frames_lost_per_stream() -> None:
    lost = stream.island_table(_island_rows()).set_index("stream")
    assert lost.loc["low", "lost"] == 0 and lost.loc["low", "expected"] == 30 * FPS + 1
    assert lost.loc["high", "received"] == 0 and lost.loc["high", "lost"] == lost.loc["high", "expected"]


@pytest.mark.unit
def test_reduced_multilevel_env_keeps_one_branch_of_each_level() -> None:
    from labkit.config import load_env

    env = stream.reduced_env(load_env("multilevel"), stream.MULTILEVEL_CI)
    chain = chain_of(env)
    assert [c.name for c in env.clusters] == list(stream.MULTILEVEL_CI)
    assert (chain.owner("pdc-low"), chain.owner("pdc-high")) == ("p-1", "acc")
    assert set(grid_clusters(chain)) == set(stream.MULTILEVEL_CI)


@pytest.mark.notebook
def test_40_pod_failure_replots_from_tables(tmp_path: Path) -> None:
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    rows = downtime_rows("pod-failure", cluster_failure=False, profiles=("thesis", "fast"))
    sweep = downtime_rows("pod-failure", cluster_failure=False, reps=2).assign(
        profile="sweep", sweep_parameter="readiness_period_s", sweep_value=1.0)
    results.write_table(run_dir, "pod_failure", stream.concat([rows, sweep]))
    results.write_table(run_dir, "pod_failure_timers", timers_rows())
    _replot("40-pod-failure.ipynb", run_dir, figures, tmp_path / "40.ipynb")
    assert (figures / "fig-7-3-pod-failure.png").stat().st_size > 20_000
    assert (figures / "fig-7-3-sweep.png").stat().st_size > 10_000
    text = (tmp_path / "40.ipynb").read_text()
    for shown in ("phase: restart (high PDC)", "high reconnect", "readiness_period_s", "software default",
                  "timer sweep"):
        assert shown in text, shown


@pytest.mark.notebook
def test_50_cluster_failure_replots_from_tables(tmp_path: Path) -> None:
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    rows = downtime_rows("cluster-failure", cluster_failure=True, profiles=("thesis", "fast"))
    assert set(stream.phase_table(rows, "high").columns) >= {"detection", "eviction", "restart", "first frame"}
    results.write_table(run_dir, "cluster_failure", rows)
    results.write_table(run_dir, "cluster_failure_timers", timers_rows())
    _replot("50-cluster-failure.ipynb", run_dir, figures, tmp_path / "50.ipynb")
    assert (figures / "fig-7-4-cluster-failure.png").stat().st_size > 20_000
    text = (tmp_path / "50.ipynb").read_text()
    assert "not_ready_detection" in text and "pod_restart" in text


@pytest.mark.notebook
def test_60_island_replots_from_tables(tmp_path: Path) -> None:
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    results.write_table(run_dir, "island", _island_rows())
    _replot("60-island.ipynb", run_dir, figures, tmp_path / "60.ipynb")
    assert (figures / "fig-6-2-island.png").stat().st_size > 10_000
    assert "received" in (tmp_path / "60.ipynb").read_text()


@pytest.mark.notebook
def test_80_multilevel_replots_from_tables(tmp_path: Path) -> None:
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    results.write_table(run_dir, "multilevel", downtime_rows("multilevel-pod-failure", cluster_failure=False, reps=2))
    _replot("80-multilevel.ipynb", run_dir, figures, tmp_path / "80.ipynb")
    assert (figures / "multilevel-pod-failure.png").stat().st_size > 10_000


@pytest.mark.unit
def test_recorder_status_reports_the_gap_and_the_stop_file_closes_it(tmp_path: Path) -> None:
    """What the harness reads from a recorder pod: a PDC outage shows as ``last_gap``; ``--stop-file`` closes."""
    import asyncio
    import json
    import sys

    from labkit.grid.pdc_config import from_mapping
    from labkit.grid.pdc import Pdc
    from labkit.grid.pmu import PmuServer
    from labkit.measure.stream import load_frames, stream_downtime

    status, stop, out = tmp_path / "status.json", tmp_path / "stop", tmp_path / "frames.csv"

    async def scenario() -> tuple[dict, float, int]:
        pmu = PmuServer(1, "case14", [0], seed=1)
        pport = await pmu.start("127.0.0.1", 0)
        cfg = from_mapping({"idcode": 50, "wait_window": 0.05, "output_port": 0, "backoff_min": 0.05,
                            "backoff_max": 0.2, "inputs": [{"name": "pmu", "host": "127.0.0.1", "port": pport,
                                                             "idcode": 1}]})
        pdc = Pdc(cfg)
        port = await pdc.start("127.0.0.1", 0)
        rec = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labkit.grid.recorder", "--port", str(port), "--idcode", "50", "--out", str(out),
            "--stop-file", str(stop), "--status-file", str(status), "--flush-every", "0.2", "--backoff-max", "0.2")
        try:
            for _ in range(600):                          # interpreter start (slow on a loaded machine) + frames
                if status.exists() and json.loads(status.read_text())["frames"] > 10:
                    break
                await asyncio.sleep(0.1)
            await pdc.close()                             # the PDC dies ...
            down_at = __import__("time").time()
            await asyncio.sleep(1.5)
            pdc = Pdc(cfg)                                # ... and comes back on the same port
            await pdc.start("127.0.0.1", port)
            for _ in range(300):                          # until the recorder is back (backoff <= 0.2 s)
                during = json.loads(status.read_text())
                if during["last_gap"] is not None:
                    break
                await asyncio.sleep(0.1)
            stop.touch()
            code = await asyncio.wait_for(rec.wait(), 30)
        finally:
            if rec.returncode is None:
                rec.kill()
            await pdc.close()
            await pmu.close()
        return during, down_at, code

    during, down_at, code = asyncio.run(asyncio.wait_for(scenario(), 150))
    assert code == 0
    assert during["last_gap"] is not None and during["last_gap"][1] > down_at     # the harness' "stream is back"
    final = json.loads(status.read_text())
    assert final["closed"] is True and final["frames"] >= during["frames"]
    dt = stream_downtime(load_frames(out))                                        # readable: closed cleanly
    assert len(dt) == 1 and dt["first_new"].iloc[0] == pytest.approx(during["last_gap"][1])


@pytest.mark.unit
def test_readiness_takes_no_time_when_the_owner_never_saw_the_pod_not_ready() -> None:
    from labkit.experiments.stream.scenarios import ready_again

    t = pd.Timestamp(T0, unit="s", tz="UTC")
    watch = pd.DataFrame({"t": [t + pd.Timedelta(seconds=s) for s in (1, 2, 3, 6)], "value": [1.0, 0.0, 0.0, 1.0],
                          "pod": "p", "new": [False, False, False, False]})
    assert ready_again(watch, T0) == (T0 + 6, 4.0)                      # not Ready from 2 s to 6 s
    assert ready_again(watch.assign(value=1.0), T0) == (T0, 0.0)        # Ready throughout: no readiness phase
    ready, seconds = ready_again(watch.iloc[0:0], T0)                   # the watch saw nothing
    assert ready is None and np.isnan(seconds)
    fresh = watch.assign(new=[False, True, True, True])
    assert ready_again(fresh, T0, new_only=True) == (T0 + 6, 4.0)       # a new pod: from its first sighting
    milestones = dict(stream.stream_milestones(pd.DataFrame(columns=["t", "event", "input", "seconds"]), T0 + 5,
                                               T0 + 8, T0, [], T0, None, "", False))
    assert milestones["readiness"] == T0 + 4.5                          # clamped: 0 s after the previous milestone


@pytest.mark.unit
def test_a_repetition_without_a_gap_counts_as_unrecovered() -> None:
    from labkit.experiments.pod_failure import downtime_headline

    frames = pd.concat([frames_at(s, T0, T0 + 60.0, []) for s in ("low", "high")], ignore_index=True)
    rows = stream.repetition_rows(rep=1, t_fault=T0 + 30.0, frames=frames, logs=pd.DataFrame(), milestones_before=[],
                                  cluster="leaf-2", detection_before_downtime=True, failure="not back", run_id="t",
                                  scenario="pod-failure")
    assert [r["recovered"] for r in rows] == [False, False] and all(r["failure"] == "not back" for r in rows)
    table = stream.experiment_table(rows, frames, FaultLog(), {"run_id": "t", "scenario": "pod-failure"})
    assert downtime_headline(table) == {"repetitions": 1.0, "recovered": 0.0, "unrecovered": 1.0}
