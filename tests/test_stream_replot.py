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

from labkit import paths, results
from labkit.deploy.chain import chain_of, grid_clusters
from labkit.experiments import stream
from labkit.faults import FaultLog

FPS = 30
T0 = 1_800_000_000.0  # an arbitrary UNIX time


def _frames(stream_name: str, start: float, end: float, gaps: list[tuple[float, float]], pmu: int = 1) -> pd.DataFrame:
    """Frames at FPS from ``start`` to ``end`` without those inside each ``(a, b)`` gap."""
    k = np.arange(int(start * FPS), int(end * FPS))
    t = k / FPS
    keep = np.ones(len(t), bool)
    for a, b in gaps:
        keep &= ~((t > a) & (t < b))
    t = t[keep]
    return pd.DataFrame({"pmu_idcode": pmu, "frame_time": t, "arrival": t + 0.02, "stat": 0, "stream": stream_name})


def _logs(*milestones: tuple[float, str]) -> pd.DataFrame:
    return pd.DataFrame([{"t": t, "event": e, "input": "pmu-1" if e == "input connected" else "", "seconds": np.nan,
                          "message": e} for t, e in milestones])


def _downtime_rows(scenario: str, cluster_failure: bool, reps: int = 3) -> pd.DataFrame:
    """A run's table: ``reps`` repetitions, each a gap of a few seconds with its milestones."""
    rows: list[dict] = []
    gaps, logs = [], []
    for rep in range(1, reps + 1):
        fault = T0 + 60.0 * rep
        last_old = fault + (0.0 if cluster_failure else 5.0)
        first_new = last_old + 10.0 + rep
        gaps.append((last_old, first_new))
        before = [("detection", last_old + 9.5), ("eviction", last_old + 9.5 + 5.0)] if cluster_failure else []
        restart_at = (last_old + 14.6) if cluster_failure else last_old + 3.0
        logs.append((rep, fault, before, _logs((restart_at, "process started"), (restart_at + 1.5, "listening"),
                                              (restart_at + 1.9, "input connected"))))
    frames = pd.concat([_frames(s, T0, T0 + 60.0 * (reps + 1), gaps) for s in ("low", "high")], ignore_index=True)
    for rep, fault, before, log in logs:
        rows += stream.repetition_rows(rep=rep, t_fault=fault, frames=frames, logs=log, milestones_before=before,
                                       cluster=f"leaf-{rep + 1}", detection_before_downtime=not cluster_failure,
                                       run_id="t", scenario=scenario)
    return stream.experiment_table(rows, frames, FaultLog(), {"run_id": "t", "scenario": scenario})


def _island_rows() -> pd.DataFrame:
    cut, back = T0 + 10.0, T0 + 40.0
    frames = pd.concat([_frames("low", T0, T0 + 60.0, []), _frames("high", T0, T0 + 60.0, [(cut - 0.01, back + 2.0)])],
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
                            "address=pdc-config-db.test.svc:3306/labkit seconds=0.123400 attempts=2\n")
    assert list(logs["event"]) == ["process started", "listening", "input connected", "config fetched"]
    assert logs["t"].iloc[1] - logs["t"].iloc[0] == pytest.approx(1.077)
    assert logs.set_index("event").loc["config fetched", "seconds"] == pytest.approx(0.1234)
    assert logs.set_index("event").loc["config fetched", "input"] == "db"
    assert logs.set_index("event").loc["input connected", "input"] == "pmu-1"


@pytest.mark.unit
def test_repetition_rows_measure_downtime_and_name_the_phases() -> None:
    rows = _downtime_rows("pod-failure", cluster_failure=False)
    d = stream.downtimes(rows)
    assert list(d["downtime_s"].round(2)) == pytest.approx([11.03, 12.03, 13.03], abs=0.05)
    wide = stream.phase_table(rows)
    assert list(wide.columns) == ["detection", "restart", "startup", "reconnect", "first frame"]
    inside = wide.drop(columns="detection").sum(axis=1)
    assert np.allclose(inside.to_numpy(), d["downtime_s"].to_numpy())
    assert (wide["detection"] > 4.9).all() and (wide["restart"] - 3.0).abs().max() < 0.05
    cmp = stream.compare_pod_failure(rows)
    assert cmp.iloc[0]["thesis_mean"] == 16.41 and cmp.iloc[0]["labkit_n"] == 3


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
    results.write_table(run_dir, "pod_failure", _downtime_rows("pod-failure", cluster_failure=False))
    _replot("40-pod-failure.ipynb", run_dir, figures, tmp_path / "40.ipynb")
    assert (figures / "fig-7-3-pod-failure.png").stat().st_size > 10_000
    assert "phase: restart" in (tmp_path / "40.ipynb").read_text()


@pytest.mark.notebook
def test_50_cluster_failure_replots_from_tables(tmp_path: Path) -> None:
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    rows = _downtime_rows("cluster-failure", cluster_failure=True)
    assert set(stream.phase_table(rows).columns) >= {"detection", "eviction", "restart", "first frame"}
    results.write_table(run_dir, "cluster_failure", rows)
    _replot("50-cluster-failure.ipynb", run_dir, figures, tmp_path / "50.ipynb")
    assert (figures / "fig-7-4-cluster-failure.png").stat().st_size > 10_000
    assert "not_ready_detection" in (tmp_path / "50.ipynb").read_text()


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
    results.write_table(run_dir, "multilevel", _downtime_rows("multilevel-pod-failure", cluster_failure=False, reps=2))
    _replot("80-multilevel.ipynb", run_dir, figures, tmp_path / "80.ipynb")
    assert (figures / "multilevel-pod-failure.png").stat().st_size > 10_000


@pytest.mark.unit
def test_recorder_status_reports_the_gap_and_the_stop_file_closes_it(tmp_path: Path) -> None:
    """What the harness reads from a recorder pod: a PDC outage shows as ``last_gap``; ``--stop-file`` closes."""
    import asyncio
    import json
    import sys

    from labkit.grid.config import from_mapping
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
