"""IEEE C37.118.2-2011 synchrophasor frames: encode, decode and a TCP stream parser.

Implemented of the standard (clause numbers of C37.118.2-2011):

* common frame header (6.2): SYNC with frame type and version (1 = 2005, 2 = 2011),
  FRAMESIZE, IDCODE, SOC, FRACSEC (24-bit fraction + time-quality byte: leap-second
  direction / occurred / pending and the 4-bit message time quality code), CHK as
  CRC-CCITT (polynomial 0x1021, initial value 0xFFFF, no final XOR);
* data frames (6.3): one or more PMU blocks, each with STAT, phasors (rectangular or polar,
  16-bit integer or 32-bit float), FREQ/DFREQ (integer or float), analogs (integer or float)
  and digital words; the block layout comes from the stream's configuration;
* configuration frames CFG-1 and CFG-2 (6.4, Table 8) with any number of PMUs, PHUNIT,
  ANUNIT, DIGUNIT, FNOM, CFGCNT and DATA_RATE (negative = seconds per frame);
* configuration frame CFG-3 (6.4, Table 10): CONT_IDX, length-prefixed names, G_PMU_ID,
  PHSCALE/ANSCALE, PMU location, service class, WINDOW, GRP_DLY. PHSCALE's scale factor is
  PHUNIT x 1e-5 for 16-bit phasors and 1 for floats, its type says voltage or current and the
  component (positive sequence unless given, :func:`cfg3_phscale`); a configuration decoded from
  a CFG-3 scales 16-bit phasors by that factor. Each CFG-3 frame is coded on its own; a
  fragmented CFG-3 (CONT_IDX > 0) is decoded frame by frame, not reassembled;
* header frames (6.5, ASCII text) and command frames (6.6, CMD and extended frame data).

Frames are immutable dataclasses. Data frames carry the *wire values* (integers for
16-bit formats, floats for float formats) so that decoding then encoding gives the same
bytes; :class:`PmuConfig` converts between wire values and engineering units.

Decoding never raises anything but :class:`FrameError` on any byte string.
"""

from __future__ import annotations

import binascii
import enum
import functools
import heapq
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

__all__ = [
    "Command", "FrameType", "FrameError", "Stat",
    "CommandFrame", "HeaderFrame", "ConfigFrame", "PmuConfig", "PmuData", "DataFrame",
    "Cfg3Extra", "DataCodec", "StreamParser", "cfg3_phscale",
    "ZERO_SEQUENCE", "POSITIVE_SEQUENCE", "NEGATIVE_SEQUENCE", "PHASE_A", "PHASE_B", "PHASE_C",
    "crc_ccitt", "decode_frame", "encode_frame", "peek_header", "frame_type_of",
    "split_time", "frame_time", "make_tq", "parse_tq", "make_stat",
    "SYNC_BYTE", "MAX_FRAME", "ABSENT_INT", "wrap_data", "block_bytes", "default_pmu_config",
]

SYNC_BYTE = 0xAA
#: Largest frame FRAMESIZE can describe.
MAX_FRAME = 0xFFFF
#: The smallest legal frame: SYNC, FRAMESIZE, IDCODE, SOC, FRACSEC, CHK.
MIN_FRAME = 16
#: Wire value marking an absent 16-bit measurement (C37.118.2-2011 6.3, "0x8000").
ABSENT_INT = -32768

_HEAD = struct.Struct(">BBHHII")   # sync, type|version, framesize, idcode, soc, fracsec
_CRC = struct.Struct(">H")


class FrameError(ValueError):
    """A byte string is not a valid C37.118 frame; the message names the bad field."""


class FrameType(enum.IntEnum):
    """Frame type codes in bits 6-4 of the second SYNC byte."""

    DATA = 0
    HEADER = 1
    CFG1 = 2
    CFG2 = 3
    COMMAND = 4
    CFG3 = 5


class Command(enum.IntEnum):
    """CMD word values of command frames (Table 15)."""

    STOP = 1       # turn off transmission of data frames
    START = 2      # turn on transmission of data frames
    HEADER = 3     # send header frame
    CFG1 = 4       # send CFG-1
    CFG2 = 5       # send CFG-2
    CFG3 = 6       # send CFG-3
    EXTENDED = 8   # extended frame


class Stat(enum.IntFlag):
    """STAT word bits of a PMU data block (Table 7, 2011 edition)."""

    DATA_ERROR_MASK = 0xC000
    PMU_ERROR_NO_INFO = 0x4000
    TEST_OR_ABSENT = 0x8000    # "PMU in test mode or absent data tags inserted: do not use"
    PMU_ERROR = 0xC000
    NOT_SYNC = 0x2000
    SORT_BY_ARRIVAL = 0x1000
    TRIGGER = 0x0800
    CONFIG_CHANGE = 0x0400
    DATA_MODIFIED = 0x0200
    TIME_QUALITY_MASK = 0x01C0
    UNLOCKED_MASK = 0x0030
    TRIGGER_REASON_MASK = 0x000F


def crc_ccitt(data: bytes | bytearray | memoryview) -> int:
    """CRC-CCITT of ``data`` as C37.118 defines it (poly 0x1021, init 0xFFFF, no final XOR)."""
    return binascii.crc_hqx(data, 0xFFFF)


# --------------------------------------------------------------------------- time helpers

def make_tq(leap_direction: int = 0, leap_occurred: bool = False, leap_pending: bool = False,
            quality: int = 0) -> int:
    """Build the time-quality byte (FRACSEC bits 31-24).

    Parameters
    ----------
    leap_direction
        0 = add a second, 1 = delete a second.
    leap_occurred, leap_pending
        Leap-second flags.
    quality
        Message time quality code 0 (locked to UTC) .. 15 (fault), see Table 3.
    """
    if leap_direction not in (0, 1):
        raise FrameError(f"leap_direction must be 0 or 1, got {leap_direction!r}")
    if not 0 <= quality <= 15:
        raise FrameError(f"time quality code must be 0..15, got {quality!r}")
    return (leap_direction << 6) | (int(bool(leap_occurred)) << 5) | (int(bool(leap_pending)) << 4) | quality


def parse_tq(tq: int) -> dict[str, int | bool]:
    """Split a time-quality byte into its fields (inverse of :func:`make_tq`)."""
    return {"leap_direction": (tq >> 6) & 1, "leap_occurred": bool(tq & 0x20),
            "leap_pending": bool(tq & 0x10), "quality": tq & 0x0F}


def make_stat(data_error: int = 0, not_sync: bool = False, sort_by_arrival: bool = False,
              trigger: bool = False, config_change: bool = False, modified: bool = False,
              time_quality: int = 0, unlocked: int = 0, trigger_reason: int = 0) -> int:
    """Build a STAT word (Table 7); every field is range-checked."""
    for name, value, hi in (("data_error", data_error, 3), ("time_quality", time_quality, 7),
                            ("unlocked", unlocked, 3), ("trigger_reason", trigger_reason, 15)):
        if not 0 <= value <= hi:
            raise FrameError(f"STAT field {name} must be 0..{hi}, got {value!r}")
    return ((data_error << 14) | (int(not_sync) << 13) | (int(sort_by_arrival) << 12)
            | (int(trigger) << 11) | (int(config_change) << 10) | (int(modified) << 9)
            | (time_quality << 6) | (unlocked << 4) | trigger_reason)


