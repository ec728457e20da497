"""labkit.results: the tidy table contract."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from labkit.results import KEY_COLUMNS, ResultsError, read_table, tidy, write_table

pytestmark = pytest.mark.unit

KEYS = dict(run_id="r1", scenario="s", step="measure", cluster="root", unit="ms")


def test_tidy_orders_key_columns_first_and_keeps_labels() -> None:
    frame = tidy([{"t": 1.5e9, "value": 2, "metric": "rtt", "probe": 7}], **KEYS)
    assert list(frame.columns) == [*KEY_COLUMNS, "probe"]
    assert str(frame["t"].dtype) == "datetime64[ns, UTC]"
    assert frame["value"].dtype == "float64"


def test_rows_override_defaults() -> None:
    frame = tidy([{"t": 0, "value": 1, "metric": "m", "cluster": "leaf-1"}], **KEYS)
    assert frame.loc[0, "cluster"] == "leaf-1"


def test_missing_key_column_is_named() -> None:
    with pytest.raises(ResultsError, match=r"\['metric', 'unit'\]"):
        tidy([{"t": 0, "value": 1}], run_id="r", scenario="s", step="x", cluster="c")


def test_round_trip(tmp_path: Path) -> None:
    path = write_table(tmp_path, "rtt", pd.DataFrame({"t": [0, 1], "value": [0.5, 0.7]}), metric="rtt", **KEYS)
    assert path == tmp_path / "rtt.parquet"
    back = read_table(tmp_path, "rtt")
    assert back["value"].tolist() == [0.5, 0.7]
    assert list(back.columns[: len(KEY_COLUMNS)]) == list(KEY_COLUMNS)


@pytest.mark.parametrize("name", ["../x", "Bad", "", "a b"])
def test_bad_table_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ResultsError, match="must match"):
        write_table(tmp_path, name, [{"t": 0, "value": 1}], metric="m", **KEYS)


def test_missing_table_names_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no results table 'nope'"):
        read_table(tmp_path, "nope")
