"""labkit.grid.pmu and labkit.grid.pdc on loopback (in-process, ephemeral ports, bounded in time)."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from labkit.grid import c37118 as c
from labkit.grid.pdc_config import from_mapping
from labkit.grid.pdc import Pdc, StreamClient
from labkit.grid.pmu import PmuServer

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"


@pytest.fixture(autouse=True, scope="module")
def _solved_network() -> None:
    """Solve case14 once, outside the time-bounded scenarios."""
    from labkit.grid.phasors import network_model

    network_model("case14")


def run(coro, timeout: float = 30.0):
    """Run ``coro`` with a hard time bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _read_frames(reader: asyncio.StreamReader, parser: c.StreamParser, want: int, timeout: float) -> list[bytes]:
    out: list[bytes] = []
    end = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < end:
        try:
            data = await asyncio.wait_for(reader.read(65536), max(0.01, end - time.monotonic()))
        except asyncio.TimeoutError:
            break
        if not data:
            break
        out += parser.feed(data)
    return out


def _cmd(code: int, idcode: int) -> bytes:
    """A command frame for the stream ``idcode`` (its destination)."""
    return c.encode_frame(c.CommandFrame(idcode, code))


def test_pmu_answers_commands_and_streams_on_the_clock() -> None:
    async def scenario() -> None:
        pmu = PmuServer(5, "case14", [3, 4], rate=30, seed=1)
        port = await pmu.start(HOST, 0)
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            parser = c.StreamParser()
            for code in (c.Command.CFG1, c.Command.CFG2, c.Command.CFG3, c.Command.HEADER):
                writer.write(_cmd(code, 5))
            frames = await _read_frames(reader, parser, 4, 5)
            kinds = [c.frame_type_of(f) for f in frames]
            assert kinds == [c.FrameType.CFG1, c.FrameType.CFG2, c.FrameType.CFG3, c.FrameType.HEADER]
            cfg = c.decode_frame(frames[1])
            assert [p.idcode for p in cfg.pmus] == [5, 6] and cfg.data_rate == 30
            assert cfg.pmus[0].phasor_names[0] == "V:3"
            assert "case14" in c.decode_frame(frames[3]).text
            writer.write(_cmd(c.Command.START, 5))
            data = await _read_frames(reader, parser, 31, 5)
            assert len(data) >= 31
            codec = c.DataCodec(cfg)
            ks = []
            for raw in data:
                f = codec.decode(raw)
                k = (f.soc + f.fracsec / cfg.time_base) * 30
                assert abs(k - round(k)) < 1e-3
                ks.append(round(k))
                v = cfg.pmus[0].phasor_values(f.pmus[0])
                truth = pmu.source.truth[0]
                assert np.max(np.abs(v - truth) / np.abs(truth)) < 0.01  # TVE < 1 %
            assert np.all(np.diff(ks) == 1)
            assert abs(ks[-1] / 30 - time.time()) < 0.5
            writer.write(_cmd(c.Command.STOP, 5))
            await _read_frames(reader, parser, 100, 0.2)  # drain what was in flight
            late = await _read_frames(reader, parser, 1, 0.3)
            assert late == []
            writer.close()
        finally:
            await pmu.close()
    run(scenario())


def test_pmu_keeps_serving_when_a_client_sends_garbage_or_vanishes() -> None:
    async def scenario() -> None:
        pmu = PmuServer(9, "case14", [0], rate=30, seed=2)
        port = await pmu.start(HOST, 0)
        try:
            good_r, good_w = await asyncio.open_connection(HOST, port)
            good_w.write(_cmd(c.Command.CFG2, 9) + _cmd(c.Command.START, 9))
            parser = c.StreamParser()
            await _read_frames(good_r, parser, 3, 3)
            bad_r, bad_w = await asyncio.open_connection(HOST, port)
            bad_w.write(b"\xaa\x41\x00\x12garbage" + _cmd(c.Command.START, 9)[:9] + bytes(range(256)))
            await bad_w.drain()
            bad_w.transport.abort()  # vanish mid-frame
            half_r, half_w = await asyncio.open_connection(HOST, port)
            half_w.write(_cmd(c.Command.START, 9)[:7])
            t0 = time.monotonic()
            got = await _read_frames(good_r, parser, 30, 3)
            assert len(got) >= 30 and time.monotonic() - t0 < 2.0
            assert pmu.server.bad_frames >= 1 and pmu.server.skipped_bytes >= 256
            half_w.close()
            good_w.close()
        finally:
            await pmu.close()
    run(scenario())


