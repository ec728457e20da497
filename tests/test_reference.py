"""labkit.reference: the thesis' numbers are reachable and compared honestly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labkit import reference

pytestmark = pytest.mark.unit


def test_published_values() -> None:
    avg = reference.published("latency_ms.table_7_2_network.avg", "ms", n=reference.THESIS_PING_N)
    assert (avg.mean, avg.std) == (0.721, 0.581)
    median = reference.published("reaction_s.figure_7_2_virtual_node_not_ready_median", "s")
    assert median.mean == 9.75 and median.std is None
    with pytest.raises(KeyError, match="stopped at 'table_9'"):
        reference.lookup("latency_ms.table_9")


def test_liqo_overhead_is_the_difference_of_tables_7_4_and_7_3() -> None:
    t73 = reference.lookup("latency_ms.table_7_3_same_cluster.avg")[0]
    t74 = reference.lookup("latency_ms.table_7_4_liqo_peered.avg")[0]
    assert reference.lookup("latency_ms.table_7_5_liqo_overhead")[0] == pytest.approx(t74 - t73)


def test_compare_puts_differences_beside_and_tests_nothing() -> None:
    ref = reference.published("latency_ms.table_7_2_network.avg", "ms", n=1000)
    table = reference.compare([(ref, 0.721, 0.581, 1000), (ref, 1.5, 0.5, 1000), (ref, 0.7, None, 1)])
    assert table.loc[1, "diff"] == pytest.approx(0.779) and table.loc[1, "ratio"] == pytest.approx(1.5 / 0.721)
    assert "welch_p" not in table and pd.isna(table.loc[2, "labkit_std"])
    assert list(reference.compare([]).columns)[:3] == ["key", "unit", "thesis_mean"]


def test_the_thesis_avg_spreads_are_the_rms_of_the_leaves_except_table_7_3() -> None:
    """Why no test is run on the Avg rows: Table 7.3's Avg std is not a spread of its probes."""
    for table, consistent in (("table_7_2_network", True), ("table_7_3_same_cluster", False),
                              ("table_7_4_liqo_peered", True)):
        leaves = [reference.lookup(f"latency_ms.{table}.leaf-{i}")[1] for i in (1, 2, 3)]
        rms = float(np.sqrt(np.mean(np.square(leaves))))
        assert (abs(rms - reference.lookup(f"latency_ms.{table}.avg")[1]) < 0.002) == consistent, (table, rms)
