"""Fidelity: per figure, a comparison with the thesis that can fail, and the differences that remain.

Every figure of the thesis differs from ours for up to three reasons: the **environment** (one
machine of network namespaces instead of five Crownlabs VMs), the **implementation** (a
stand-in where the thesis' software cannot run here) and the **method** (settings and
protocol). The kit follows the thesis' method where it can (its ``thesis`` profiles); what is
left is said here, per figure, as data:

- a :class:`Check` states what we expect to measure *given* the thesis' value and the known
  differences (a band, with the reason for each edge), what we measured, and whether it lies in
  the band. A check that cannot fail is not a check: :func:`within` refuses a band without an
  edge, and an experiment's ``fidelity`` is tested with tables that fail it.
- a :class:`Method` states, per figure, the thesis' method, ours in this run, and the
  differences of environment and implementation that remain.

An experiment module's ``fidelity(tables)`` and ``methods(tables)`` return them;
:func:`labkit.experiments.record` writes them to ``run_dir/fidelity/<experiment>.parquet`` and
``run_dir/fidelity/methods/<experiment>.parquet`` (:func:`write`), and the report reads them
back (:func:`read_checks`, :func:`read_methods`, :func:`figure_verdicts`).

Checks are not bounds (:mod:`labkit.bounds`): a bound is an env's limit that fails the run; a
check says whether a figure reproduces the thesis, and a failed check is a finding the report
shows beside the figure. Where a check's expectation comes from is its ``basis``:

- ``thesis``: the thesis' published value, moved by the named differences of the environment;
- ``software``: the documented behaviour of the software the thesis names (Liqo v0.10.2's
  timers, Kubernetes 1.24's defaults);
- ``formula``: a formula of the thesis (eq. 5.1), for sizes or experiments the thesis did not
  measure: no measured thesis value exists for those;
- ``protocol``: whether the run followed the thesis' measurement protocol;
- ``kit``: a property of the kit's own measurement (e.g. which data path carried the probes).

Example
-------
>>> c = within("Fig. 7.2", "NotReady delay, median", 9.6, low=8.0, high=11.4, unit="s", basis="software",
...            reason="Liqo v0.10.2: no pong for 2 s x 5, checked every 1 s")
>>> c.verdict, c.expected
('pass', '8–11.4 s')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import pandas as pd

__all__ = ["Basis", "Check", "Method", "Verdict", "figure_verdicts", "holds", "read_checks", "read_methods",
           "within", "write"]

#: Where a check's expectation comes from (module docstring).
Basis = Literal["thesis", "software", "formula", "protocol", "kit"]
BASES: tuple[str, ...] = ("thesis", "software", "formula", "protocol", "kit")
#: A check's outcome: ``not measured`` when the run has no value for it.
Verdict = Literal["pass", "fail", "not measured"]

FIDELITY_DIR = "fidelity"
METHODS_DIR = "methods"


@dataclass(frozen=True)
class Check:
    """One comparison of a figure with the thesis, that can fail.

    Attributes
    ----------
    figure
        The figure or table it is about, as :data:`labkit.experiments.EXPERIMENTS` names it.
    name
        What is compared, readable (``"NotReady delay, median (0.4 s poll), pair"``).
    expected
        The band we expect, readable (``"8–11.4 s"``, ``"≤ 0.721 ms"``, ``"= 6"``), or the
        property (``"every NotReady from the tunnel check"``).
    observed
        Our value (``None``: not measured in this run).
    unit
        Of ``observed`` and the band.
    passed
        Whether ``observed`` meets ``expected`` (``None``: not measured).
    reason
        Why we expect that: the thesis' value and the differences that move it, in one line.
    basis
        Where the expectation comes from (:data:`Basis`).
    thesis
        The thesis' published value as it reads (``"9.75 s (median)"``); ``""`` where the
        thesis published none (a ``formula`` check names its formula in ``expected``).
    spread
        The spread of ``observed`` as it reads (``"IQR 9.4–10.1"``, ``"± 0.03"``); ``""`` when none.
    n
        Samples behind ``observed`` (``None``: not a sample statistic).
    """

    figure: str
    name: str
    expected: str
    observed: float | None
    unit: str
    passed: bool | None
    reason: str
    basis: Basis = "thesis"
    thesis: str = ""
    spread: str = ""
    n: int | None = None

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"check {self.name!r}: basis {self.basis!r} is not one of {', '.join(BASES)}")
        if not self.figure or not self.name or not self.reason:
            raise ValueError(f"a check needs a figure, a name and a reason: {self!r}")

    @property
    def verdict(self) -> Verdict:
        """``pass``, ``fail`` or ``not measured``."""
        return "not measured" if self.passed is None else "pass" if self.passed else "fail"

    def __str__(self) -> str:
        value = "not measured" if self.observed is None else f"{self.observed:.4g} {self.unit}".strip()
        return f"{self.figure}, {self.name}: {value}, expected {self.expected}: {self.verdict} ({self.reason})"


@dataclass(frozen=True)
class Method:
    """How one figure was measured: the thesis' way, ours in this run, and what still differs.

    Attributes
    ----------
    figure
        As :class:`Check`.
    thesis
        The thesis' method, as its text gives it (and where it is silent, said so).
    ours
        Ours in this run (profile, counts, intervals, which software ran).
    environment
        Differences of the environment that remain (one machine vs five VMs, ...).
    implementation
        Differences of implementation that remain (a stand-in for the thesis' software), or
        ``"none"`` when the thesis' own software ran.
    """

    figure: str
    thesis: str
    ours: str
    environment: str
    implementation: str


def _number(value: float | None) -> float | None:
    """``value`` as a float, ``None`` for a missing or NaN value."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def band_text(low: float | None, high: float | None, unit: str, strict_low: bool = False) -> str:
    """A band as it reads: ``"8–11 s"``, ``"≤ 0.721 ms"``, ``"> 0 and ≤ 1.5 ms"``, ``"= 6 links"``."""
    suffix = f" {unit}" if unit else ""
    if low is None and high is None:
        raise ValueError("a band needs a low or a high edge")
    if low is not None and high is not None:
        if strict_low:
            return f"> {_fmt(low)} and ≤ {_fmt(high)}{suffix}"
        return f"= {_fmt(low)}{suffix}" if low == high else f"{_fmt(low)}–{_fmt(high)}{suffix}"
    if high is not None:
        return f"≤ {_fmt(high)}{suffix}"
    return f"{'>' if strict_low else '≥'} {_fmt(low)}{suffix}"  # type: ignore[arg-type]


def within(figure: str, name: str, observed: float | None, *, low: float | None = None,
           high: float | None = None, unit: str, reason: str, basis: Basis = "thesis", thesis: str = "",
           spread: str = "", n: int | None = None, strict_low: bool = False) -> Check:
    """A check that ``observed`` lies in ``[low, high]`` (``(low, high]`` with ``strict_low``).

    A missing or NaN ``observed`` gives a check ``not measured``.

    Raises
    ------
    ValueError
        When neither edge is given (a check that cannot fail) or ``low > high``.
    """
    if low is None and high is None:
        raise ValueError(f"check {name!r} of {figure}: a band needs a low or a high edge, or it cannot fail")
    if low is not None and high is not None and low > high:
        raise ValueError(f"check {name!r} of {figure}: low {low} > high {high}")
    value = _number(observed)
    passed = None
    if value is not None:
        above = low is None or (value > low if strict_low else value >= low)
        passed = above and (high is None or value <= high)
    return Check(figure, name, band_text(low, high, unit, strict_low), value, unit, passed, reason, basis, thesis,
                 spread, n)


def holds(figure: str, name: str, passed: bool | None, *, expected: str, reason: str, observed: float | None = None,
          unit: str = "", basis: Basis = "kit", thesis: str = "", spread: str = "", n: int | None = None) -> Check:
    """A check of a property (``passed``: whether it holds; ``None``: not measured), e.g. which path fired."""
    return Check(figure, name, expected, _number(observed), unit, None if passed is None else bool(passed), reason,
                 basis, thesis, spread, n)


CHECK_COLUMNS = ["experiment", *(f.name for f in fields(Check)), "verdict"]
METHOD_COLUMNS = ["experiment", *(f.name for f in fields(Method))]


def checks_frame(checks: Iterable[Check], experiment: str = "") -> pd.DataFrame:
    """Checks as a table: one row per check, its fields and its ``verdict``."""
    rows = [{"experiment": experiment, **asdict(c), "verdict": c.verdict} for c in checks]
    frame = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    return frame.astype({"observed": "float64", "passed": "boolean", "n": "Int64"})


def methods_frame(methods: Iterable[Method], experiment: str = "") -> pd.DataFrame:
    """Methods as a table: one row per figure."""
    return pd.DataFrame([{"experiment": experiment, **asdict(m)} for m in methods], columns=METHOD_COLUMNS)


def write(run_dir: str | Path, experiment: str, checks: Sequence[Check], methods: Sequence[Method]) -> Path:
    """Write ``experiment``'s checks and methods under ``run_dir/fidelity/``; return the checks' path."""
    base = Path(run_dir) / FIDELITY_DIR
    (base / METHODS_DIR).mkdir(parents=True, exist_ok=True)
    path = base / f"{experiment}.parquet"
    checks_frame(checks, experiment).to_parquet(path, index=False)
    methods_frame(methods, experiment).to_parquet(base / METHODS_DIR / f"{experiment}.parquet", index=False)
    return path


def _read(directory: Path, columns: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted(directory.glob("*.parquet"))]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def read_checks(run_dir: str | Path) -> pd.DataFrame:
    """Every check a run wrote (:data:`CHECK_COLUMNS`; empty when none)."""
    frame = _read(Path(run_dir) / FIDELITY_DIR, CHECK_COLUMNS)
    return frame.astype({"observed": "float64", "passed": "boolean", "n": "Int64"})


def read_methods(run_dir: str | Path) -> pd.DataFrame:
    """Every method row a run wrote (:data:`METHOD_COLUMNS`; empty when none)."""
    return _read(Path(run_dir) / FIDELITY_DIR / METHODS_DIR, METHOD_COLUMNS)


def verdict_of(checks: pd.DataFrame) -> str:
    """One figure's verdict from its checks: ``fail`` when one fails, ``pass`` when all measured pass."""
    if checks.empty:
        return "no check"
    measured = checks[checks["verdict"] != "not measured"]
    failed = checks[checks["verdict"] == "fail"]
    if not failed.empty:
        return f"fail ({len(failed)} of {len(measured)})"
    if measured.empty:
        return "not measured"
    return f"pass ({len(measured)} of {len(measured)})"


def figure_verdicts(checks: pd.DataFrame, methods: pd.DataFrame, figures: Sequence[str] = ()) -> pd.DataFrame:
    """Per figure: the thesis' method, ours, the remaining differences and the checks' verdict.

    ``figures`` orders the rows (and adds figures that have neither method nor check); the
    rest follow in the order they appear.
    """
    order = list(dict.fromkeys([*figures, *methods["figure"], *checks["figure"]]))
    rows = []
    for figure in order:
        method = methods[methods["figure"] == figure]
        first = method.iloc[0] if not method.empty else None
        mine = checks[checks["figure"] == figure]
        failed = "; ".join(mine.loc[mine["verdict"] == "fail", "name"])
        rows.append({"figure": figure,
                     "thesis' method": first["thesis"] if first is not None else "not recorded",
                     "ours": first["ours"] if first is not None else "not recorded",
                     "environment": first["environment"] if first is not None else "not recorded",
                     "implementation": first["implementation"] if first is not None else "not recorded",
                     "verdict": verdict_of(mine), "failed checks": failed})
    return pd.DataFrame(rows, columns=["figure", "thesis' method", "ours", "environment", "implementation",
                                       "verdict", "failed checks"])