def split_time(t: float, time_base: int = 1_000_000) -> tuple[int, int]:
    """Split a UNIX time into (SOC, FRACSEC fraction count) for ``time_base``."""
    soc = math.floor(t)
    frac = round((t - soc) * time_base)
    if frac >= time_base:
        soc, frac = soc + 1, frac - time_base
    return soc, frac


def frame_time(soc: int, fracsec: int, time_base: int = 1_000_000) -> float:
    """UNIX time of a frame from SOC and the 24-bit fraction count."""
    return soc + fracsec / time_base


# --------------------------------------------------------------------------- frames

@dataclass(frozen=True, slots=True)
class CommandFrame:
    """Command frame (6.6): CMD word plus optional extended-frame bytes."""

    idcode: int
    command: int
    soc: int = 0
    fracsec: int = 0
    tq: int = 0
    extended: bytes = b""
    version: int = 1

    frame_type = FrameType.COMMAND


@dataclass(frozen=True, slots=True)
class HeaderFrame:
    """Header frame (6.5): human-readable ASCII description of the data source."""

    idcode: int
    text: str
    soc: int = 0
    fracsec: int = 0
    tq: int = 0
    version: int = 1

    frame_type = FrameType.HEADER


@dataclass(frozen=True, slots=True)
class Cfg3Extra:
    """Per-PMU fields only CFG-3 carries (Table 10).

    ``phscale`` holds, per phasor, (modification flags 16 bit, type indication 8 bit, user byte,
    scale factor Y, angle adjustment in rad). Empty means the defaults :func:`cfg3_phscale` derives
    from the PMU's PHUNIT and format: Y = PHUNIT x 1e-5 for 16-bit phasors and 1 for floats, no
    adjustment, type = voltage or current (PHUNIT byte 3) and :data:`POSITIVE_SEQUENCE`.
    """

    g_pmu_id: bytes = bytes(16)
    phscale: tuple[tuple[int, int, int, float, float], ...] = ()
    #: per analog: (scale, offset)
    anscale: tuple[tuple[float, float], ...] = ()
    lat: float = float("nan")
    lon: float = float("nan")
    elev: float = float("nan")
    svc_class: str = "M"
    window: int = 0
    grp_dly: int = 0


@dataclass(frozen=True, slots=True)
class PmuConfig:
    """One PMU's part of a configuration frame.

    ``digital_names`` holds 16 names per digital status word. ``phunit`` holds the raw
    32-bit PHUNIT words (byte 3: 0 voltage / 1 current; bits 23-0: scale in 1e-5 V or A per
    bit, used only by 16-bit formats); ``anunit`` raw ANUNIT words; ``digunit`` pairs of
    16-bit masks. ``cfg3`` is set only for CFG-3 frames.
    """

    station: str
    idcode: int
    phasor_names: tuple[str, ...]
    polar: bool = False
    phasor_float: bool = True
    analog_float: bool = True
    freq_float: bool = True
    analog_names: tuple[str, ...] = ()
    digital_names: tuple[str, ...] = ()
    phunit: tuple[int, ...] = ()
    anunit: tuple[int, ...] = ()
    digunit: tuple[tuple[int, int], ...] = ()
    fnom: int = 50
    cfgcnt: int = 0
    cfg3: Cfg3Extra | None = None

    def __post_init__(self) -> None:
        if len(self.digital_names) % 16:
            raise FrameError(f"PMU {self.idcode}: digital_names must hold 16 names per word, "
                             f"got {len(self.digital_names)}")
        if self.fnom not in (50, 60):
            raise FrameError(f"PMU {self.idcode}: FNOM must be 50 or 60, got {self.fnom!r}")
        if not self.phunit:
            object.__setattr__(self, "phunit", tuple(_default_phunit(n) for n in self.phasor_names))
        if not self.anunit:
            object.__setattr__(self, "anunit", (0x01000001,) * len(self.analog_names))
        if not self.digunit:
            object.__setattr__(self, "digunit", ((0, 0xFFFF),) * self.dgnmr)
        for name, got, want in (("PHUNIT", len(self.phunit), self.phnmr),
                                ("ANUNIT", len(self.anunit), self.annmr),
                                ("DIGUNIT", len(self.digunit), self.dgnmr)):
            if got != want:
                raise FrameError(f"PMU {self.idcode}: {name} has {got} entries, expected {want}")

    @property
    def phnmr(self) -> int:
        """Number of phasors."""
        return len(self.phasor_names)

    @property
    def annmr(self) -> int:
        """Number of analog values."""
        return len(self.analog_names)

    @property
    def dgnmr(self) -> int:
        """Number of digital status words."""
        return len(self.digital_names) // 16

    @property
    def format_word(self) -> int:
        """FORMAT field: bit 0 polar, bit 1 phasor float, bit 2 analog float, bit 3 freq float."""
        return (int(self.polar) | (int(self.phasor_float) << 1) | (int(self.analog_float) << 2)
                | (int(self.freq_float) << 3))

    @property
    def block_struct(self) -> str:
        """struct format (without byte order) of this PMU's block in a data frame."""
        ph = ("ff" if self.phasor_float else ("Hh" if self.polar else "hh")) * self.phnmr
        fr = "ff" if self.freq_float else "hh"
        an = ("f" if self.analog_float else "h") * self.annmr
        return "H" + ph + fr + an + "H" * self.dgnmr

    @property
    def block_size(self) -> int:
        """Bytes of this PMU's block in a data frame."""
        return struct.calcsize(">" + self.block_struct)

    def phasor_scale(self) -> np.ndarray:
        """Per-phasor engineering units per integer bit: CFG-3's scale factor Y when this configuration came
        from a CFG-3, else 1e-5 x PHUNIT bits 23-0."""
        if self.cfg3 is not None and self.cfg3.phscale:
            return np.array([ph[3] for ph in self.cfg3.phscale], dtype=float)
        return np.array([(u & 0xFFFFFF) * 1e-5 for u in self.phunit])

    def _angle_adjustment(self) -> np.ndarray | None:
        """CFG-3's per-phasor angle adjustments (rad) of 16-bit phasors, or ``None`` when all are 0."""
        if self.phasor_float or self.cfg3 is None or not any(ph[4] for ph in self.cfg3.phscale):
            return None
        return np.array([ph[4] for ph in self.cfg3.phscale], dtype=float)

    def to_wire(self, phasors: Sequence[complex] | np.ndarray, freq_hz: float | None = None,
                rocof: float = 0.0, analogs: Sequence[float] = (), digitals: Sequence[int] = (),
                stat: int = 0) -> PmuData:
        """Convert engineering-unit values (V, A, Hz, Hz/s) into a :class:`PmuData` block.

        ``NaN`` phasors become absent values (NaN for floats, 0x8000 for integers).
        """
        z = np.asarray(phasors, dtype=complex)
        if z.shape != (self.phnmr,):
            raise FrameError(f"PMU {self.idcode}: expected {self.phnmr} phasors, got shape {z.shape}")
        pairs = self._phasor_pairs(z)
        f = float(self.fnom if freq_hz is None else freq_hz)
        if self.freq_float:
            freq, dfreq = f, float(rocof)
        else:
            freq, dfreq = _clip16(round((f - self.fnom) * 1000.0)), _clip16(round(rocof * 100.0))
        if len(analogs) != self.annmr or len(digitals) != self.dgnmr:
            raise FrameError(f"PMU {self.idcode}: expected {self.annmr} analogs and {self.dgnmr} "
                             f"digital words, got {len(analogs)} and {len(digitals)}")
        ans = tuple(float(a) for a in analogs) if self.analog_float else tuple(_clip16(round(a)) for a in analogs)
        return PmuData(stat=stat, phasors=pairs, freq=freq, dfreq=dfreq, analogs=ans,
                       digitals=tuple(int(d) & 0xFFFF for d in digitals))

    def _phasor_pairs(self, z: np.ndarray) -> tuple[tuple[float, float], ...]:
        if self.phasor_float:
            if self.polar:
                return tuple(zip(np.abs(z).tolist(), np.angle(z).tolist()))
            return tuple(zip(z.real.tolist(), z.imag.tolist()))
        scale = self.phasor_scale()
        scale[scale == 0] = 1.0
        bad = ~np.isfinite(z)
        adjust = self._angle_adjustment()
        if adjust is not None:
            z = z * np.exp(-1j * adjust)
        if self.polar:
            mag = np.where(bad, 0, np.clip(np.rint(np.abs(np.nan_to_num(z)) / scale), 0, 65535)).astype(int)
            ang = np.where(bad, ABSENT_INT, np.clip(np.rint(np.angle(np.nan_to_num(z)) * 1e4), -31416, 31416)).astype(int)
            return tuple(zip(mag.tolist(), ang.tolist()))
        re = np.where(bad, ABSENT_INT, np.clip(np.rint(np.nan_to_num(z.real) / scale), -32767, 32767)).astype(int)
        im = np.where(bad, ABSENT_INT, np.clip(np.rint(np.nan_to_num(z.imag) / scale), -32767, 32767)).astype(int)
        return tuple(zip(re.tolist(), im.tolist()))

    def phasor_values(self, data: PmuData) -> np.ndarray:
        """Phasors of a data block as complex engineering units (absent values give NaN).

        16-bit phasors are scaled by :meth:`phasor_scale` and, when this configuration came from a
        CFG-3, turned by its angle adjustment (added to the angle, as openPDC reads it; the kit writes 0).
        """
        a = np.array([p[0] for p in data.phasors], dtype=float)
        b = np.array([p[1] for p in data.phasors], dtype=float)
        if self.phasor_float:
            return a * np.exp(1j * b) if self.polar else a + 1j * b
        absent = (b == ABSENT_INT) if self.polar else ((a == ABSENT_INT) | (b == ABSENT_INT))
        scale = self.phasor_scale()
        z = a * scale * np.exp(1e-4j * b) if self.polar else (a + 1j * b) * scale
        adjust = self._angle_adjustment()
        if adjust is not None:
            z = z * np.exp(1j * adjust)
        z[absent] = np.nan
        return z

    def freq_hz(self, data: PmuData) -> float:
        """Frequency in Hz of a data block."""
        return float(data.freq) if self.freq_float else self.fnom + data.freq / 1000.0

    def rocof(self, data: PmuData) -> float:
        """ROCOF in Hz/s of a data block."""
        return float(data.dfreq) if self.freq_float else data.dfreq / 100.0

    def absent_block(self, stat: int = Stat.TEST_OR_ABSENT) -> PmuData:
        """A block with every value marked absent (what a PDC inserts for a missing PMU)."""
        nan = float("nan")
        ph = (nan, nan) if self.phasor_float else ((0, ABSENT_INT) if self.polar else (ABSENT_INT, ABSENT_INT))
        fr = nan if self.freq_float else ABSENT_INT
        an = nan if self.analog_float else ABSENT_INT
        return PmuData(stat=stat, phasors=(ph,) * self.phnmr, freq=fr, dfreq=fr,
                       analogs=(an,) * self.annmr, digitals=(0,) * self.dgnmr)


