"""labkit.report: the manifest summary, the figure gallery and the comparisons of a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import reference, report
from labkit.manifest import Manifest

pytestmark = pytest.mark.unit


def test_summary_gallery_and_comparisons(tmp_path: Path) -> None:
    Manifest(run_id="r9", env="thesis", profile="quick", seed=3).write(tmp_path)
    summary = report.run_summary(tmp_path)
    assert summary.loc["run id", "value"] == "r9" and summary.loc["seed", "value"] == "3"
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    assert [p.name for p in report.figures(tmp_path)] == ["a.png", "b.png"]
    assert reference.read_comparisons(tmp_path).empty
    ref = reference.published("reaction_s.figure_7_2_virtual_node_not_ready_median", "s")
    reference.write_comparison(tmp_path, "reaction", reference.compare([(ref, 10.2, 0.4, 10)]))
    both = reference.read_comparisons(tmp_path)
    assert both.loc[0, "experiment"] == "reaction" and both.loc[0, "diff"] == pytest.approx(0.45)
