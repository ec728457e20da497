"""The data plane against bad peers and odd streams (issue 26): each test names the defect it pins.

Loopback only, ephemeral ports, every scenario bounded in time. Timing assertions use frame
*arrival* gaps seen by a client (a stalled event loop shows as a gap), never CPU time.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from labkit.grid import c37118 as c
from labkit.grid.pdc_config import from_mapping
from labkit.grid.pdc import Pdc, StreamClient
from labkit.grid.pmu import PmuServer

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"
#: 192 KiB of the issue's false frame start: SYNC, data frame v1, FRAMESIZE 65535.
FALSE_SYNCS = b"\xaa\x01\xff\xff" * (48 * 1024)
#: Largest gap between two frames of a 30-fps stream a test accepts. The defects stalled every
#: client for 6.5 s; a healthy stream here shows 40-110 ms, with or without a garbage sender, and
#: up to 0.55 s at load average 13 on this shared 2-core machine (scheduling, not the data plane).
MAX_GAP = 1.0


@pytest.fixture(autouse=True, scope="module")
def _solved_network() -> None:
    from labkit.grid.phasors import network_model

    network_model("case14")


def run(coro: Awaitable, timeout: float = 60.0):  # noqa: ANN201
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _cmd(code: int, idcode: int) -> bytes:
    return c.encode_frame(c.CommandFrame(idcode, code))


class _Arrivals:
    """A raw C37.118 client: sends commands and keeps (arrival time, frame) of every frame it reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = c.StreamParser()
        self.frames: list[tuple[float, bytes]] = []
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, port: int) -> _Arrivals:
        return cls(*await asyncio.open_connection(HOST, port))

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            now = time.monotonic()
            self.frames += [(now, f) for f in self.parser.feed(data)]

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))

    def data(self, since: float = 0.0) -> list[tuple[float, bytes]]:
        return [(t, f) for t, f in self.frames if t >= since and c.frame_type_of(f) == c.FrameType.DATA]

    def configs(self) -> list[c.ConfigFrame]:
        return [c.decode_frame(f) for _, f in self.frames if c.frame_type_of(f) == c.FrameType.CFG2]

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()


def _max_gap(arrivals: list[tuple[float, bytes]]) -> float:
    times = [t for t, _ in arrivals]
    return float(np.max(np.diff(times))) if len(times) > 1 else float("inf")


