"""labkit.fidelity: checks that can fail, written and read back, and the per-figure verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from labkit import fidelity
from labkit.experiments import EXPERIMENTS, fidelity_of

pytestmark = pytest.mark.unit


def test_a_band_passes_inside_and_fails_outside() -> None:
    def check(value: float | None) -> fidelity.Check:
        return fidelity.within("Fig. 7.2", "median", value, low=8.0, high=11.0, unit="s", reason="Liqo's timers",
                               basis="software")

    assert check(9.75).verdict == "pass" and check(8.0).passed and check(11.0).passed
    assert check(7.99).verdict == "fail" and check(11.01).verdict == "fail"
    assert check(None).verdict == "not measured" and check(math.nan).observed is None
    assert check(9.0).expected == "8–11 s"


def test_edges_read_as_they_are_checked() -> None:
    high = fidelity.within("Table 7.2", "RTT", 0.9, high=0.721, unit="ms", reason="r")
    assert (high.expected, high.verdict) == ("≤ 0.721 ms", "fail")
    strict = fidelity.within("Table 7.5", "overhead", 0.0, low=0.0, high=1.5, unit="ms", reason="r", strict_low=True)
    assert (strict.expected, strict.verdict) == ("> 0 and ≤ 1.5 ms", "fail")
    assert fidelity.within("x", "y", 0.1, low=0.0, unit="ms", reason="r", strict_low=True).expected == "> 0 ms"
    equal = fidelity.within("eq. 5.1", "links", 5, low=6, high=6, unit="links", reason="r", basis="formula")
    assert (equal.expected, equal.verdict) == ("= 6 links", "fail")


def test_a_check_that_cannot_fail_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot fail"):
        fidelity.within("Fig. 7.2", "median", 9.0, unit="s", reason="r")
    with pytest.raises(ValueError, match="low 3 > high 2"):
        fidelity.within("Fig. 7.2", "median", 9.0, low=3, high=2, unit="s", reason="r")
    with pytest.raises(ValueError, match="basis 'guess'"):
        fidelity.holds("Fig. 7.2", "x", True, expected="e", reason="r", basis="guess")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a figure, a name and a reason"):
        fidelity.holds("Fig. 7.2", "x", True, expected="e", reason="")


def test_checks_and_methods_round_trip_and_give_one_verdict_per_figure(tmp_path: Path) -> None:
    checks = [fidelity.within("Fig. 7.2", "median, pair", 9.6, low=8, high=11.4, unit="s", reason="timers",
                              basis="software", thesis="9.75 s (median)", spread="IQR 9.1–10.2", n=20),
              fidelity.holds("Fig. 7.2", "tunnel path", False, expected="every NotReady from the tunnel check",
                             reason="the API path fires only after 20 s", observed=3, unit="of 20 not"),
              fidelity.holds("Fig. 7.2", "other", None, expected="e", reason="r")]
    methods = [fidelity.Method("Fig. 7.2", "kubectl get node every 0.4 s", "watch and 0.4 s poll",
                               "one machine", "none")]
    fidelity.write(tmp_path, "reaction", checks, methods)
    fidelity.write(tmp_path, "island", [], [])
    read = fidelity.read_checks(tmp_path)
    assert list(read["verdict"]) == ["pass", "fail", "not measured"]
    assert read.loc[0, "n"] == 20 and read.loc[0, "thesis"] == "9.75 s (median)" and read["passed"].isna().iloc[2]
    table = fidelity.figure_verdicts(read, fidelity.read_methods(tmp_path), ["Fig. 7.2", "Fig. 6.2"]).set_index("figure")
    assert table.loc["Fig. 7.2", "verdict"] == "fail (1 of 2)" and table.loc["Fig. 7.2", "failed checks"] == "tunnel path"
    assert table.loc["Fig. 7.2", "implementation"] == "none"
    assert (table.loc["Fig. 6.2", "verdict"], table.loc["Fig. 6.2", "ours"]) == ("no check", "not recorded")


def test_an_empty_run_reads_as_empty_tables(tmp_path: Path) -> None:
    assert fidelity.read_checks(tmp_path).empty and fidelity.read_methods(tmp_path).empty
    assert fidelity.verdict_of(fidelity.read_checks(tmp_path)) == "no check"


def test_a_check_naming_a_figure_the_experiment_does_not_draw_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    exp = EXPERIMENTS["reaction"]
    stray = fidelity.holds("Fig. 7.9", "x", True, expected="e", reason="r")
    monkeypatch.setattr(exp.module, "fidelity", lambda tables: [stray])
    monkeypatch.setattr(exp.module, "methods", lambda tables: [])
    with pytest.raises(RuntimeError, match=r"names figures \['Fig. 7.9'\]"):
        fidelity_of(exp, {})


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_has_fidelity_and_methods(name: str) -> None:
    module = EXPERIMENTS[name].module
    assert callable(module.fidelity) and callable(module.methods)


def test_record_writes_the_checks_and_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import labkit.experiments as experiments
    from labkit import results

    rows = results.tidy([{"t": pd.Timestamp("2026-01-01", tz="UTC"), "metric": "not_ready_delay", "unit": "s",
                          "value": 9.5, "repetition": 0, "method": "poll", "reason": "KubeletNotReady",
                          "path": "tunnel", "node": "liqo-leaf-1"}], step="provider-disconnect", cluster="root",
                        run_id="r", scenario="reaction")
    monkeypatch.setattr(experiments, "measure", lambda *a, **k: {"reaction": rows, "reaction-nodes": rows.head(0)})
    check = fidelity.holds("Fig. 7.2", "x", True, expected="e", reason="r")
    method = fidelity.Method("Fig. 7.2", "t", "o", "e", "i")
    monkeypatch.setattr(EXPERIMENTS["reaction"].module, "fidelity", lambda tables: [check])
    monkeypatch.setattr(EXPERIMENTS["reaction"].module, "methods", lambda tables: [method])
    experiments.record("reaction", "thesis", tmp_path, {"repetitions": 3}, run_id="r")
    assert list(fidelity.read_checks(tmp_path)["experiment"]) == ["reaction"]
    assert fidelity.read_methods(tmp_path).loc[0, "ours"] == "o"
