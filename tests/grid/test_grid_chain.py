"""End to end on loopback: PMU -> low PDC -> high PDC -> SE (+ recorder), every program as a process.

Two PMU stations (case14 buses 0-6 and 7-13, 14 PMUs) feed two low-level PDCs, which feed one
high-level PDC; the state estimator and the recorder are clients of the high-level PDC.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from labkit.grid.phasors import SIGMA_MAG
from labkit.measure.stream import load_frames, stream_gaps, stream_rate

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"
RUN_SECONDS = 6.0


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                            env=env)


def _start(args: list[str], log: Path, wait_for: str = "listening", timeout: float = 120) -> tuple[subprocess.Popen, str]:
    return _wait_line(_spawn(args, log), args, log, wait_for, timeout)


def _wait_line(proc: subprocess.Popen, args: list[str], log: Path, wait_for: str = "listening",
               timeout: float = 120) -> tuple[subprocess.Popen, str]:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line.startswith(wait_for):
                return proc, line.strip()
            if not line and proc.poll() is not None:
                break
    proc.kill()
    raise RuntimeError(f"{args[0]} did not print {wait_for!r}: {log.read_text()[-3000:]}")


def _port(line: str) -> int:
    return int(line.split()[-1])


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def _pdc_config(path: Path, name: str, idcode: int, inputs: list[tuple[str, int, int]]) -> Path:
    # wait window 0.5 s: the shared CI machine can stall a process for more than 100 ms
    path.write_text(json.dumps({"name": name, "idcode": idcode, "wait_window": 0.5, "output_port": 0,
                                "backoff_min": 0.1, "backoff_max": 1.0, "config_timeout": 30,
                                "inputs": [{"name": n, "host": HOST, "port": p, "idcode": i} for n, p, i in inputs]}))
    return path


def test_pmu_low_pdc_high_pdc_se_chain(tmp_path: Path) -> None:
    procs: list[subprocess.Popen] = []
    frames_path, se_path, high_port = tmp_path / "frames.csv", tmp_path / "se.csv", tmp_path / "high.port"
    try:
        # The slow starters (pandapower) go first and together: 2 PMU stations and the SE, which
        # waits for the high PDC's port file.
        started = []
        for idcode, buses, seed in ((1, range(0, 7), 1), (11, range(7, 14), 2)):
            args = ["labkit.grid.pmu", "--port", "0", "--idcode", str(idcode), "--network", "case14", "--seed",
                    str(seed)] + [a for b in buses for a in ("--bus", str(b))]
            log = tmp_path / f"pmu{idcode}.log"
            procs.append(_spawn(args, log))
            started.append((procs[-1], args, log))
        se_args = ["labkit.grid.se", "--port-file", str(high_port), "--idcode", "200", "--network", "case14",
                   "--out", str(se_path)]
        se = _spawn(se_args, tmp_path / "se.log")
        procs.append(se)
        pmus = [_port(_wait_line(proc, args, log)[1]) for proc, args, log in started]
        lows = []
        for k, (port, idcode) in enumerate(zip(pmus, (1, 11))):
            cfg = _pdc_config(tmp_path / f"low{k}.json", f"pdc-low-{k}", 101 + k, [(f"station{k}", port, idcode)])
            proc, line = _start(["labkit.grid.pdc", "--config", str(cfg)], tmp_path / f"low{k}.log")
            procs.append(proc)
            lows.append(_port(line))
        cfg = _pdc_config(tmp_path / "high.json", "pdc-high", 200, [("low0", lows[0], 101), ("low1", lows[1], 102)])
        proc, _ = _start(["labkit.grid.pdc", "--config", str(cfg), "--port-file", str(high_port)],
                         tmp_path / "high.log")
        procs.append(proc)
        _wait_line(se, se_args, tmp_path / "se.log", wait_for="estimating")
        rec_args = ["labkit.grid.recorder", "--port-file", str(high_port), "--idcode", "200", "--out",
                    str(frames_path), "--duration", str(RUN_SECONDS)]
        rec, _ = _start(rec_args, tmp_path / "recorder.log", wait_for="recording")
        procs.append(rec)
        assert rec.wait(timeout=RUN_SECONDS + 60) == 0
        se.send_signal(signal.SIGTERM)
        assert se.wait(timeout=30) == 0, (tmp_path / "se.log").read_text()[-2000:]
    finally:
        _stop(procs)

    frames = load_frames(frames_path)
    assert sorted(frames["pmu_idcode"].unique()) == list(range(1, 8)) + list(range(11, 18))
    # While the high PDC starts, one low PDC can be ahead of the other: absent blocks are
    # allowed in the first second only.
    settled = frames[frames["frame_time"] > frames["frame_time"].min() + 1.0]
    absent = settled[(settled["stat"] & 0xC000) != 0]
    assert absent.empty, absent.groupby("pmu_idcode").size().to_dict()
    rate = stream_rate(frames)
    fps = rate.loc[rate["metric"] == "frame_rate", "value"]
    assert len(fps) == 14 and fps.between(29.9, 30.1).all(), fps.tolist()
    assert stream_gaps(frames).empty
    latency = rate.loc[rate["metric"] == "arrival_latency", "value"]
    assert (latency < 0.5).all()
    per_pmu = frames.groupby("pmu_idcode").size()
    assert per_pmu.min() >= 30 * (RUN_SECONDS - 3)

    se = pd.read_csv(se_path)
    assert len(se) >= per_pmu.min() - 5                     # every concentrated frame is estimated
    assert se["max_abs_dvec"].median() < SIGMA_MAG          # within the noise (0.2 % of 1 p.u.)
    assert se["max_abs_dvec"].max() < 3 * SIGMA_MAG
    assert se["solve_time"].median() < 0.05