#: Phasor component codes of CFG-3's type indication, bits 2-0 (C37.118.2-2011, Table 10).
ZERO_SEQUENCE, POSITIVE_SEQUENCE, NEGATIVE_SEQUENCE, PHASE_A, PHASE_B, PHASE_C = 0, 1, 2, 4, 5, 6


def cfg3_phscale(p: PmuConfig, component: int = POSITIVE_SEQUENCE) -> tuple[tuple[int, int, int, float, float], ...]:
    """CFG-3 PHSCALE entries of ``p`` derived from its PHUNIT and format (see :class:`Cfg3Extra`).

    CFG-1/2 cannot say which component a phasor is; ``component`` (default positive sequence,
    what the kit's PMUs measure from a balanced power flow) is used for every phasor.
    """
    out = []
    for unit in p.phunit:
        kind = 1 if unit >> 24 == 1 else 0
        scale = 1.0 if p.phasor_float else (unit & 0xFFFFFF) * 1e-5
        out.append((0, (kind << 3) | component, 0, scale, 0.0))
    return tuple(out)


def _default_phunit(name: str) -> int:
    kind = 1 if name.upper().startswith("I") else 0
    return (kind << 24) | 1


def _clip16(v: int) -> int:
    return max(-32767, min(32767, int(v)))


@dataclass(frozen=True, slots=True)
class ConfigFrame:
    """CFG-1, CFG-2 or CFG-3 frame: TIME_BASE, the PMUs of the stream, DATA_RATE."""

    idcode: int
    pmus: tuple[PmuConfig, ...]
    data_rate: int = 30
    time_base: int = 1_000_000
    kind: FrameType = FrameType.CFG2
    soc: int = 0
    fracsec: int = 0
    tq: int = 0
    version: int = 1
    cont_idx: int = 0

    def __post_init__(self) -> None:
        if self.kind not in (FrameType.CFG1, FrameType.CFG2, FrameType.CFG3):
            raise FrameError(f"config kind must be CFG1, CFG2 or CFG3, got {self.kind!r}")
        if not 0 < self.time_base <= 0xFFFFFF:
            raise FrameError(f"TIME_BASE must be 1..2^24-1, got {self.time_base!r}")
        if not -32768 <= self.data_rate <= 32767 or self.data_rate == 0:
            raise FrameError(f"DATA_RATE must be a non-zero int16, got {self.data_rate!r}")
        ids = [p.idcode for p in self.pmus]
        if len(set(ids)) != len(ids):
            raise FrameError(f"PMU IDCODEs in a configuration must be unique, got {ids}")

    @property
    def frame_type(self) -> FrameType:
        """The frame type code (CFG1, CFG2 or CFG3)."""
        return self.kind

    @property
    def frames_per_second(self) -> float:
        """Reporting rate in frames per second (negative DATA_RATE = seconds per frame)."""
        return float(self.data_rate) if self.data_rate > 0 else 1.0 / -self.data_rate

    @property
    def data_frame_size(self) -> int:
        """FRAMESIZE of this stream's data frames."""
        return 16 + sum(p.block_size for p in self.pmus)

    def as_kind(self, kind: FrameType) -> ConfigFrame:
        """The same configuration as another config frame type."""
        return replace(self, kind=kind, version=max(self.version, 2) if kind == FrameType.CFG3 else self.version)