class _FakeUpstream:
    """A C37.118 server that answers "send CFG-2" with ``cfg`` and "start" by running ``stream(writer)``."""

    def __init__(self, cfg: bytes, stream: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> None:
        self.cfg, self.stream = cfg, stream
        self.tasks: set[asyncio.Task] = set()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = c.StreamParser()
        try:
            while data := await reader.read(4096):
                for raw in parser.feed(data):
                    cmd = c.decode_frame(raw)
                    if cmd.command == c.Command.CFG2:
                        writer.write(self.cfg)
                    elif cmd.command == c.Command.START:
                        task = asyncio.ensure_future(self.stream(writer))
                        self.tasks.add(task)
        except ConnectionError:
            pass                 # the PDC closed (end of the test)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.server is not None:
            self.server.close()


def _one_phasor(idcode: int, phasors: int = 1) -> tuple[c.ConfigFrame, c.DataCodec]:
    pmu = c.default_pmu_config(f"FAKE{idcode}", idcode, [f"V{i}" for i in range(phasors)])
    cfg = c.ConfigFrame(idcode=idcode, pmus=(pmu,))
    return cfg, c.DataCodec(cfg)


def _frame_at(codec: c.DataCodec, k: int, rate: int = 30, phasors: int = 1) -> bytes:
    soc, idx = divmod(k, rate)
    blk = c.PmuData(0, ((1.0, 0.0),) * phasors, 50.0, 0.0)
    return codec.encode(c.DataFrame(codec.cfg.idcode, soc, round(idx * 1_000_000 / rate), (blk,)))


def _pdc_config(ports: list[int], idcodes: list[int], **kw) -> object:  # noqa: ANN003
    inputs = [{"name": f"in{i}", "host": HOST, "port": p, "idcode": code}
              for i, (p, code) in enumerate(zip(ports, idcodes))]
    return from_mapping({"idcode": 100, "inputs": inputs, "wait_window": 0.1, "output_port": 0,
                         "backoff_min": 0.05, "backoff_max": 0.2, "config_timeout": 3, **kw})


# --------------------------------------------------------------------------- item 1: one connection, one process

def test_pmu_keeps_30_fps_to_a_good_client_while_another_sends_false_syncs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="labkit.grid")

    async def scenario() -> None:
        pmu = PmuServer(7, "case14", [3], rate=30, seed=1)
        port = await pmu.start(HOST, 0)
        good = await _Arrivals.connect(port)
        try:
            good.send(_cmd(c.Command.CFG2, 7), _cmd(c.Command.START, 7))
            await asyncio.sleep(0.7)
            bad_r, bad_w = await asyncio.open_connection(HOST, port)
            t0 = time.monotonic()
            for _ in range(4):          # 768 KiB in all, in writes of 192 KiB
                bad_w.write(FALSE_SYNCS)
                await bad_w.drain()
            await asyncio.sleep(2.0)
            during = good.data(since=t0 - 0.1)
            print(f"PMU: {len(during)} frames in {time.monotonic() - t0:.2f} s, largest arrival gap "
                  f"{_max_gap(during):.3f} s, {pmu.server.bad_frames} bad frames counted")
            assert len(during) >= 0.8 * 30 * (time.monotonic() - t0)
            assert _max_gap(during) < MAX_GAP, _max_gap(during)
            assert pmu.server.bad_frames > 0
            bad_w.close()
        finally:
            await good.close()
            await pmu.close()
    run(scenario())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "bad frame" in r.getMessage()]
    assert warnings and len(warnings) <= 3, [r.getMessage() for r in warnings]   # rate-limited
    assert "127.0.0.1" in warnings[0].getMessage()


def test_pdc_output_keeps_flowing_when_one_input_sends_false_syncs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="labkit.grid")
    cfg_b, _ = _one_phasor(20)

    async def garbage(writer: asyncio.StreamWriter) -> None:
        for _ in range(4):
            writer.write(FALSE_SYNCS)
            await writer.drain()
        await asyncio.sleep(30)

    async def scenario() -> Pdc:
        a = PmuServer(1, "case14", [0], seed=1)
        pa = await a.start(HOST, 0)
        b = _FakeUpstream(c.encode_frame(cfg_b), garbage)
        pb = await b.start()
        pdc = Pdc(_pdc_config([pa, pb], [1, 20], wait_window=0.05))
        port = await pdc.start()
        out = await _Arrivals.connect(port)
        try:
            out.send(_cmd(c.Command.CFG2, 100), _cmd(c.Command.START, 100))
            await asyncio.sleep(3.0)
            recent = out.data(since=time.monotonic() - 2.5)
            print(f"PDC: {len(recent)} frames in the last 2.5 s, largest arrival gap {_max_gap(recent):.3f} s, "
                  f"{pdc.stats.inputs['in1'].bad_frames} bad frames counted on in1")
            assert len(recent) >= 0.8 * 30 * 2.5
            assert _max_gap(recent) < MAX_GAP, _max_gap(recent)
            assert pdc.stats.inputs["in1"].bad_frames > 0
        finally:
            await out.close()
            await pdc.close()
            await a.close()
            await b.close()
        return pdc
    run(scenario())
    assert any("in1" in r.getMessage() and "bad frame" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)


# --------------------------------------------------------------------------- item 2: future-stamped frames

