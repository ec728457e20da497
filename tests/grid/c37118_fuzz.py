"""Inputs for fuzzing the C37.118 decoder and stream parser, and the check run on each.

Shared by ``tests/grid/test_grid_c37118.py`` (a few hundred inputs in the unit tier) and
``benchmarks/bench_grid_fuzz.py`` (a million and more, timed). Every input comes from a seeded
``random.Random``, so a failing input is reproduced from its seed and index.

Kinds of input (:data:`KINDS`, drawn with :data:`WEIGHTS`):

``mutant``
    one valid frame of any type with 1-5 mutations (byte flips, cuts, inserted bytes, 16-bit
    count/format fields overwritten with extreme values), CRC fixed or not; or raw bytes.
``stream``
    a stream of valid frames (data, CFG-1/2/3, command, header) in which some frames are
    corrupted: a field flipped, FRAMESIZE replaced (0, < 16, 0xFFFF, random), CHK broken,
    frames cut short, garbage runs in between.
``false_syncs``
    a long run of false frame starts (the issue's ``AA 01 FF FF``, period-5 and period-2
    variants, minimal 16-byte false frames, random sizes) with valid frames before and inside
    it, and a stream of valid frames after it (as a peer that resumes sending).
``huge``
    valid frame headers claiming a large FRAMESIZE, followed by less than that (and valid
    frames after).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import numpy as np

from labkit.grid import c37118 as c

KINDS = ("mutant", "stream", "false_syncs", "huge")
#: Share of each kind among the inputs (long inputs are rarer: they carry most of the bytes).
WEIGHTS = (0.985, 0.01, 0.003, 0.002)
#: Longest input of each kind (bytes), besides ``mutant`` (a few hundred).
LONG = {"stream": 64 * 1024, "false_syncs": 256 * 1024, "huge": 192 * 1024}
#: CRC work the parser may do per input byte, whatever the input (see StreamParser's docstring).
MAX_CRC_PER_BYTE = 6.0


def config() -> c.ConfigFrame:
    """A 3-PMU configuration covering float/int, rectangular/polar, analogs and digital words."""
    p1 = c.default_pmu_config("STATION A", 7, ["V:1", "I:line:0:f"])
    p2 = c.PmuConfig("B", 8, ("VA", "VB"), polar=True, phasor_float=False, analog_float=False, freq_float=False,
                     analog_names=("A1",), digital_names=tuple(f"D{i}" for i in range(16)), phunit=(915527, 915527),
                     fnom=60, cfgcnt=3)
    p3 = c.PmuConfig("C", 9, ("IA",), polar=False, phasor_float=False, phunit=((1 << 24) | 100,))
    return c.ConfigFrame(idcode=99, pmus=(p1, p2, p3), data_rate=30, soc=1_700_000_000, fracsec=123)


CFG = config()
_CODEC = c.DataCodec(CFG)


def data_frame(k: int) -> bytes:
    """Valid data frame number ``k`` of :data:`CFG`."""
    p1, p2, p3 = CFG.pmus
    soc, idx = divmod(1_700_000_000 * 30 + k, 30)
    return _CODEC.encode(c.DataFrame(99, soc, round(idx * 1e6 / 30), (
        p1.to_wire([1 + 1j, 2 - 1j], 50.01, 0.2), p2.to_wire([100 * np.exp(0.3j), 200], 60.02, 0.1, [5], [3]),
        p3.to_wire([-3 + 4j], 50.0))))


TEMPLATES = [c.encode_frame(CFG.as_kind(k)) for k in (c.FrameType.CFG1, c.FrameType.CFG2, c.FrameType.CFG3)]
TEMPLATES += [data_frame(0), c.encode_frame(c.CommandFrame(7, 8, extended=b"xyz")),
              c.encode_frame(c.HeaderFrame(7, "hdr"))]
FALSE_STARTS = [b"\xaa\x01\xff\xff", b"\xaa\x01\xff\xff\xaa", b"\xaa\x01\xaa\x01", b"\xaa\x01\x00\x10" + bytes(12),
                b"\xaa\x31\xff\xfe", b"\xaa\x52\x80\x00"]


def fix_crc(data: bytearray) -> bytes:
    """``data`` with FRAMESIZE and CHK made consistent with its length."""
    if len(data) >= 4:
        data[2:4] = struct.pack(">H", len(data) & 0xFFFF)
    if len(data) >= 2:
        data[-2:] = struct.pack(">H", c.crc_ccitt(bytes(data[:-2])))
    return bytes(data)


def mutant(rng: random.Random) -> bytes:
    """A byte string derived from a valid frame: flips, cuts, inserted bytes, field overwrites, CRC fixed or not."""
    if rng.random() < 0.1:
        return rng.randbytes(rng.randrange(0, 200))
    data = bytearray(rng.choice(TEMPLATES))
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(4)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        elif op == 1 and data:
            del data[rng.randrange(len(data)):]
        elif op == 2:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randrange(1, 40))
        elif len(data) > 22:
            at = rng.randrange(14, len(data) - 3)
            data[at:at + 2] = struct.pack(">H", rng.choice([0, 1, 0x7FFF, 0x8000, 0xFFFF, rng.randrange(65536)]))
    return fix_crc(data) if rng.random() < 0.7 else bytes(data)


def _corrupt(rng: random.Random, frame: bytes) -> bytes:
    """One valid frame with one structural corruption."""
    data = bytearray(frame)
    op = rng.randrange(5)
    if op == 0:                                   # a field flipped, CHK left as it was
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif op == 1:                                 # FRAMESIZE replaced
        data[2:4] = struct.pack(">H", rng.choice([0, 15, 16, 0xFFFF, rng.randrange(65536)]))
    elif op == 2:                                 # CHK broken
        data[-1] ^= 0xFF
    elif op == 3:                                 # cut short
        del data[rng.randrange(1, len(data)):]
    else:                                         # garbage inside
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randrange(1, 64))
    return bytes(data)


def stream(rng: random.Random) -> bytes:
    """Valid frames, some corrupted, with garbage runs between them."""
    out, size, limit = [], 0, rng.randrange(1024, LONG["stream"])
    while size < limit:
        frame = data_frame(rng.randrange(1000)) if rng.random() < 0.7 else rng.choice(TEMPLATES)
        roll = rng.random()
        piece = _corrupt(rng, frame) if roll < 0.2 else rng.randbytes(rng.randrange(1, 300)) if roll < 0.25 else frame
        out.append(piece)
        size += len(piece)
    return b"".join(out)


def false_syncs(rng: random.Random) -> bytes:
    """A long run of false frame starts, valid frames before and inside it, 30 valid frames after it."""
    pattern = rng.choice(FALSE_STARTS + [b"\xaa" + bytes([rng.choice((1, 2, 0x31, 0x52))]) + rng.randbytes(2)])
    run = pattern * (rng.randrange(4096, LONG["false_syncs"]) // len(pattern))
    cut = rng.randrange(len(run))
    return data_frame(1) + run[:cut] + data_frame(2) + run[cut:] + b"".join(data_frame(k) for k in range(3, 33))


def huge(rng: random.Random) -> bytes:
    """Valid headers claiming a large FRAMESIZE, followed by less than that, valid frames after."""
    parts = []
    for _ in range(rng.randrange(1, 4)):
        head = bytearray(rng.choice(TEMPLATES)[:14])
        claimed = rng.randrange(4096, 65536)
        head[2:4] = struct.pack(">H", claimed)
        filler = b"".join(data_frame(rng.randrange(1000)) for _ in range(rng.randrange(1, claimed // 64)))
        parts += [bytes(head), filler[:rng.randrange(len(filler) + 1)]]
    return b"".join(parts) + data_frame(5)


GENERATORS = {"mutant": mutant, "stream": stream, "false_syncs": false_syncs, "huge": huge}


@dataclass
class Outcome:
    """What one input did: bytes, frames out, CRC work, and the time it took (filled by the caller)."""

    kind: str
    size: int
    frames: int
    crc_bytes: int
    seconds: float = 0.0


def exercise(kind: str, data: bytes, rng: random.Random, budget: int | None) -> Outcome:
    """Decode ``data`` as one frame and parse it as a stream in random chunks; decode every frame found.

    Raises whatever the decoder raises besides :class:`~labkit.grid.c37118.FrameError` and
    whatever the parser raises at all: a fuzzing failure.
    """
    for cfg in (None, CFG):
        try:
            c.decode_frame(data, cfg)
        except c.FrameError:
            pass
    parser, frames, pos = c.StreamParser(), [], 0
    while pos < len(data):
        step = rng.choice((1, 7, 64, 1500, 65536, len(data)))
        frames += parser.feed(data[pos:pos + step], budget=budget)
        pos += step
    while parser.pending:
        frames += parser.feed(b"", budget=budget)
    for frame in frames:
        for cfg in (None, CFG):
            try:
                c.decode_frame(frame, cfg)
            except c.FrameError:
                pass
    return Outcome(kind, len(data), len(frames), parser.crc_bytes)


def inputs(seed: int, count: int, weights: tuple[float, ...] = WEIGHTS):  # noqa: ANN201
    """``count`` (kind, bytes, rng) triples from ``seed`` (kinds drawn with ``weights``)."""
    rng = random.Random(seed)
    for _ in range(count):
        kind = rng.choices(KINDS, weights)[0]
        sub = random.Random(rng.getrandbits(64))
        yield kind, GENERATORS[kind](sub), sub