class PmuData(NamedTuple):
    """One PMU's block of a data frame, in wire values (see :meth:`PmuConfig.to_wire`).

    A named tuple (cheap to build: a 50-PMU frame decodes into 50 of them).
    """

    stat: int
    phasors: tuple[tuple[float, float], ...]
    freq: float
    dfreq: float
    analogs: tuple[float, ...] = ()
    digitals: tuple[int, ...] = ()


class DataFrame(NamedTuple):
    """Data frame: a timestamp and one :class:`PmuData` block per PMU of the configuration."""

    idcode: int
    soc: int
    fracsec: int
    pmus: tuple[PmuData, ...]
    tq: int = 0
    version: int = 1

    frame_type = FrameType.DATA


Frame = CommandFrame | HeaderFrame | ConfigFrame | DataFrame


# --------------------------------------------------------------------------- framing

def _wrap(ftype: int, version: int, idcode: int, soc: int, fracsec: int, tq: int, body: bytes) -> bytes:
    _check_common(ftype, version, idcode, soc, fracsec, tq)
    size = 16 + len(body)
    if size > MAX_FRAME:
        raise FrameError(f"FRAMESIZE {size} exceeds {MAX_FRAME}")
    head = _HEAD.pack(SYNC_BYTE, (ftype << 4) | version, size, idcode, soc, (tq << 24) | fracsec)
    msg = head + body
    return msg + _CRC.pack(crc_ccitt(msg))


def _check_common(ftype: int, version: int, idcode: int, soc: int, fracsec: int, tq: int) -> None:
    if version not in (1, 2):
        raise FrameError(f"version must be 1 (2005) or 2 (2011), got {version!r}")
    if ftype == FrameType.CFG3 and version < 2:
        raise FrameError("CFG-3 frames need version 2 (C37.118.2-2011)")
    if not 0 <= idcode <= 0xFFFF:
        raise FrameError(f"IDCODE must be 0..65535, got {idcode!r}")
    if not 0 <= soc <= 0xFFFFFFFF:
        raise FrameError(f"SOC must be 0..2^32-1, got {soc!r}")
    if not 0 <= fracsec <= 0xFFFFFF:
        raise FrameError(f"FRACSEC fraction must be 0..2^24-1, got {fracsec!r}")
    if not 0 <= tq <= 0x7F:
        raise FrameError(f"time quality byte must be 0..127 (bit 7 reserved), got {tq!r}")


def wrap_data(idcode: int, soc: int, fracsec: int, body: bytes, tq: int = 0, version: int = 1) -> bytes:
    """Fast path for a data frame from an already encoded body (PMU blocks); no range checks.

    Used by the PDC, which concatenates the PMU blocks of its inputs as received.
    """
    msg = _HEAD.pack(SYNC_BYTE, version, 16 + len(body), idcode, soc, (tq << 24) | fracsec) + body
    return msg + _CRC.pack(binascii.crc_hqx(msg, 0xFFFF))


def block_bytes(cfg_pmu: PmuConfig, block: PmuData) -> bytes:
    """Encoded bytes of one PMU block (e.g. the absent block a PDC inserts)."""
    one = ConfigFrame(idcode=cfg_pmu.idcode, pmus=(cfg_pmu,))
    return DataCodec(one).encode(DataFrame(cfg_pmu.idcode, 0, 0, (block,)))[14:-2]


def peek_header(frame: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int, int, int]:
    """Common header of a frame: (frame_type, version, framesize, idcode, soc, fracsec, tq).

    Checks SYNC only (not the CRC). Raises :class:`FrameError` when shorter than a header.
    """
    if len(frame) < 14:
        raise FrameError(f"frame of {len(frame)} bytes is shorter than the 14-byte header")
    sync, tv, size, idcode, soc, frac = _HEAD.unpack_from(frame, 0)
    if sync != SYNC_BYTE or tv & 0x80:
        raise FrameError(f"bad SYNC 0x{sync:02X}{tv:02X}")
    return (tv >> 4) & 0x7, tv & 0x0F, size, idcode, soc, frac & 0xFFFFFF, frac >> 24


def frame_type_of(frame: bytes | bytearray | memoryview) -> FrameType:
    """Frame type of a complete frame (checks SYNC)."""
    code = peek_header(frame)[0]
    try:
        return FrameType(code)
    except ValueError:
        raise FrameError(f"unknown frame type code {code} in SYNC") from None


def _check_frame(frame: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int, int]:
    """Validate SYNC, version, FRAMESIZE and CRC; return (type, version, idcode, soc, frac, tq)."""
    ftype, version, size, idcode, soc, frac, tq = peek_header(frame)
    if version not in (1, 2):
        raise FrameError(f"unsupported version {version} in SYNC (1 = 2005, 2 = 2011)")
    if size != len(frame):
        raise FrameError(f"FRAMESIZE {size} does not match the {len(frame)} bytes given")
    if size < MIN_FRAME:
        raise FrameError(f"FRAMESIZE {size} is below the minimum of {MIN_FRAME}")
    want = crc_ccitt(memoryview(frame)[:-2])
    got = (frame[-2] << 8) | frame[-1]
    if want != got:
        raise FrameError(f"CHK 0x{got:04X} does not match CRC-CCITT 0x{want:04X}")
    if ftype not in _KNOWN_TYPES:
        raise FrameError(f"unknown frame type code {ftype} in SYNC")
    return ftype, version, idcode, soc, frac, tq


_KNOWN_TYPES = frozenset(int(t) for t in FrameType)


