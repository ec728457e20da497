"""labkit.grid.c37118: frames, helpers, stream parser and the parser's robustness."""

from __future__ import annotations

import os
import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.grid import c37118 as c

import c37118_fuzz as fuzz  # noqa: E402  (tests/grid, shared with benchmarks/bench_grid_fuzz.py)

pytestmark = pytest.mark.unit


_cfg = fuzz.config   # 3 PMUs: float/int, rectangular/polar, analogs, digital words


def _data(cfg: c.ConfigFrame) -> c.DataFrame:
    p1, p2, p3 = cfg.pmus
    return c.DataFrame(99, 1_700_000_000, 333_333, (
        p1.to_wire([1 + 1j, 2 - 1j], 50.01, 0.2, stat=c.make_stat(time_quality=2)),
        p2.to_wire([100 * np.exp(0.3j), 200], 60.02, 0.1, [5], [3]),
        p3.to_wire([-3 + 4j], 50.0)), tq=c.make_tq(quality=5))


def test_crc_is_crc_ccitt_false() -> None:
    assert c.crc_ccitt(b"123456789") == 0x29B1


def test_config_frames_round_trip_cfg1_cfg2_cfg3() -> None:
    cfg = _cfg()
    for kind in (c.FrameType.CFG1, c.FrameType.CFG2):
        frame = cfg.as_kind(kind)
        raw = c.encode_frame(frame)
        assert raw[:2] == bytes([0xAA, (int(kind) << 4) | 1])
        assert struct.unpack(">H", raw[2:4])[0] == len(raw)
        assert c.decode_frame(raw) == frame
    cfg3 = cfg.as_kind(c.FrameType.CFG3)
    raw3 = c.encode_frame(cfg3)
    back = c.decode_frame(raw3)
    assert back.kind == c.FrameType.CFG3 and back.version == 2
    assert [p.phasor_names for p in back.pmus] == [p.phasor_names for p in cfg.pmus]
    assert back.pmus[0].cfg3 is not None and back.pmus[0].cfg3.phscale[1][1] == 9  # current, positive sequence
    assert c.encode_frame(back) == raw3


def _via_cfg3(cfg: c.ConfigFrame) -> c.ConfigFrame:
    """``cfg`` sent as CFG-3 and decoded, as a client that asked for CFG-3 knows it."""
    return c.decode_frame(c.encode_frame(cfg.as_kind(c.FrameType.CFG3)))


def test_cfg3_carries_the_phunit_scale_and_phasor_type_and_gives_the_cfg2_values() -> None:
    """Issue 26, item 3: CFG-3's PHSCALE of a 16-bit phasor is PHUNIT x 1e-5 (1 only for floats), the
    type is voltage/current + positive sequence, and values read through CFG-3 equal CFG-2's."""
    v_unit, i_unit = 298_000, (1 << 24) | 4_578               # 2.98 V and 0.04578 A per bit
    pmus = (c.PmuConfig("INT RECT", 1, ("V:1", "I:line:0:f"), phasor_float=False, freq_float=False,
                        phunit=(v_unit, i_unit)),
            c.PmuConfig("INT POLAR", 2, ("V:2",), polar=True, phasor_float=False, phunit=(v_unit,)),
            c.default_pmu_config("FLOAT", 3, ["V:3", "I:line:1:t"]))
    cfg2 = c.ConfigFrame(idcode=9, pmus=pmus)
    cfg3 = _via_cfg3(cfg2)
    want_scale = [[2.98, 0.04578], [2.98], [1.0, 1.0]]
    want_type = [[0x01, 0x09], [0x01], [0x01, 0x09]]      # bit 3 current, bits 2-0 = 001 positive sequence
    for p3, scales, types in zip(cfg3.pmus, want_scale, want_type):
        assert p3.cfg3 is not None
        np.testing.assert_allclose([ph[3] for ph in p3.cfg3.phscale], scales, rtol=1e-7)   # float32 on the wire
        assert [ph[1] for ph in p3.cfg3.phscale] == types
        assert [ph[4] for ph in p3.cfg3.phscale] == [0.0] * len(types)
    truth = [np.array([81_471 * np.exp(0.4j), 1_234 * np.exp(-2.1j)]), np.array([81_471 * np.exp(-0.7j)]),
             np.array([7_000.5 - 1_200.25j, 101.5 + 3j])]
    frame = c.DataFrame(9, 1_700_000_000, 0, tuple(p.to_wire(z, 50.0) for p, z in zip(pmus, truth)))
    raw = c.DataCodec(cfg2).encode(frame)
    via2, via3 = c.DataCodec(cfg2).decode(raw), c.DataCodec(cfg3).decode(raw)
    assert via2 == via3                                      # same wire values
    for p2, p3, d, z in zip(cfg2.pmus, cfg3.pmus, via2.pmus, truth):
        v2, v3 = p2.phasor_values(d), p3.phasor_values(d)
        np.testing.assert_allclose(v3, v2, rtol=1e-6)
        np.testing.assert_allclose(np.abs(v3), np.abs(z), rtol=1e-4)   # 81,471 V, not the raw count
    assert c.encode_frame(cfg3) == c.encode_frame(cfg2.as_kind(c.FrameType.CFG3))   # decoder keeps every field