def _pdc_config(ports: list[int], idcodes: list[int], wait: float = 0.1, **kw) -> object:
    inputs = [{"name": f"in{i}", "host": HOST, "port": p, "idcode": code}
              for i, (p, code) in enumerate(zip(ports, idcodes))]
    return from_mapping({"idcode": 100, "inputs": inputs, "wait_window": wait, "output_port": 0,
                         "backoff_min": 0.05, "backoff_max": 0.2, "config_timeout": 3, **kw})


def test_pdc_concentrates_flags_missing_input_and_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="labkit.grid.pdc")

    async def scenario() -> None:
        a = PmuServer(1, "case14", [0, 1], seed=1)
        b = PmuServer(10, "case14", [2], seed=2)
        pa, pb = await a.start(HOST, 0), await b.start(HOST, 0)
        pdc = Pdc(_pdc_config([pa, pb], [1, 10], wait=0.05))
        port = await pdc.start()
        frames: list[bytes] = []
        client = StreamClient(HOST, port, 100, on_frame=frames.append)
        client.start()
        try:
            await asyncio.sleep(1.5)
            cfg = client.cfg
            assert cfg is not None and [p.idcode for p in cfg.pmus] == [1, 2, 10]
            codec = c.DataCodec(cfg)
            full = [codec.decode(f) for f in frames[-10:]]
            assert all((blk.stat & 0xC000) == 0 for f in full for blk in f.pmus)
            await b.close()
            await asyncio.sleep(0.8)
            n_before = len(frames)
            await asyncio.sleep(0.5)
            during = [codec.decode(f) for f in frames[n_before:]]
            assert len(during) >= 10  # the other input keeps flowing at 30 fps
            for f in during:
                assert [(blk.stat & 0xC000) for blk in f.pmus] == [0, 0, 0x8000]
                assert np.isnan(cfg.pmus[2].phasor_values(f.pmus[2])).all()
            b2 = PmuServer(10, "case14", [2], seed=3)
            await b2.start(HOST, pb)
            await asyncio.sleep(1.5)
            after = [codec.decode(f) for f in frames[-10:]]
            assert all((blk.stat & 0xC000) == 0 for f in after for blk in f.pmus)
            kinds = [(e["input"], e["kind"]) for e in pdc.events]
            assert ("in1", "reconnect") in kinds and ("in0", "start") in kinds and ("output", "start") in kinds
            assert "first frame forwarded after reconnect of in1" in caplog.text
            times = [c.frame_time(*c.peek_header(f)[4:6]) for f in frames]
            steps = np.round(np.diff(times) * 30).astype(int)
            assert (steps == 1).all()  # no output frame lost while an input was down
            await b2.close()
        finally:
            await client.close()
            await pdc.close()
            await a.close()
            await b.close()
    run(scenario(), timeout=60)


def test_pdc_alignment_wait_window_and_late_frames() -> None:
    """Drive the PDC's data path directly with synthetic frames."""
    async def scenario() -> None:
        pdc = Pdc(_pdc_config([1, 2], [1, 2], wait=0.2))
        pdc._loop = asyncio.get_running_loop()
        out: list[bytes] = []
        pdc.server.broadcast = lambda frame: out.append(frame) or 1  # type: ignore[method-assign]
        cfgs = [c.ConfigFrame(idcode=i, pmus=(c.default_pmu_config(f"P{i}", i, ["V:0"]),)) for i in (1, 2)]
        feeds = []
        for inp, cfg in zip(pdc.inputs, cfgs):
            pdc._config_cb(inp)(cfg)
            pdc._state_cb(inp)(True)
            feeds.append(pdc._frame_cb(inp))
        codecs = [c.DataCodec(cfg) for cfg in cfgs]

        def frame(i: int, k: int) -> bytes:
            soc, idx = divmod(k, 30)
            blk = cfgs[i].pmus[0].to_wire([complex(i + 1, k % 7)], 50.0)
            return codecs[i].encode(c.DataFrame(cfgs[i].idcode, soc, round(idx * 1e6 / 30), (blk,)))

        k0 = int(time.time() * 30) + 3
        feeds[0](frame(0, k0))
        assert out == []                      # waiting for input 1
        feeds[1](frame(1, k0))
        assert len(out) == 1                  # complete: published at once
        feeds[0](frame(0, k0 + 1))            # input 1 never sends k0+1
        await asyncio.sleep((k0 + 1) / 30 + 0.2 - time.time() + 0.1)
        assert len(out) == 2                  # published by the wait window
        dec = c.decode_frame(out[1], pdc.out_cfg)
        assert [b.stat for b in dec.pmus] == [0, c.Stat.TEST_OR_ABSENT]
        feeds[1](frame(1, k0 + 1))            # too late now
        assert pdc.stats.late == 1 and len(out) == 2
        feeds[0](frame(0, k0 + 3))
        feeds[1](frame(1, k0 + 2))
        feeds[0](frame(0, k0 + 2))            # completes k0+2 (k0+3 still waits for input 1)
        assert [c.peek_header(f)[4:6] for f in out[2:]] == [divmod(k0 + 2, 30)[:1] + (round((k0 + 2) % 30 * 1e6 / 30),)]
        feeds[1](frame(1, k0 + 3))
        assert len(out) == 4
        first = c.decode_frame(out[0], pdc.out_cfg)
        np.testing.assert_allclose(pdc.out_cfg.pmus[1].phasor_values(first.pmus[1]), [complex(2, k0 % 7)])
        assert pdc.stats.incomplete == 1 and pdc.stats.absent_blocks == 1
    run(scenario())