def test_pdc_drops_and_logs_a_future_stamped_frame_without_blanking_its_output(
        caplog: pytest.LogCaptureFixture) -> None:
    """One frame stamped 3 s ahead must not move the PDC's output time: it is dropped, counted and logged."""
    caplog.set_level(logging.WARNING, logger="labkit.grid.pdc")

    async def scenario() -> Pdc:
        pdc = Pdc(_pdc_config([1], [1], wait_window=0.05))
        pdc._loop = asyncio.get_running_loop()
        out: list[bytes] = []
        pdc.server.broadcast = lambda frame: out.append(frame) or 1  # type: ignore[method-assign]
        cfg, codec = _one_phasor(1)
        inp = pdc.inputs[0]
        pdc._config_cb(inp)(cfg)
        pdc._state_cb(inp)(True)
        feed = pdc._frame_cb(inp)
        k = int(time.time() * 30) + 1
        for i in range(45):                       # 1.5 s of frames, each sent at its time
            await asyncio.sleep(max(0.0, (k + i) / 30 - time.time()))
            feed(_frame_at(codec, k + i))
            if i == 10:
                feed(_frame_at(codec, k + i + 90))  # one frame stamped 3 s ahead
        await asyncio.sleep(0.1)
        ks = [round(c.frame_time(*c.peek_header(f)[4:6]) * 30) for f in out]
        assert ks == list(range(k, k + 45))       # every real frame published, nothing else
        assert pdc.stats.inputs["in0"].early == 1 and pdc.stats.inputs["in0"].late == 0
        feed(_frame_at(codec, k + 2))             # and a late one
        assert pdc.stats.inputs["in0"].late == 1
        return pdc
    run(scenario())
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("in0" in m and "ahead" in m for m in msgs), msgs
    assert any("in0" in m and "late" in m for m in msgs), msgs


def test_pdc_judges_lead_against_the_other_inputs_when_its_own_clock_lags() -> None:
    """Two inputs agreeing on a time ahead of the PDC's clock are the reference, not dropped as early."""
    async def scenario() -> None:
        pdc = Pdc(_pdc_config([1, 2], [1, 2], wait_window=0.05, max_lead=0.5))
        pdc._loop = asyncio.get_running_loop()
        out: list[bytes] = []
        pdc.server.broadcast = lambda frame: out.append(frame) or 1  # type: ignore[method-assign]
        feeds, codecs = [], []
        for i, inp in enumerate(pdc.inputs):
            cfg, codec = _one_phasor(i + 1)
            pdc._config_cb(inp)(cfg)
            pdc._state_cb(inp)(True)
            feeds.append(pdc._frame_cb(inp))
            codecs.append(codec)
        k = int(time.time() * 30) + 60          # both inputs' clocks run 2 s ahead of the PDC's
        for i in range(5):
            feeds[0](_frame_at(codecs[0], k + i))
            feeds[1](_frame_at(codecs[1], k + i))
        early = [pdc.stats.inputs[n].early for n in ("in0", "in1")]
        assert early[1] == 0 and early[0] <= 1   # the first frame has no other input to agree with yet
        await asyncio.sleep(0.2)
        assert len(out) >= 4
    run(scenario())


# --------------------------------------------------------------------------- item 4: commands for another IDCODE

