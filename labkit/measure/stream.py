"""Stream downtime and gaps from the frames a :mod:`labkit.grid.recorder` wrote.

The thesis (section 7.4) defines the downtime of a data stream as the time "from the timestamp
of the last data frame of the old stream to the timestamp of the first data frame of the new
stream". Here, per PMU, frames are ordered by their C37.118 timestamp (SOC + FRACSEC /
TIME_BASE); frames a PDC filled with absent data (STAT bits 15-14 = 10) are not data and are
left out; every step between consecutive data frames longer than the reporting period is a
*gap*, and a gap of at least ``threshold`` seconds is a *downtime*, whose value is exactly
``first_new - last_old``.

All functions return tidy tables (:func:`labkit.results.tidy`): key columns plus
``pmu_idcode``, ``last_old``, ``first_new`` (UNIX seconds) and ``missing_frames``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labkit.grid.recorder import read_frames
from labkit.results import tidy

__all__ = ["ABSENT_MASK", "DOWNTIME_THRESHOLD_S", "load_frames", "stream_downtime", "stream_gaps", "stream_rate",
           "valid_frames"]

#: STAT bits 15-14 and the value a PDC sets when it inserts absent data.
ABSENT_MASK, ABSENT_VALUE = 0xC000, 0x8000
#: A gap of at least this many seconds between data frames is a downtime: at 30 frames/s, two frames
#: lost in a row (a 0.1 s step) are one, a single lost frame (0.067 s) is not; between the two, so
#: float rounding of frame times cannot decide. A low PDC restarted by its kubelet can be back in
#: 0.4 s, so a longer threshold (the kit's first was 0.5 s) would miss whole outages.
DOWNTIME_THRESHOLD_S = 0.08

_KEYS = {"run_id": "", "scenario": "", "step": "", "cluster": ""}


def load_frames(path: str | Path) -> pd.DataFrame:
    """Read a recorder's CSV file (:func:`labkit.grid.recorder.read_frames`); ``FileNotFoundError`` names the path."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no recorder file at {p}")
    return read_frames(p)


def valid_frames(frames: pd.DataFrame) -> pd.DataFrame:
    """Rows carrying data: drop absent-data blocks and duplicate timestamps per PMU."""
    missing = {"pmu_idcode", "frame_time", "stat"} - set(frames.columns)
    if missing:
        raise ValueError(f"recorder frames lack column(s) {sorted(missing)}")
    ok = (frames["stat"].astype(int) & ABSENT_MASK) != ABSENT_VALUE
    return frames[ok].drop_duplicates(["pmu_idcode", "frame_time"]).sort_values(["pmu_idcode", "frame_time"])


def _period(times: np.ndarray) -> float:
    d = np.diff(times)
    d = d[d > 0]
    if d.size == 0:
        raise ValueError("need at least two frames of one PMU to know its reporting period")
    return float(np.median(d))


def _gap_rows(frames: pd.DataFrame, threshold: float | None, metric: str) -> list[dict[str, Any]]:
    rows = []
    for pmu, grp in valid_frames(frames).groupby("pmu_idcode", sort=True):
        t = grp["frame_time"].to_numpy()
        if t.size < 2:
            continue
        period = _period(t)
        limit = 1.5 * period if threshold is None else threshold
        d = np.diff(t)
        for i in np.flatnonzero(d >= limit):
            rows.append({"metric": metric, "unit": "s", "t": pd.Timestamp(t[i + 1], unit="s", tz="UTC"),
                         "value": float(d[i]), "pmu_idcode": int(pmu), "last_old": float(t[i]),
                         "first_new": float(t[i + 1]), "missing_frames": int(round(d[i] / period)) - 1})
    return rows


def _table(rows: list[dict[str, Any]], labels: Mapping[str, Any]) -> pd.DataFrame:
    defaults = {**_KEYS, **labels}
    if not rows:
        cols = ["metric", "unit", "t", "value", "pmu_idcode", "last_old", "first_new", "missing_frames"]
        frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
        frame["t"] = pd.to_datetime(frame["t"], utc=True)
        frame["metric"] = frame["metric"].astype("string")
        frame["unit"] = frame["unit"].astype("string")
        return tidy(frame, **defaults)
    return tidy(rows, **defaults)


def stream_gaps(frames: pd.DataFrame, **labels: Any) -> pd.DataFrame:
    """Every gap (one or more reporting periods without a data frame), metric ``stream_gap``.

    Parameters
    ----------
    frames
        Recorder rows (see :mod:`labkit.grid.recorder`).
    **labels
        Key columns (``run_id``, ``scenario``, ``step``, ``cluster``) and extra labels.
    """
    return _table(_gap_rows(frames, None, "stream_gap"), labels)


def stream_downtime(frames: pd.DataFrame, threshold: float = DOWNTIME_THRESHOLD_S, **labels: Any) -> pd.DataFrame:
    """Downtimes: gaps of at least ``threshold`` seconds, metric ``stream_downtime`` (unit s).

    ``value`` is ``first_new - last_old``: the timestamp of the first frame of the new stream
    minus that of the last frame of the old stream (thesis 7.4).
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0 seconds, got {threshold!r}")
    return _table(_gap_rows(frames, threshold, "stream_downtime"), labels)


def stream_rate(frames: pd.DataFrame, **labels: Any) -> pd.DataFrame:
    """Per PMU: data frames per second over the recording (metric ``frame_rate``, unit ``1/s``)
    and the median arrival latency (``arrival - frame_time``, metric ``arrival_latency``)."""
    rows = []
    for pmu, grp in valid_frames(frames).groupby("pmu_idcode", sort=True):
        t = grp["frame_time"].to_numpy()
        if t.size < 2:
            continue
        span = t[-1] - t[0]
        ts = pd.Timestamp(t[-1], unit="s", tz="UTC")
        rows.append({"metric": "frame_rate", "unit": "1/s", "t": ts, "value": (t.size - 1) / span,
                     "pmu_idcode": int(pmu)})
        if "arrival" in grp:
            lat = float(np.median(grp["arrival"].to_numpy() - t))
            rows.append({"metric": "arrival_latency", "unit": "s", "t": ts, "value": lat, "pmu_idcode": int(pmu)})
    return _table(rows, labels)