class _Reader:
    """Bounded reader over a frame body: every read checks the remaining length."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise FrameError(f"frame too short for {what} ({n} bytes needed at offset {self.pos})")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(">" + fmt, self.take(struct.calcsize(">" + fmt), what))


# --------------------------------------------------------------------------- command / header

def _encode_command(f: CommandFrame) -> bytes:
    if not 0 <= f.command <= 0xFFFF:
        raise FrameError(f"CMD must be 0..65535, got {f.command!r}")
    return _wrap(FrameType.COMMAND, f.version, f.idcode, f.soc, f.fracsec, f.tq,
                 struct.pack(">H", f.command) + bytes(f.extended))


def _decode_command(buf: bytes, hdr: tuple) -> CommandFrame:
    _, version, idcode, soc, frac, tq = hdr
    r = _Reader(buf, 14, len(buf) - 2)
    (cmd,) = r.unpack("H", "CMD")
    ext = r.take(r.end - r.pos, "extended frame")
    return CommandFrame(idcode=idcode, command=cmd, soc=soc, fracsec=frac, tq=tq, extended=bytes(ext),
                        version=version)


def _encode_header(f: HeaderFrame) -> bytes:
    try:
        body = f.text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise FrameError(f"header text must be ASCII: {exc}") from None
    return _wrap(FrameType.HEADER, f.version, f.idcode, f.soc, f.fracsec, f.tq, body)


def _decode_header(buf: bytes, hdr: tuple) -> HeaderFrame:
    _, version, idcode, soc, frac, tq = hdr
    return HeaderFrame(idcode=idcode, text=bytes(buf[14:-2]).decode("latin-1"), soc=soc, fracsec=frac,
                       tq=tq, version=version)


# --------------------------------------------------------------------------- CFG-1/2/3

def _name16(name: str, what: str) -> bytes:
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise FrameError(f"{what} {name!r} must be ASCII") from None
    if len(raw) > 16:
        raise FrameError(f"{what} {name!r} is longer than 16 characters")
    return raw.ljust(16)


def _name_lp(name: str, what: str) -> bytes:
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError(f"{what} {name!r} is not encodable") from None
    if len(raw) > 255:
        raise FrameError(f"{what} {name!r} is longer than 255 bytes")
    return bytes([len(raw)]) + raw


def _encode_pmu_cfg12(p: PmuConfig) -> bytes:
    parts = [_name16(p.station, "STN"),
             struct.pack(">HHHHH", p.idcode, p.format_word, p.phnmr, p.annmr, p.dgnmr)]
    names = p.phasor_names + p.analog_names + p.digital_names
    parts += [_name16(n, f"PMU {p.idcode} CHNAM") for n in names]
    parts.append(struct.pack(f">{p.phnmr}I", *p.phunit))
    parts.append(struct.pack(f">{p.annmr}I", *(u & 0xFFFFFFFF for u in p.anunit)))
    parts.append(b"".join(struct.pack(">HH", a, b) for a, b in p.digunit))
    parts.append(struct.pack(">HH", 1 if p.fnom == 50 else 0, p.cfgcnt))
    return b"".join(parts)


def _encode_pmu_cfg3(p: PmuConfig) -> bytes:
    x = p.cfg3 or Cfg3Extra()
    if len(x.g_pmu_id) != 16:
        raise FrameError(f"PMU {p.idcode}: G_PMU_ID must be 16 bytes")
    phscale = x.phscale or cfg3_phscale(p)
    anscale = x.anscale or ((1.0, 0.0),) * p.annmr
    if len(phscale) != p.phnmr or len(anscale) != p.annmr:
        raise FrameError(f"PMU {p.idcode}: PHSCALE/ANSCALE counts must match PHNMR/ANNMR")
    parts = [_name_lp(p.station, "STN"), struct.pack(">H", p.idcode), bytes(x.g_pmu_id),
             struct.pack(">HHHH", p.format_word, p.phnmr, p.annmr, p.dgnmr)]
    names = p.phasor_names + p.analog_names + p.digital_names
    parts += [_name_lp(n, f"PMU {p.idcode} CHNAM") for n in names]
    parts += [struct.pack(">HBBff", fl, ty, us, sc, off) for fl, ty, us, sc, off in phscale]
    parts += [struct.pack(">ff", sc, off) for sc, off in anscale]
    parts.append(b"".join(struct.pack(">HH", a, b) for a, b in p.digunit))
    svc = x.svc_class.encode("ascii")
    if len(svc) != 1:
        raise FrameError(f"PMU {p.idcode}: SVC_CLASS must be one ASCII character")
    parts.append(struct.pack(">fff", x.lat, x.lon, x.elev) + svc + struct.pack(">ii", x.window, x.grp_dly))
    parts.append(struct.pack(">HH", 1 if p.fnom == 50 else 0, p.cfgcnt))
    return b"".join(parts)


def _encode_config(f: ConfigFrame) -> bytes:
    if f.kind == FrameType.CFG3:
        body = [struct.pack(">HIH", f.cont_idx, f.time_base, len(f.pmus))]
        body += [_encode_pmu_cfg3(p) for p in f.pmus]
    else:
        body = [struct.pack(">IH", f.time_base, len(f.pmus))]
        body += [_encode_pmu_cfg12(p) for p in f.pmus]
    body.append(struct.pack(">h", f.data_rate))
    return _wrap(f.kind, f.version, f.idcode, f.soc, f.fracsec, f.tq, b"".join(body))


def _ascii16(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip(" \x00")


def _format_flags(fmt: int) -> dict[str, bool]:
    return {"polar": bool(fmt & 1), "phasor_float": bool(fmt & 2), "analog_float": bool(fmt & 4),
            "freq_float": bool(fmt & 8)}


def _decode_pmu_cfg12(r: _Reader) -> PmuConfig:
    station = _ascii16(r.take(16, "STN"))
    idcode, fmt, phn, ann, dgn = r.unpack("HHHHH", "IDCODE/FORMAT/PHNMR/ANNMR/DGNMR")
    nnames = phn + ann + 16 * dgn
    raw = r.take(16 * nnames, f"PMU {idcode} CHNAM")
    names = tuple(_ascii16(raw[16 * i:16 * i + 16]) for i in range(nnames))
    phunit = r.unpack(f"{phn}I", f"PMU {idcode} PHUNIT")
    anunit = r.unpack(f"{ann}I", f"PMU {idcode} ANUNIT")
    dig = r.unpack(f"{2 * dgn}H", f"PMU {idcode} DIGUNIT")
    fnom, cfgcnt = r.unpack("HH", f"PMU {idcode} FNOM/CFGCNT")
    return PmuConfig(station=station, idcode=idcode, phasor_names=names[:phn],
                     analog_names=names[phn:phn + ann], digital_names=names[phn + ann:],
                     phunit=phunit, anunit=anunit, digunit=tuple(zip(dig[0::2], dig[1::2])),
                     fnom=50 if fnom & 1 else 60, cfgcnt=cfgcnt, **_format_flags(fmt))


def _lp_name(r: _Reader, what: str) -> str:
    (n,) = r.unpack("B", what)
    return r.take(n, what).decode("utf-8", errors="replace")


def _decode_pmu_cfg3(r: _Reader) -> PmuConfig:
    station = _lp_name(r, "STN")
    (idcode,) = r.unpack("H", "IDCODE")
    gid = r.take(16, f"PMU {idcode} G_PMU_ID")
    fmt, phn, ann, dgn = r.unpack("HHHH", f"PMU {idcode} FORMAT/PHNMR/ANNMR/DGNMR")
    names = tuple(_lp_name(r, f"PMU {idcode} CHNAM") for _ in range(phn + ann + 16 * dgn))
    phscale = tuple(r.unpack("HBBff", f"PMU {idcode} PHSCALE") for _ in range(phn))
    anscale = tuple(r.unpack("ff", f"PMU {idcode} ANSCALE") for _ in range(ann))
    dig = r.unpack(f"{2 * dgn}H", f"PMU {idcode} DIGUNIT")
    lat, lon, elev = r.unpack("fff", f"PMU {idcode} PMU_LAT/LON/ELEV")
    svc = r.take(1, f"PMU {idcode} SVC_CLASS").decode("latin-1")
    window, grp = r.unpack("ii", f"PMU {idcode} WINDOW/GRP_DLY")
    fnom, cfgcnt = r.unpack("HH", f"PMU {idcode} FNOM/CFGCNT")
    extra = Cfg3Extra(g_pmu_id=bytes(gid), phscale=phscale, anscale=anscale, lat=lat, lon=lon, elev=elev,
                      svc_class=svc, window=window, grp_dly=grp)
    phunit = tuple(_phunit_of(ty, sc, bool(fmt & 2)) for _, ty, _, sc, _ in phscale)
    return PmuConfig(station=station, idcode=idcode, phasor_names=names[:phn],
                     analog_names=names[phn:phn + ann], digital_names=names[phn + ann:],
                     phunit=phunit, anunit=(0,) * ann, digunit=tuple(zip(dig[0::2], dig[1::2])),
                     fnom=50 if fnom & 1 else 60, cfgcnt=cfgcnt, cfg3=extra, **_format_flags(fmt))


def _phunit_of(type_byte: int, scale: float, floats: bool) -> int:
    """The CFG-2 PHUNIT word equivalent to a CFG-3 PHSCALE entry (the scale rounded to 1e-5 units)."""
    kind = (type_byte >> 3) & 1
    if floats:
        return (kind << 24) | 1          # PHUNIT's scale is unused for floating-point phasors
    bits = round(scale * 1e5) if math.isfinite(scale) else 0
    return (kind << 24) | min(max(bits, 0), 0xFFFFFF)


def _decode_config(buf: bytes, hdr: tuple) -> ConfigFrame:
    ftype, version, idcode, soc, frac, tq = hdr
    r = _Reader(buf, 14, len(buf) - 2)
    cont = 0
    if ftype == FrameType.CFG3:
        if version < 2:
            raise FrameError("CFG-3 frame with version 1 in SYNC")
        (cont,) = r.unpack("H", "CONT_IDX")
    tb_word, num_pmu = r.unpack("IH", "TIME_BASE/NUM_PMU")
    time_base = tb_word & 0xFFFFFF
    if time_base == 0:
        raise FrameError("TIME_BASE is 0")
    decode_pmu = _decode_pmu_cfg3 if ftype == FrameType.CFG3 else _decode_pmu_cfg12
    pmus = tuple(decode_pmu(r) for _ in range(num_pmu))
    (rate,) = r.unpack("h", "DATA_RATE")
    if r.pos != r.end:
        raise FrameError(f"{r.end - r.pos} unexpected bytes after DATA_RATE (NUM_PMU={num_pmu})")
    if rate == 0:
        raise FrameError("DATA_RATE is 0")
    return ConfigFrame(idcode=idcode, pmus=pmus, data_rate=rate, time_base=time_base,
                       kind=FrameType(ftype), soc=soc, fracsec=frac, tq=tq, version=version, cont_idx=cont)


# --------------------------------------------------------------------------- data frames

def _compile(name: str, source: str, namespace: dict) -> object:
    """Define function ``name`` from generated ``source`` (made of integers and fixed names only)."""
    exec(compile(source, f"<labkit.grid.c37118 {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


def _block_names(i: int, phn: int, ann: int, dgn: int) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Local variable names of PMU block ``i``'s phasor pairs, analogs and digital words."""
    return ([(f"p{i}_{j}a", f"p{i}_{j}b") for j in range(phn)], [f"a{i}_{j}" for j in range(ann)],
            [f"d{i}_{j}" for j in range(dgn)])


