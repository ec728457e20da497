"""The results contract: tidy long-form tables written to ``data/<run_id>/<name>.parquet``.

Every collector emits rows with the same key columns (:data:`KEY_COLUMNS`), plus any
extra label columns it needs. Figures are drawn straight from these long-form tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

#: Key columns every results table carries, in this order.
KEY_COLUMNS: tuple[str, ...] = ("run_id", "scenario", "step", "cluster", "metric", "unit", "t", "value")

#: Column dtypes of the key columns (``t`` is UTC wall-clock time).
KEY_DTYPES: dict[str, str] = {
    "run_id": "string",
    "scenario": "string",
    "step": "string",
    "cluster": "string",
    "metric": "string",
    "unit": "string",
    "t": "datetime64[ns, UTC]",
    "value": "float64",
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class ResultsError(ValueError):
    """A results table breaks the contract (missing key column, bad name, bad dtype)."""


def tidy(rows: pd.DataFrame | Iterable[Mapping[str, Any]], **defaults: Any) -> pd.DataFrame:
    """Return ``rows`` as a tidy table with the key columns first and canonical dtypes.

    Parameters
    ----------
    rows
        A DataFrame or an iterable of row mappings.
    **defaults
        Values for key columns that the rows do not carry (for example ``run_id=...``).

    Returns
    -------
    pandas.DataFrame
        Key columns in :data:`KEY_COLUMNS` order, then the extra label columns.

    Raises
    ------
    ResultsError
        When a key column is neither in ``rows`` nor in ``defaults``.
    """
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:  # a collector that saw nothing still returns a well-formed table
        for column in ("t", "value"):
            if column not in frame.columns:
                frame[column] = pd.Series(dtype="float64")
    for column, value in defaults.items():
        if column not in frame.columns:
            frame[column] = value
    missing = [c for c in KEY_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(f"results table lacks key column(s) {missing}; pass them as rows or defaults")
    frame["t"] = pd.to_datetime(frame["t"], utc=True)
    frame = frame.astype({c: d for c, d in KEY_DTYPES.items() if c != "t"})
    extras = [c for c in frame.columns if c not in KEY_COLUMNS]
    return frame[list(KEY_COLUMNS) + extras].reset_index(drop=True)


def table_path(run_dir: str | Path, name: str) -> Path:
    """Path of results table ``name`` inside ``run_dir`` (names are lower-case slugs)."""
    if not _NAME.match(name):
        raise ResultsError(f"table name {name!r} must match {_NAME.pattern}")
    return Path(run_dir) / f"{name}.parquet"


def write_table(run_dir: str | Path, name: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]],
                **defaults: Any) -> Path:
    """Validate ``rows`` with :func:`tidy` and write them to ``<run_dir>/<name>.parquet``."""
    frame = tidy(rows, **defaults)
    path = table_path(run_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, engine="pyarrow", index=False)
    return path


def read_table(run_dir: str | Path, name: str) -> pd.DataFrame:
    """Read a table written by :func:`write_table`; raises ``FileNotFoundError`` naming the path."""
    path = table_path(run_dir, name)
    if not path.exists():
        raise FileNotFoundError(f"no results table {name!r} in {run_dir} (looked for {path})")
    return pd.read_parquet(path, engine="pyarrow")