def test_pmu_server_cfg3_gives_the_values_of_its_cfg2() -> None:
    """The kit's 16-bit PMU: a client reading through CFG-3 sees the CFG-2 values (case14 bus 3)."""
    from labkit.grid.pmu import PmuServer

    pmu = PmuServer(7, "case14", [3], fmt="int", seed=1)
    cfg3 = _via_cfg3(pmu.cfg)
    raw = pmu.frame_at(1_000)
    d = c.DataCodec(pmu.cfg).decode(raw)
    v2, v3 = pmu.cfg.pmus[0].phasor_values(d.pmus[0]), cfg3.pmus[0].phasor_values(d.pmus[0])
    np.testing.assert_allclose(v3, v2, rtol=1e-6)
    assert np.max(np.abs(v3 - pmu.source.truth[0]) / np.abs(pmu.source.truth[0])) < 0.01   # TVE < 1 %


def test_cfg3_needs_version_2() -> None:
    cfg3 = c.ConfigFrame(idcode=1, pmus=_cfg().pmus, kind=c.FrameType.CFG3, version=1)
    with pytest.raises(c.FrameError, match="version 2"):
        c.encode_frame(cfg3)


def test_data_frame_round_trip_and_engineering_values() -> None:
    cfg = _cfg()
    codec = c.DataCodec(cfg)
    raw = codec.encode(_data(cfg))
    assert len(raw) == cfg.data_frame_size == codec.size
    back = codec.decode(raw)
    assert codec.encode(back) == raw
    assert back.tq == c.make_tq(quality=5) and back.fracsec == 333_333
    p1, p2, p3 = cfg.pmus
    np.testing.assert_allclose(p1.phasor_values(back.pmus[0]), [1 + 1j, 2 - 1j], rtol=1e-6)
    half_bit = 0.5 * 9.15527 * np.sqrt(2)  # PHUNIT 915527 = 9.15527 V per bit, polar rounding
    np.testing.assert_allclose(p2.phasor_values(back.pmus[1]), [100 * np.exp(0.3j), 200], atol=half_bit)
    np.testing.assert_allclose(p3.phasor_values(back.pmus[2]), [-3 + 4j], atol=1e-3)
    assert p2.freq_hz(back.pmus[1]) == pytest.approx(60.02) and p2.rocof(back.pmus[1]) == pytest.approx(0.1)
    assert p1.freq_hz(back.pmus[0]) == pytest.approx(50.01, abs=1e-5)
    assert back.pmus[1].analogs == (5,) and back.pmus[1].digitals == (3,)


def test_absent_values_round_trip_as_nan() -> None:
    cfg = _cfg()
    blocks = tuple(p.absent_block() for p in cfg.pmus)
    raw = c.DataCodec(cfg).encode(c.DataFrame(99, 1, 0, blocks))
    back = c.decode_frame(raw, cfg)
    for p, d in zip(cfg.pmus, back.pmus):
        assert d.stat & c.Stat.DATA_ERROR_MASK == c.Stat.TEST_OR_ABSENT
        assert np.isnan(p.phasor_values(d)).all()


