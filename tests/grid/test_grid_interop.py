"""Interoperability: frames from real captures and from the independent `synchrophasor` package.

Fixtures (tests/fixtures/c37118/README.md): ``capture_*`` are TCP payloads of public Wireshark
sample captures of real PMUs/PDCs; ``pypmu_*`` were encoded by pypmu; ``labkit_*`` were
encoded by labkit and decoded by pypmu (``labkit_decoded_by_pypmu.json``). When pypmu is
installed, the pypmu direction is also re-checked live.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from labkit.grid import c37118 as c

pytestmark = pytest.mark.unit

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "c37118"
HAVE_PYPMU = importlib.util.find_spec("synchrophasor") is not None


def _frames(name: str) -> list[bytes]:
    parser = c.StreamParser()
    frames = parser.feed((FIX / name).read_bytes())
    assert parser.skipped_bytes == 0 and parser.buffered == 0
    return frames


@pytest.mark.parametrize("name, n_pmus, n_data", [("capture_1pmu_tcp_stream.bin", 1, 30),
                                                  ("capture_4in1pmu_tcp_stream.bin", 4, 10)])
def test_real_captures_decode_and_reencode_bit_exact(name: str, n_pmus: int, n_data: int) -> None:
    frames = _frames(name)
    cfg = c.decode_frame(frames[0])
    assert isinstance(cfg, c.ConfigFrame) and cfg.kind == c.FrameType.CFG2 and len(cfg.pmus) == n_pmus
    assert c.encode_frame(cfg) == frames[0]
    codec = c.DataCodec(cfg)
    times = []
    for raw in frames[1:]:
        data = codec.decode(raw)
        assert codec.encode(data) == raw
        times.append(c.frame_time(data.soc, data.fracsec, cfg.time_base))
    assert len(times) == n_data
    steps = np.diff(times)
    assert np.allclose(steps, 1 / cfg.frames_per_second, atol=2 / cfg.time_base + 1e-6)


def test_real_capture_values_are_plausible() -> None:
    frames = _frames("capture_1pmu_tcp_stream.bin")
    cfg = c.decode_frame(frames[0])
    pmu = cfg.pmus[0]
    assert pmu.station == "Blue PMU" and pmu.idcode == 241 and pmu.fnom == 50
    data = c.decode_frame(frames[1], cfg)
    f = pmu.freq_hz(data.pmus[0])
    assert 49.5 < f < 50.5


@pytest.mark.parametrize("name", ["capture_1pmu_tcp_commands.bin", "capture_4in1pmu_tcp_commands.bin"])
def test_real_command_frames(name: str) -> None:
    cmds = [c.decode_frame(raw) for raw in _frames(name)]
    assert {x.command for x in cmds} <= {c.Command.STOP, c.Command.START, c.Command.CFG2}
    assert c.Command.CFG2 in {x.command for x in cmds}
    for raw, x in zip(_frames(name), cmds):
        assert c.encode_frame(x) == raw


def test_pypmu_encoded_frames_decode_in_labkit() -> None:
    values = json.loads((FIX / "pypmu_values.json").read_text())
    cfg1 = c.decode_frame((FIX / "pypmu_cfg2_1pmu_int.bin").read_bytes())
    p = cfg1.pmus[0]
    assert (p.station, p.idcode, p.fnom, p.cfgcnt, cfg1.data_rate) == ("Station A", 7734, 60, 22, 30)
    assert p.phasor_names == ("VA", "VB", "IA") and p.analog_names == ("ANALOG1",) and p.dgnmr == 1
    assert p.phunit == (915527, 915527, (1 << 24) | 45776)
    d = c.decode_frame((FIX / "pypmu_data_1pmu_int.bin").read_bytes(), cfg1)
    want = values["data_1pmu_int"]
    assert [list(x) for x in d.pmus[0].phasors] == want["phasors"]
    assert (d.pmus[0].freq, d.pmus[0].dfreq, list(d.pmus[0].analogs), list(d.pmus[0].digitals)) == \
        (want["freq"], want["dfreq"], want["analogs"], want["digitals"])
    assert (d.soc, d.fracsec) == (want["soc"], want["fracsec"])
    assert p.freq_hz(d.pmus[0]) == pytest.approx(62.5)  # 60 Hz + 2500 mHz

    cfg2 = c.decode_frame((FIX / "pypmu_cfg2_2pmu_float.bin").read_bytes())
    assert [x.idcode for x in cfg2.pmus] == [101, 102] and cfg2.data_rate == 50
    assert cfg2.pmus[0].polar and not cfg2.pmus[1].polar and cfg2.pmus[1].fnom == 60
    d2 = c.decode_frame((FIX / "pypmu_data_2pmu_float.bin").read_bytes(), cfg2)
    want2 = values["data_2pmu_float"]
    for block, ph in zip(d2.pmus, want2["phasors"]):
        np.testing.assert_allclose(np.array(block.phasors), np.array(ph), rtol=1e-6)
    np.testing.assert_allclose([b.freq for b in d2.pmus], want2["freq"], rtol=1e-6)
    assert d2.pmus[0].analogs[0] == pytest.approx(230.5)

    hdr = c.decode_frame((FIX / "pypmu_header.bin").read_bytes())
    assert hdr.text == values["header"]
    for name, code in (("start", 2), ("stop", 1), ("cfg2", 5), ("header", 3)):
        cmd = c.decode_frame((FIX / f"pypmu_command_{name}.bin").read_bytes())
        assert cmd.command == code and cmd.idcode == 7734
    for f in FIX.glob("pypmu_*.bin"):
        raw = f.read_bytes()
        frame = c.decode_frame(raw, cfg1 if "1pmu" in f.name else cfg2)
        assert c.encode_frame(frame, cfg1 if "1pmu" in f.name else cfg2) == raw, f.name


def _labkit_frames() -> dict[str, bytes]:
    import importlib.util as iu

    spec = iu.spec_from_file_location("make_interop_fixtures", FIX / "make_interop_fixtures.py")
    mod = iu.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.labkit_frames()


def test_labkit_encoder_still_produces_the_fixture_bytes() -> None:
    for name, raw in _labkit_frames().items():
        assert (FIX / f"labkit_{name}.bin").read_bytes() == raw, name


def test_pypmu_decoded_labkit_frames_to_the_right_values() -> None:
    got = json.loads((FIX / "labkit_decoded_by_pypmu.json").read_text())
    assert got["cfg"]["num_pmu"] == 2 and got["cfg"]["id_code"] == [11, 12] and got["cfg"]["data_rate"] == 30
    meas = got["data"]["measurements"]["measurements"]
    mag0, ang0 = meas[0]["phasors"][0]
    assert mag0 == pytest.approx(abs(100 + 20j)) and ang0 == pytest.approx(math.atan2(20, 100))
    mag1, ang1 = meas[0]["phasors"][1]
    assert mag1 == pytest.approx(5.0) and ang1 == pytest.approx(math.atan2(4, -3))
    assert meas[0]["frequency"] == pytest.approx(50.012) and meas[1]["frequency"] == pytest.approx(49.99)
    assert meas[1]["phasors"][0] == pytest.approx([7000.0, 0.3], rel=1e-6)
    assert got["command"] == "start"


@pytest.mark.skipif(not HAVE_PYPMU, reason="synchrophasor (pypmu) not installed; fixture checks above still run")
def test_live_round_trip_with_pypmu_both_directions() -> None:
    import importlib.util as iu

    spec = iu.spec_from_file_location("make_interop_fixtures", FIX / "make_interop_fixtures.py")
    mod = iu.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    py = mod.pypmu_frames()
    for name, raw in py["frames"].items():
        assert (FIX / f"pypmu_{name}.bin").read_bytes() == raw, name
    decoded = mod.decode_with_pypmu(mod.labkit_frames())
    assert decoded == json.loads((FIX / "labkit_decoded_by_pypmu.json").read_text())