def test_pmu_ignores_and_logs_commands_addressed_to_another_idcode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="labkit.grid.pmu")

    async def scenario() -> None:
        pmu = PmuServer(7, "case14", [3], rate=30, seed=1)
        port = await pmu.start(HOST, 0)
        cl = await _Arrivals.connect(port)
        try:
            cl.send(_cmd(c.Command.START, 9999), _cmd(c.Command.CFG2, 9999))
            await asyncio.sleep(0.5)
            assert cl.frames == [] and pmu.server.foreign_commands == 2
            cl.send(_cmd(c.Command.START, 7))
            await asyncio.sleep(0.3)
            assert len(cl.data()) >= 3
        finally:
            await cl.close()
            await pmu.close()
    run(scenario())
    assert any("9999" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- item 5: PDC layout change

def test_pdc_announces_a_layout_change_and_switches_at_a_second_boundary() -> None:
    """An input joining after the config timeout: STAT bit 10 in the old layout, the new CFG-2 on request,
    the switch on a second boundary, and the kit's own client follows without losing a frame."""
    cfg_b, codec_b = _one_phasor(20, phasors=2)
    go = asyncio.Event()

    async def late_pmu(writer: asyncio.StreamWriter) -> None:
        k = int(time.time() * 30) + 1
        while True:
            await asyncio.sleep(max(0.0, k / 30 - time.time()))
            writer.write(_frame_at(codec_b, k, phasors=2))
            k += 1

    async def scenario() -> None:
        a = PmuServer(1, "case14", [0], seed=1)
        pa = await a.start(HOST, 0)
        b = _FakeUpstream(c.encode_frame(cfg_b), late_pmu)
        import socket
        with socket.socket() as s:
            s.bind((HOST, 0))
            pb = s.getsockname()[1]     # nothing listens there yet: input in1 is refused until b starts
        pdc = Pdc(_pdc_config([pa, pb], [1, 20], wait_window=0.05, config_timeout=0.3, config_change_notice=1.0))
        port = await pdc.start()
        raw = await _Arrivals.connect(port)
        kit_frames: list[bytes] = []
        kit = StreamClient(HOST, port, 100, on_frame=kit_frames.append)
        kit.start()
        try:
            raw.send(_cmd(c.Command.CFG2, 100), _cmd(c.Command.START, 100))
            await asyncio.sleep(1.0)
            old = raw.configs()[0]
            assert [p.idcode for p in old.pmus] == [1]
            b.server = await asyncio.start_server(b._serve, HOST, pb)   # input in1 comes up late
            t_join = time.monotonic()
            while not any(c.peek_header(f)[2] != old.data_frame_size for _, f in raw.data()):
                assert time.monotonic() - t_join < 6, "the PDC never switched its output layout"
                if not go.is_set() and any(_stat(f, 14) & c.Stat.CONFIG_CHANGE for _, f in raw.data(t_join)):
                    go.set()
                    raw.send(_cmd(c.Command.CFG2, 100))      # bit 10 seen: ask for the configuration again
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            new = raw.configs()[-1]
            assert [p.idcode for p in new.pmus] == [1, 20] and go.is_set()
            frames = [f for _, f in raw.data()]
            sizes = [c.peek_header(f)[2] for f in frames]
            first_new = sizes.index(new.data_frame_size)
            assert set(sizes[:first_new]) == {old.data_frame_size}
            assert set(sizes[first_new:]) == {new.data_frame_size}
            assert c.peek_header(frames[first_new])[5] == 0             # FRACSEC 0: the top of a second
            flagged = [f for f in frames[:first_new] if _stat(f, 14) & c.Stat.CONFIG_CHANGE]
            assert len(flagged) >= 25                                  # the notice: >= 1 s at 30 fps
            assert not any(_stat(f, 14) & c.Stat.CONFIG_CHANGE for f in frames[first_new:])
            times = [c.frame_time(*c.peek_header(f)[4:6]) for f in kit_frames]
            assert (np.round(np.diff(times) * 30) == 1).all()          # the kit's client lost no frame
            assert kit.cfg is not None and len(kit.cfg.pmus) == 2
        finally:
            await kit.close()
            await raw.close()
            await pdc.close()
            await a.close()
            await b.close()
    run(scenario())


def _stat(frame: bytes, offset: int) -> int:
    return struct.unpack_from(">H", frame, offset)[0]


# --------------------------------------------------------------------------- item 6: wrong-size data frames

def test_pdc_counts_and_logs_wrong_size_data_frames_of_an_input(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="labkit.grid.pdc")
    cfg_b, _ = _one_phasor(20, phasors=1)
    _, codec_2 = _one_phasor(20, phasors=2)

    async def wrong_size(writer: asyncio.StreamWriter) -> None:
        k = int(time.time() * 30) + 1
        while True:
            await asyncio.sleep(max(0.0, k / 30 - time.time()))
            writer.write(_frame_at(codec_2, k, phasors=2))   # CFG-2 says 1 phasor, frames carry 2
            k += 1

    async def scenario() -> Pdc:
        b = _FakeUpstream(c.encode_frame(cfg_b), wrong_size)
        pb = await b.start()
        pdc = Pdc(_pdc_config([pb], [20]))
        await pdc.start()
        try:
            await asyncio.sleep(1.0)
            assert pdc.stats.inputs["in0"].wrong_size >= 20
        finally:
            await pdc.close()
            await b.close()
        return pdc
    run(scenario())
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    sized = [m for m in msgs if "in0" in m and "bytes" in m]
    assert sized and len(sized) <= 2, msgs
    assert str(_one_phasor(20, 2)[0].data_frame_size) in sized[0] and str(cfg_b.data_frame_size) in sized[0]