def test_command_and_header_frames() -> None:
    cmd = c.CommandFrame(7, c.Command.EXTENDED, 5, 6, extended=b"\x01\x02")
    assert c.decode_frame(c.encode_frame(cmd)) == cmd
    hdr = c.HeaderFrame(7, "a PMU", 5, 6)
    assert c.decode_frame(c.encode_frame(hdr)) == hdr
    with pytest.raises(c.FrameError, match="ASCII"):
        c.encode_frame(c.HeaderFrame(7, "PMU \u00e9"))


def test_helpers_time_stat_tq() -> None:
    assert c.split_time(10.9999999) == (11, 0)
    assert c.split_time(5.25, 1000) == (5, 250)
    assert c.frame_time(5, 250, 1000) == 5.25
    tq = c.make_tq(leap_direction=1, leap_occurred=True, leap_pending=False, quality=11)
    assert c.parse_tq(tq) == {"leap_direction": 1, "leap_occurred": True, "leap_pending": False, "quality": 11}
    assert c.make_stat(data_error=2, config_change=True, time_quality=7) == 0x8000 | 0x0400 | (7 << 6)
    with pytest.raises(c.FrameError, match="time_quality"):
        c.make_stat(time_quality=8)
    with pytest.raises(c.FrameError, match="quality"):
        c.make_tq(quality=16)


def test_errors_name_the_bad_field() -> None:
    cfg = _cfg()
    raw = bytearray(c.DataCodec(cfg).encode(_data(cfg)))
    bad_crc = bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(c.FrameError, match="CHK"):
        c.decode_frame(bad_crc, cfg)
    with pytest.raises(c.FrameError, match="SYNC"):
        c.decode_frame(b"\xab" + bytes(raw[1:]), cfg)
    with pytest.raises(c.FrameError, match="FRAMESIZE"):
        c.decode_frame(bytes(raw) + b"\x00", cfg)
    with pytest.raises(c.FrameError, match="configuration"):
        c.decode_frame(bytes(raw))
    other = c.ConfigFrame(idcode=99, pmus=cfg.pmus[:1])
    with pytest.raises(c.FrameError, match="FRAMESIZE"):
        c.decode_frame(bytes(raw), other)
    with pytest.raises(c.FrameError, match="IDCODE"):
        c.encode_frame(c.CommandFrame(70000, 1))
    with pytest.raises(c.FrameError, match="unique"):
        c.ConfigFrame(idcode=1, pmus=(cfg.pmus[0], cfg.pmus[0]))
    with pytest.raises(c.FrameError, match="PHUNIT"):
        c.PmuConfig("X", 1, ("V",), phunit=(1, 2))


def test_stream_parser_handles_split_packed_and_garbage() -> None:
    cfg = _cfg()
    codec = c.DataCodec(cfg)
    frames = [c.encode_frame(cfg)] + [codec.encode(_data(cfg)) for _ in range(3)]
    stream = b"\x00\xaa\x01junk" + frames[0] + frames[1] + b"\xaa\x31\x00" + frames[2] + frames[3]
    for chunk in (1, 3, 7, 64, len(stream)):
        parser = c.StreamParser()
        got = []
        for i in range(0, len(stream), chunk):
            got += parser.feed(stream[i:i + chunk])
        assert got == frames, chunk
        assert parser.skipped_bytes > 0 and parser.buffered == 0


def test_stream_parser_skips_corrupted_frame_and_resyncs() -> None:
    cfg = _cfg()
    codec = c.DataCodec(cfg)
    good = codec.encode(_data(cfg))
    bad = bytearray(good)
    bad[20] ^= 0xFF
    parser = c.StreamParser()
    assert parser.feed(bytes(bad) + good) == [good]
    assert parser.bad_frames >= 1


#: Byte strings checked per hypothesis example; 1,000 examples x 100 = 100,000 cases in CI.
CASES_PER_EXAMPLE = 100
FUZZ_EXAMPLES = int(os.environ.get("LABKIT_FUZZ_EXAMPLES", "1000"))


def _must_be_frame_error(data: bytes, cfg: c.ConfigFrame | None) -> None:
    try:
        c.decode_frame(data, cfg)
    except c.FrameError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.integers(0, 2**64 - 1), st.binary(max_size=64))