def _tuple(items: Sequence[str]) -> str:
    return "(" + "".join(f"{x}, " for x in items) + ")"


def _decoder(counts: Sequence[tuple[int, int, int]], unpack: object, size: int) -> object:
    """``decode(buf, check=True) -> DataFrame | None`` (``None``: wrong size, or with ``check`` a wrong
    SYNC, version, FRAMESIZE or CHK).

    Generated per configuration: one ``struct`` unpack into local variables, then the frame's
    nested tuples built from them, with no loop, slice or zip per PMU block.
    """
    names, blocks = ["sync", "tv", "size", "idcode", "soc", "frac"], []
    for i, (phn, ann, dgn) in enumerate(counts):
        ph, an, dg = _block_names(i, phn, ann, dgn)
        names += [f"s{i}", *(x for pair in ph for x in pair), f"f{i}", f"r{i}", *an, *dg]
        # tuple.__new__(NamedTupleClass, values) is what the named tuples' own __new__ does, minus a Python call
        blocks.append(f"T(P, (s{i}, {_tuple([f'({a}, {b})' for a, b in ph])}, f{i}, r{i}, {_tuple(an)}, {_tuple(dg)}))")
    names.append("chk")
    src = (f"def decode(buf, check=True, T=tuple.__new__, P=PmuData, D=DataFrame):\n"
           f"    if len(buf) != {size}:\n"
           f"        return None\n"
           f"    {_tuple(names)} = unpack(buf)\n"
           f"    if check and (sync != 0xAA or tv not in (1, 2) or size != {size} or crc(buf, 0xFFFF)):\n"
           f"        return None\n"
           f"    return T(D, (idcode, soc, frac & 0xFFFFFF, {_tuple(blocks)}, frac >> 24, tv & 0x0F))\n")
    return _compile("decode", src, {"PmuData": PmuData, "DataFrame": DataFrame, "unpack": unpack,
                                    "crc": binascii.crc_hqx})


def _encoder(counts: Sequence[tuple[int, int, int]], pack: object, size: int) -> object:
    """``encode(frame) -> bytes``: every PMU block unpacked into local variables, one ``pack``, the CRC.

    Unpacking checks the counts: a block with too many or too few values raises ``ValueError``.
    """
    lines, values = [f"    {_tuple([f'b{i}' for i in range(len(counts))])} = pmus"], []
    for i, (phn, ann, dgn) in enumerate(counts):
        ph, an, dg = _block_names(i, phn, ann, dgn)
        lines += [f"    s{i}, ph{i}, f{i}, r{i}, an{i}, dg{i} = b{i}",
                  f"    {_tuple([f'({a}, {b})' for a, b in ph])} = ph{i}",
                  f"    {_tuple(an)} = an{i}",
                  f"    {_tuple(dg)} = dg{i}"]
        values += [f"s{i}", *(x for pair in ph for x in pair), f"f{i}", f"r{i}", *an, *dg]
    src = ("def encode(frame):\n"
           "    idcode, soc, fracsec, pmus, tq, version = frame\n"
           "    if version not in (1, 2) or not 0 <= fracsec <= 0xFFFFFF or not 0 <= tq <= 0x7F:\n"
           "        check(0, version, idcode, soc, fracsec, tq)\n"
           + "\n".join(lines) + "\n"
           f"    msg = pack(0xAA, version, {size}, idcode, soc, (tq << 24) | fracsec, {', '.join(values)})\n"
           "    return msg + chk(crc(msg, 0xFFFF))\n")
    return _compile("encode", src, {"pack": pack, "crc": binascii.crc_hqx, "chk": _CRC.pack, "check": _check_common})


