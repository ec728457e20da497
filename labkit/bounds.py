"""Bounds: limits a scenario declares on what its run measures, checked after the run.

An env file lists ``bounds:`` (:class:`labkit.config.Bound`: ``metric``, ``min``/``max``,
``why``). Experiment notebooks record their headline numbers with :func:`record`, into
``<run_dir>/metrics/<experiment>.json``; after the pipeline the runner calls :func:`check`,
stores each :class:`Verdict` in the manifest's ``thresholds`` and fails the run (``invoke lab``
exits non-zero) when a measured value is out of its bound. A bound whose metric was not
measured in this run (its notebook did not run, e.g. ``--only``) is reported ``not measured``
and does not fail the run.

Example
-------
>>> record(run_dir, "pod_failure", downtime_s_median=17.2, repetitions=3)  # in the notebook
>>> [v.status for v in check(load_env("embedded").bounds, run_dir)]          # in the runner
['pass']
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from labkit.config import Bound

METRICS_DIR = "metrics"
_NAME = re.compile(r"^[a-z0-9_-]+$")
_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


class BoundsError(ValueError):
    """A metric name or value cannot be recorded (the message names it)."""


@dataclass(frozen=True)
class Verdict:
    """One bound checked against one run."""

    metric: str
    value: float | None
    min: float | None
    max: float | None
    status: Literal["pass", "fail", "not measured"]
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest."""
        return asdict(self)

    def __str__(self) -> str:
        limits = " and ".join(f"{name} {limit:g}" for name, limit in (("≥", self.min), ("≤", self.max))
                              if limit is not None)
        value = "not measured" if self.value is None else f"{self.value:g}"
        return f"{self.metric} = {value} (bound {limits}): {self.status}"


def record(run_dir: str | Path, experiment: str, **values: float) -> Path:
    """Record ``experiment``'s headline numbers (merged into ``metrics/<experiment>.json``).

    Raises
    ------
    BoundsError
        On a bad experiment or metric name, or a value that is not a finite number.
    """
    if not _NAME.match(experiment):
        raise BoundsError(f"experiment name {experiment!r}: lower-case letters, digits, '-' and '_' only")
    clean: dict[str, float] = {}
    for key, value in values.items():
        if not _KEY.match(key):
            raise BoundsError(f"{experiment}.{key}: metric names use letters, digits, '.', '-' and '_'")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise BoundsError(f"{experiment}.{key} = {value!r}: expected a number") from None
        if not math.isfinite(number):
            raise BoundsError(f"{experiment}.{key} = {value!r}: expected a finite number")
        clean[key] = number
    path = Path(run_dir) / METRICS_DIR / f"{experiment}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**(json.loads(path.read_text()) if path.exists() else {}), **clean}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def measured(run_dir: str | Path) -> dict[str, float]:
    """Every metric recorded in ``run_dir``, as ``{"<experiment>.<name>": value}``."""
    out: dict[str, float] = {}
    for path in sorted((Path(run_dir) / METRICS_DIR).glob("*.json")):
        out.update({f"{path.stem}.{k}": float(v) for k, v in json.loads(path.read_text()).items()})
    return out


def check(bounds: Iterable[Bound], run_dir: str | Path) -> list[Verdict]:
    """Each bound's verdict against the metrics recorded in ``run_dir``."""
    values = measured(run_dir)
    verdicts = []
    for bound in bounds:
        value = values.get(bound.metric)
        if value is None:
            status: Literal["pass", "fail", "not measured"] = "not measured"
        elif (bound.min is not None and value < bound.min) or (bound.max is not None and value > bound.max):
            status = "fail"
        else:
            status = "pass"
        verdicts.append(Verdict(bound.metric, value, bound.min, bound.max, status, bound.why))
    return verdicts


def failed(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """The verdicts that fail the run."""
    return [v for v in verdicts if v.status == "fail"]