def test_parser_raises_only_frame_error_on_any_bytes(seed: int, raw: bytes) -> None:
    """Decoder and stream parser on 100 byte strings per example (mutated valid frames + raw bytes)."""
    rng = random.Random(seed)
    parser = c.StreamParser()
    cases = [raw] + [fuzz.mutant(rng) for _ in range(CASES_PER_EXAMPLE - 1)]
    for i, data in enumerate(cases):
        _must_be_frame_error(data, fuzz.CFG if i % 2 else None)
        for frame in parser.feed(data):
            _must_be_frame_error(frame, fuzz.CFG)


@pytest.mark.parametrize("kind", ["stream", "false_syncs", "huge"])
def test_long_structured_inputs_never_crash_and_cost_linear_crc_work(kind: str) -> None:
    """Long inputs (valid frames with corrupted fields, runs of false SYNCs, huge FRAMESIZEs), parsed in random
    chunks with and without a work budget: no exception but FrameError, CRC work bounded per byte, and the
    valid frames after the garbage come out. ``benchmarks/bench_grid_fuzz.py`` runs a million, timed."""
    rng = random.Random(26)
    for i in range(12):
        data = fuzz.GENERATORS[kind](rng)
        out = fuzz.exercise(kind, data, rng, budget=None if i % 2 else 4096)
        assert out.crc_bytes <= fuzz.MAX_CRC_PER_BYTE * out.size + c.StreamParser.CREDIT_CAP, (i, out)
        if kind == "false_syncs":
            assert out.frames >= 10, (i, out)   # the peer's valid frames after the garbage come through


# --------------------------------------------------------------------------- resynchronisation cost (issue 26, item 1)

class _CountingBinascii:
    """Stands in for the codec's ``binascii``: counts the bytes every CRC call covers."""

    def __init__(self) -> None:
        import binascii

        self._crc = binascii.crc_hqx
        self.crc_bytes = 0

    def crc_hqx(self, data, value):  # noqa: ANN001, ANN201
        self.crc_bytes += len(data)
        return self._crc(data, value)


@pytest.mark.parametrize("pattern", [b"\xaa\x01\xff\xff",          # the false frame start
                                     b"\xaa\x01\xff\xff\xaa",      # period 5: FRAMESIZE 65535 lands on a SYNC
                                     b"\xaa\x01\xaa\x01",          # a plausible candidate every 2 bytes
                                     b"\xaa\x01\x00\x10" + bytes(12)])   # minimal 16-byte false frames
def test_stream_parser_resync_work_is_linear_in_bytes(monkeypatch: pytest.MonkeyPatch, pattern: bytes) -> None:
    """CRC work per received byte is bounded whatever the garbage, and the good frames after it still come out."""
    counter = _CountingBinascii()
    monkeypatch.setattr(c, "binascii", counter)
    cfg = _cfg()
    good = [c.DataCodec(cfg).encode(_data(cfg)) for _ in range(3)]
    garbage = pattern * (160 * 1024 // len(pattern))
    stream = garbage + b"".join(good)
    parser = c.StreamParser()
    got: list[bytes] = []
    for i in range(0, len(stream), 4096):
        got += parser.feed(stream[i:i + 4096])
    assert counter.crc_bytes <= 8 * len(stream), counter.crc_bytes / len(stream)
    assert parser.bad_frames > 0 and parser.skipped_bytes >= len(garbage) - 2 * c.MAX_FRAME
    assert got[-1:] == good[-1:]


def test_stream_parser_stops_at_its_work_budget_and_resumes() -> None:
    """``feed(budget=...)`` bounds the work of one call; calls with no new bytes finish the backlog."""
    cfg = _cfg()
    good = c.DataCodec(cfg).encode(_data(cfg))
    stream = b"\xaa\x01\x00\x10" * 20000 + good * 200
    parser = c.StreamParser()
    got = parser.feed(stream, budget=4096)
    calls = 1
    while parser.pending:
        got += parser.feed(b"", budget=4096)
        calls += 1
    # the garbage may swallow the frame right after it (a false start skipped whole when the credit is spent)
    assert calls > 10 and set(got) == {good} and len(got) >= 199 and parser.buffered == 0
