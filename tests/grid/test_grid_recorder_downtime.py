"""labkit.grid.recorder and labkit.measure.stream: frames on disk, downtime and gaps."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from labkit.grid.pdc_config import from_mapping
from labkit.grid.pdc import Pdc
from labkit.grid.pmu import PmuServer
from labkit.grid.recorder import COLUMNS, Recorder, read_frames
from labkit.measure.stream import load_frames, stream_downtime, stream_gaps, stream_rate
from labkit.results import KEY_COLUMNS

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"


def _frames(times: list[float], pmu: int = 1, stat: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"pmu_idcode": pmu, "frame_time": times, "arrival": np.asarray(times) + 0.01,
                         "stat": stat if stat is not None else [0] * len(times)})


def test_downtime_is_last_old_to_first_new_timestamp() -> None:
    k = np.arange(0, 300)
    k = k[(k < 100) | (k >= 160)]             # 60 frames (2 s) missing after frame 99
    f = _frames(list(k / 30))
    dt = stream_downtime(f, run_id="r", scenario="pod-failure", step="measure", cluster="root")
    assert list(dt.columns[:8]) == list(KEY_COLUMNS)
    assert len(dt) == 1
    row = dt.iloc[0]
    assert row["metric"] == "stream_downtime" and row["unit"] == "s"
    assert row["value"] == pytest.approx(160 / 30 - 99 / 30)
    assert row["last_old"] == pytest.approx(99 / 30) and row["first_new"] == pytest.approx(160 / 30)
    assert row["missing_frames"] == 60 and row["pmu_idcode"] == 1
    assert row["t"] == pd.Timestamp(160 / 30, unit="s", tz="UTC")


def test_gaps_skip_absent_blocks_and_short_gaps_are_not_downtime() -> None:
    k = np.arange(0, 100)
    stat = [0x8000 if 40 <= i < 45 else 0 for i in k]   # a PDC inserted absent data for 5 frames
    f = pd.concat([_frames(list(k / 30), 1, stat), _frames([i / 30 for i in k if i != 70], 2)])
    gaps = stream_gaps(f)
    assert sorted(zip(gaps["pmu_idcode"], gaps["missing_frames"])) == [(1, 5), (2, 1)]
    dt = stream_downtime(f)                              # two frames lost in a row or more: a downtime
    assert list(zip(dt["pmu_idcode"], dt["missing_frames"])) == [(1, 5)]
    assert stream_downtime(f, threshold=0.5).empty
    rate = stream_rate(f)
    fr = rate[rate["metric"] == "frame_rate"].set_index("pmu_idcode")["value"]
    assert fr.loc[2] == pytest.approx(98 / (99 / 30))
    with pytest.raises(ValueError, match="threshold"):
        stream_downtime(f, threshold=0)


async def _pmu_and_pdc() -> tuple[PmuServer, Any, Pdc, int]:
    """A PMU streaming on loopback and a PDC (IDCODE 50) forwarding it: the PMU, the PDC's config, the PDC, its port."""
    from labkit.grid.phasors import network_model

    network_model("case14")
    pmu = PmuServer(1, "case14", [0, 1], seed=1)
    pport = await pmu.start(HOST, 0)
    cfg = from_mapping({"idcode": 50, "wait_window": 0.05, "output_port": 0, "backoff_min": 0.05,
                        "backoff_max": 0.2, "inputs": [{"name": "pmu", "host": HOST, "port": pport, "idcode": 1}]})
    pdc = Pdc(cfg)
    return pmu, cfg, pdc, await pdc.start()


def test_recorder_measures_a_pdc_restart(tmp_path: Path) -> None:
    """PMU -> PDC -> recorder; the PDC is stopped for ~1 s and restarted on the same port."""
    out = tmp_path / "frames.csv"

    async def scenario() -> Pdc:
        pmu, cfg, pdc, port = await _pmu_and_pdc()
        rec = Recorder(HOST, port, 50, out, flush_every=0.3, backoff_min=0.05, backoff_max=0.2)
        rec.start()
        try:
            await asyncio.sleep(1.5)
            assert len(read_frames(out)) > 0    # readable while the recorder still appends to it
            await pdc.close()                   # the PDC "pod" dies
            await asyncio.sleep(1.0)
            pdc = Pdc(cfg)                      # and is rescheduled with the same config
            await pdc.start(HOST, port)
            await asyncio.sleep(1.5)
        finally:
            await rec.close()
            await pdc.close()
            await pmu.close()
        return pdc

    pdc = asyncio.run(asyncio.wait_for(scenario(), 30))
    frames = load_frames(out)
    assert list(frames.columns) == list(COLUMNS)
    assert frames.dtypes.astype(str).to_dict() == COLUMNS
    exact = frames["soc"] + frames["fracsec"] / frames["time_base"]
    assert (exact == frames["frame_time"]).all()   # float64 round trip through the text file, to the bit
    assert set(frames["pmu_idcode"]) == {1, 2}
    dt = stream_downtime(frames)
    assert sorted(dt["pmu_idcode"]) == [1, 2]
    assert dt["value"].between(1.0, 3.0).all()   # 1 s down + restart + reconnect (bounded by backoff_max)
    restart = [e for e in pdc.events if e["input"] == "output"][0]
    assert (dt["first_new"] - restart["frame_time"]).abs().max() < 1e-6   # the first frame it logged
    rate = stream_rate(frames)
    assert (rate.loc[rate["metric"] == "frame_rate", "value"] > 20).all()


def test_a_lost_connection_is_a_gap_however_short(tmp_path: Path) -> None:
    """A PDC back faster than the recorder's ``gap`` still ends a gap: its clients lost the connection."""
    async def scenario() -> tuple[list | None, list | None, float]:
        pmu, cfg, pdc, port = await _pmu_and_pdc()
        rec = Recorder(HOST, port, 50, tmp_path / "frames.csv", backoff_min=0.01, backoff_max=0.05, gap=5.0)
        rec.start()
        try:
            await asyncio.sleep(1.0)
            before = rec.status()["last_gap"]
            await pdc.close()
            restarted = time.time()
            pdc = Pdc(cfg)                      # at once: far less than the 5 s gap
            await pdc.start(HOST, port)
            await asyncio.sleep(1.5)
            return before, rec.status()["last_gap"], restarted
        finally:
            await rec.close()
            await pdc.close()
            await pmu.close()

    before, after, restarted = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert before is None
    assert after is not None and after[1] - after[0] < 5.0 and after[1] > restarted - 0.5


def test_a_recorder_file_without_frames_reads_as_typed_empty_frames(tmp_path: Path) -> None:
    rec = Recorder(HOST, 1, 50, tmp_path / "frames.csv")
    assert rec.flush() == 0
    frames = read_frames(tmp_path / "frames.csv")
    assert frames.empty and frames.dtypes.astype(str).to_dict() == COLUMNS
