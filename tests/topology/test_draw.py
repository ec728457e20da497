"""Figures are drawn from plans: files appear, and the links table holds eq. 5.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.config import load_env
from labkit.results import tidy
from labkit.topology import draw, peering, plan

pytestmark = pytest.mark.unit


def test_links_table_is_tidy_and_holds_the_formulas() -> None:
    table = draw.links_table([2, 10, 50, 6000], domain_size=20, plan_up_to=50, run_id="r")
    tidy(table)  # the results contract
    by = table.set_index(["model", "n"])["value"]
    assert by[("full mesh", 6000)] == 6000 * 5999 / 2
    assert by[("star", 50)] == 49
    assert by[("partial mesh star", 50)] == peering.partial_mesh_star_links(50, 20)
    sources = table.set_index(["model", "n"])["source"]
    assert sources[("partial mesh star", 50)] == "plan" and sources[("partial mesh star", 6000)] == "formula"


def test_testbed_and_links_figures_are_written(tmp_path: Path) -> None:
    png = draw.draw_testbed(plan(load_env("thesis")), tmp_path / "fig-7-1-testbed.png")
    assert png.stat().st_size > 5000 and png.with_suffix(".svg").stat().st_size > 5000
    links = draw.draw_links_vs_n(draw.links_table([2, 10, 100]), tmp_path / "fig-5-1-links-vs-n.png")
    assert links.stat().st_size > 5000


def test_layouts_place_every_cluster() -> None:
    result = plan(load_env("multilevel"))
    tree = draw.tree_layout(result)
    assert set(tree) == {c.name for c in result.env.clusters}
    assert tree["acc"][1] > tree["p-1"][1] > tree["s-1-1"][1]  # ACC on top, secondaries at the bottom
    radial = draw.radial_layout(plan(load_env("thesis")))
    assert radial["root"] == (0.0, 0.0) and len(set(radial.values())) == 5