@functools.lru_cache(maxsize=256)
def _compiled(body: str, counts: tuple[tuple[int, int, int], ...]) -> tuple:
    """The (encode, decode) functions of a frame layout, generated once per layout and reused."""
    whole = struct.Struct(">BBHHII" + body + "H")
    return (_encoder(counts, struct.Struct(">BBHHII" + body).pack, whole.size),
            _decoder(counts, whole.unpack, whole.size))


class DataCodec:
    """Encoder/decoder of the data frames of one stream, compiled from its configuration.

    One ``struct.Struct`` covers the whole frame (header, every PMU block, CHK), so a 50-PMU
    frame is one ``pack``/``unpack`` call plus the CRC; and two small functions generated for the
    configuration move the values between that flat tuple and the frame's nested tuples, one
    local variable per field (no per-block loop, slice or zip).

    Parameters
    ----------
    cfg
        The stream's CFG-2 (or CFG-1/CFG-3: only the PMU formats and counts matter).
    """

    def __init__(self, cfg: ConfigFrame) -> None:
        self.cfg = cfg
        body = "".join(p.block_struct for p in cfg.pmus)
        self._whole = struct.Struct(">BBHHII" + body + "H")
        self.size = self._whole.size
        if self.size > MAX_FRAME:
            raise FrameError(f"data frames of this configuration would be {self.size} bytes, over {MAX_FRAME}")
        self._counts = [(p.phnmr, p.annmr, p.dgnmr) for p in cfg.pmus]
        self._encode, self._decode = _compiled(body, tuple(self._counts))
        self.offsets = []
        off = 14
        for p in cfg.pmus:
            self.offsets.append((off, off + p.block_size))
            off += p.block_size

    def encode(self, frame: DataFrame) -> bytes:
        """Encode ``frame``; raises :class:`FrameError` when it does not fit the configuration."""
        try:
            return self._encode(frame)
        except FrameError:
            raise
        except struct.error as exc:
            raise FrameError(f"data value or header field (IDCODE, SOC) out of range: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise FrameError(self._why_not(frame, exc)) from None

    def _why_not(self, frame: DataFrame, exc: Exception) -> str:
        """What about ``frame`` does not fit the configuration (for the error message)."""
        if len(frame.pmus) != len(self._counts):
            return f"data frame has {len(frame.pmus)} PMU blocks, configuration has {len(self._counts)}"
        for p, (phn, ann, dgn), d in zip(self.cfg.pmus, self._counts, frame.pmus):
            if len(d) != 6 or len(d[1]) != phn or len(d[4]) != ann or len(d[5]) != dgn:
                return (f"PMU {p.idcode}: block counts (phasors/analogs/digitals) do not match the configuration "
                        f"({phn}/{ann}/{dgn})")
        return f"data frame does not fit the configuration: {exc}"

    def decode(self, buf: bytes, check: bool = True) -> DataFrame:
        """Decode a data frame of this stream (SYNC, FRAMESIZE and CRC are checked unless ``check=False``)."""
        frame = self._decode(buf, check)
        if frame is None:
            self._fail(buf)
        return frame

    def _fail(self, buf: bytes) -> None:
        """Raise the :class:`FrameError` naming what is wrong with ``buf``."""
        if len(buf) != self.size:
            if len(buf) >= 4 and buf[0] == SYNC_BYTE:
                raise FrameError(f"data frame FRAMESIZE {len(buf)} does not match the configuration ({self.size})")
            _check_frame(buf)
            raise FrameError(f"data frame of {len(buf)} bytes does not match the configuration ({self.size})")
        _check_frame(buf)   # raises, naming the bad field
        raise FrameError(f"expected a data frame, got frame type {(buf[1] >> 4) & 0x7}")


# --------------------------------------------------------------------------- dispatch

def encode_frame(frame: Frame, cfg: ConfigFrame | DataCodec | None = None) -> bytes:
    """Encode any frame; data frames need their stream's configuration (or a :class:`DataCodec`)."""
    if isinstance(frame, DataFrame):
        if cfg is None:
            raise FrameError("encoding a data frame needs the stream configuration")
        codec = cfg if isinstance(cfg, DataCodec) else DataCodec(cfg)
        return codec.encode(frame)
    if isinstance(frame, ConfigFrame):
        return _encode_config(frame)
    if isinstance(frame, CommandFrame):
        return _encode_command(frame)
    if isinstance(frame, HeaderFrame):
        return _encode_header(frame)
    raise FrameError(f"not a C37.118 frame object: {type(frame).__name__}")


def decode_frame(buf: bytes | bytearray | memoryview, cfg: ConfigFrame | DataCodec | None = None) -> Frame:
    """Decode one complete frame.

    Parameters
    ----------
    buf
        Exactly one frame (SYNC .. CHK).
    cfg
        The stream's configuration; required for data frames.

    Raises
    ------
    FrameError
        On any malformed input (and only then): bad SYNC, version, FRAMESIZE, CRC or body.
    """
    buf = bytes(buf)
    try:
        hdr = _check_frame(buf)
        ftype = hdr[0]
        if ftype == FrameType.DATA:
            if cfg is None:
                raise FrameError("decoding a data frame needs the stream configuration")
            codec = cfg if isinstance(cfg, DataCodec) else DataCodec(cfg)
            return codec.decode(buf, check=False)
        if ftype == FrameType.COMMAND:
            return _decode_command(buf, hdr)
        if ftype == FrameType.HEADER:
            return _decode_header(buf, hdr)
        return _decode_config(buf, hdr)
    except FrameError:
        raise
    except (struct.error, ValueError, IndexError, OverflowError, UnicodeError) as exc:
        raise FrameError(f"malformed frame: {exc}") from None


# --------------------------------------------------------------------------- stream parser

#: Second SYNC bytes a frame can start with: bit 7 reserved (0), frame type 0..5, version 1 (2005) or 2 (2011).
_SYNC2 = frozenset((t << 4) | v for t in range(6) for v in (1, 2))
#: A plausible frame start: SYNC, one of :data:`_SYNC2`, FRAMESIZE >= 16.
_CANDIDATE = re.compile(b"\\xaa[" + b"".join(b"\\x%02x" % x for x in sorted(_SYNC2)) + b"]"
                        b"(?:[\\x01-\\xff][\\x00-\\xff]|\\x00[\\x10-\\xff])", re.DOTALL)


class StreamParser:
    """Split a TCP byte stream into frames: handles frames split across reads or packed together.

    ``feed`` never raises. A frame is accepted when its SYNC, version and FRAMESIZE are plausible
    and its CHK is right; anything else is skipped (counted in :attr:`skipped_bytes`, each false
    frame start in :attr:`bad_frames`) and the parser resynchronises on the next plausible frame
    start. While a frame start claims more bytes than have arrived, a complete, CRC-valid frame
    found further on proves it false (a half frame, or garbage with a large FRAMESIZE), so a good
    stream after garbage is not held back until the claimed size has arrived.

    Resynchronisation is linear in the bytes received. Checking a false frame start costs a CRC
    over its claimed size (up to 65,535 bytes), and garbage can put a false start every two bytes,
    so such checks are paid from a *credit* of :data:`CREDIT_PER_BYTE` CRC bytes per byte received
    (capped at :data:`CREDIT_CAP`), and only while they cost at most half the credit left (the
    rest stays for the short frames of a good stream after the garbage). A false start checked
    without credit is skipped whole (its claimed bytes are dropped, paying for the check), and a
    frame start found further on without credit is not checked. A stream without garbage never
    spends credit: frames that check out cost only their own bytes. Over any stream the CRC work
    is at most about ``(CREDIT_PER_BYTE + 3) x bytes + CREDIT_CAP`` (:attr:`crc_bytes` counts it).

    ``feed(data, budget=...)`` also bounds the work of one call (CRC bytes plus
    :data:`STEP_COST` per frame start examined): it returns early with :attr:`pending` set, and
    calls with no new bytes finish the backlog. A server feeds each connection this way so that
    no connection holds the event loop for long (:mod:`labkit.grid.connection`).
    """

    #: CRC bytes of credit each received byte adds.
    CREDIT_PER_BYTE = 2
    #: Most credit a connection can bank (two largest frames).
    CREDIT_CAP = 2 * (MAX_FRAME + 1)
    #: Work units charged per frame start examined (a Python loop turn costs about a 64-byte CRC).
    STEP_COST = 64

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0                  # stream offset of _buf[0]
        self._credit = self.CREDIT_CAP
        self._ahead = 0                 # stream offset where the look-ahead scan resumes
        self._deferred: list[tuple[int, int]] = []   # look-ahead starts not complete yet: (end, start)
        self._work = 0
        self._limit = 0
        self.skipped_bytes = 0
        self.bad_frames = 0
        self.frames = 0
        self.crc_bytes = 0
        self.pending = False

    def feed(self, data: bytes | bytearray | memoryview = b"", budget: int | None = None,
             max_frames: int | None = None) -> list[bytes]:
        """Add received bytes; return the complete, CRC-valid frames now available, in order.

        Parameters
        ----------
        data
            Bytes just received (may be empty: then only the backlog is worked on).
        budget
            Stop after about this much work (see the class docstring); ``None`` = no bound.
        max_frames
            Stop after returning this many frames; ``None`` = no bound.
        """
        buf = self._buf
        if data:
            buf += data
            self._credit = min(self.CREDIT_CAP, self._credit + self.CREDIT_PER_BYTE * len(data))
        self._work = 0
        self._limit = budget if budget is not None else 1 << 62
        most = max_frames if max_frames is not None else 1 << 62
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        self.pending = False
        while n - pos >= 4:
            if self._work >= self._limit or len(out) >= most:
                self.pending = True
                break
            self._work += self.STEP_COST
            size = (buf[pos + 2] << 8) | buf[pos + 3]
            if buf[pos] != SYNC_BYTE or buf[pos + 1] not in _SYNC2 or size < MIN_FRAME:
                nxt = self._next_start(buf, pos + 1, n)
                self.skipped_bytes += nxt - pos
                pos = nxt
                continue
            end = pos + size
            if end > n:
                nxt = self._look_ahead(buf, pos, n, end)
                if nxt < 0:
                    self.pending = self._work >= self._limit
                    break
                self.bad_frames += 1
                self.skipped_bytes += nxt - pos
                pos = nxt
                continue
            self._work += size
            self.crc_bytes += size
            if binascii.crc_hqx(memoryview(buf)[pos:end], 0xFFFF) == 0:   # CHK appended: remainder 0
                out.append(bytes(buf[pos:end]))
                pos = end
                continue
            self.bad_frames += 1
            cost = max(size, self.STEP_COST)
            if self._credit >= 2 * cost:        # paid (half the credit kept for the look-ahead): look for
                self._credit -= cost            # the next frame start inside the false one
                nxt = self._next_start(buf, pos + 1, n)
            else:                               # no credit: the claimed bytes pay for the check
                nxt = end
            self.skipped_bytes += nxt - pos
            pos = nxt
        if pos:
            del buf[:pos]
            self._base += pos
        self.frames += len(out)
        return out

    @staticmethod
    def _next_start(buf: bytearray, start: int, n: int) -> int:
        """Offset of the next plausible frame start at or after ``start`` (or where one may still begin)."""
        m = _CANDIDATE.search(buf, start)
        if m is not None:
            return m.start()
        tail = buf.find(SYNC_BYTE, max(start, n - 3))   # a frame start cut off by the end of the buffer
        return n if tail < 0 else tail

    def _look_ahead(self, buf: bytearray, pos: int, n: int, pos_end: int) -> int:
        """Offset of a complete, CRC-valid frame after ``pos`` that proves the frame start at ``pos``
        false, or -1. Frame starts are examined once each (across calls); those not complete yet are
        checked when they are, if they complete before the one at ``pos`` does."""
        base, deferred = self._base, self._deferred
        while deferred and deferred[0][0] - base <= n:
            end, start = heapq.heappop(deferred)
            q = start - base
            if q > pos and self._check_ahead(buf, q, end - base):
                return q
        q = max(self._ahead - base, pos + 1)
        while True:
            if self._work >= self._limit:
                self._ahead = base + q
                return -1
            m = _CANDIDATE.search(buf, q)
            if m is None:
                self._ahead = base + max(q, n - 3)
                return -1
            q = m.start()
            self._work += self.STEP_COST
            end = q + ((buf[q + 2] << 8) | buf[q + 3])
            if end <= n:
                if self._check_ahead(buf, q, end):
                    self._ahead = base + q + 1
                    return q
            elif end < pos_end:   # completes before the start at pos does: worth checking then
                heapq.heappush(deferred, (base + end, base + q))
            q += 1

    def _check_ahead(self, buf: bytearray, q: int, end: int) -> bool:
        """CRC check of a look-ahead frame start, if half the credit pays for it (else: not a frame)."""
        cost = max(end - q, self.STEP_COST)
        if 2 * cost > self._credit:
            return False
        self._work += end - q
        self.crc_bytes += end - q
        if binascii.crc_hqx(memoryview(buf)[q:end], 0xFFFF) == 0:
            return True
        self._credit -= cost
        return False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame (or for the next call, see :attr:`pending`)."""
        return len(self._buf)


def default_pmu_config(station: str, idcode: int, phasor_names: Sequence[str], *, fnom: int = 50,
                       polar: bool = False, phasor_float: bool = True, freq_float: bool = True,
                       phunit: Sequence[int] = ()) -> PmuConfig:
    """A PMU configuration with float phasors and no analogs/digitals (what labkit PMUs send)."""
    return PmuConfig(station=station, idcode=idcode, phasor_names=tuple(phasor_names), polar=polar,
                     phasor_float=phasor_float, analog_float=True, freq_float=freq_float,
                     phunit=tuple(phunit), fnom=fnom)