def test_pdc_rejects_duplicate_pmu_idcodes_across_inputs(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        pdc = Pdc(_pdc_config([1, 2], [1, 2]))
        cfg = c.ConfigFrame(idcode=7, pmus=(c.default_pmu_config("P", 7, ["V:0"]),))
        for inp in pdc.inputs:
            pdc._config_cb(inp)(cfg)
        assert [p.idcode for p in pdc.out_cfg.pmus] == [7]
        assert "already used by input(s) ['in0']" in pdc.inputs[1].rejected
    caplog.set_level(logging.ERROR)
    run(scenario())


def test_pdc_serves_other_clients_when_one_sends_garbage() -> None:
    async def scenario() -> None:
        a = PmuServer(1, "case14", [0], seed=1)
        pa = await a.start(HOST, 0)
        pdc = Pdc(_pdc_config([pa], [1], wait=0.05))
        port = await pdc.start()
        good: list[bytes] = []
        client = StreamClient(HOST, port, 100, on_frame=good.append)
        client.start()
        try:
            await asyncio.sleep(0.8)
            r, w = await asyncio.open_connection(HOST, port)
            w.write(b"\xaa\x41\xff\xff" + bytes(300) + _cmd(c.Command.START, 100)[:10])
            await w.drain()
            w.transport.abort()
            n = len(good)
            await asyncio.sleep(1.0)
            assert len(good) - n >= 25
        finally:
            await client.close()
            await pdc.close()
            await a.close()
    run(scenario())


def test_pdc_rejects_an_input_that_would_overflow_framesize(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        pdc = Pdc(_pdc_config([1, 2], [1, 2]))
        for k, inp in enumerate(pdc.inputs):
            big = c.default_pmu_config(f"BIG{k}", k + 1, [f"V{i}" for i in range(1700)])  # 34 kB of CFG-2 each
            pdc._config_cb(inp)(c.ConfigFrame(idcode=k + 1, pmus=(big,)))
        assert [p.idcode for p in pdc.out_cfg.pmus] == [1]
        assert "over the C37.118 FRAMESIZE limit of 65535" in pdc.inputs[1].rejected
        assert len(c.encode_frame(pdc.out_cfg)) <= c.MAX_FRAME
    caplog.set_level(logging.ERROR)
    run(scenario())


def test_pdc_cli_exits_on_sigterm_while_its_inputs_are_refused(tmp_path) -> None:  # noqa: ANN001
    """SIGTERM right after start, while every input connection is being refused, ends the PDC.

    On Python 3.11 ``asyncio.wait_for`` lost a cancellation that arrived as the connection
    failed; the PDC then reconnected forever and ignored SIGTERM (4 of 5 starts here).
    """
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as s1, socket.socket() as s2:  # two ports nothing listens on
        s1.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        ports = [s1.getsockname()[1], s2.getsockname()[1]]
    cfg = {"name": "pdc-t", "idcode": 100, "wait_window_ms": 80, "output_port": 0, "rate": 30,
           "inputs": [{"name": f"pmu-{i}", "host": "127.0.0.1", "port": p, "idcode": i + 1} for i, p in enumerate(ports)]}
    path = tmp_path / "pdc.json"
    path.write_text(json.dumps(cfg))
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "labkit.grid.pdc", "--config", str(path), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith("listening ")
            proc.terminate()
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()
