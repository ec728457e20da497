"""labkit.grid.phasors and labkit.grid.se: generator, network matrices, linear WLS."""

from __future__ import annotations

import numpy as np
import pytest

from labkit.grid.phasors import NETWORKS, Channel, PhasorSource, network_model, tve
from labkit.grid.se import LinearPmuEstimator, errors, pandapower_wls

pytestmark = pytest.mark.unit


def _all_channels(src: PhasorSource) -> list[Channel]:
    return [ch for chans in src.channels for ch in chans]


@pytest.mark.parametrize("name", NETWORKS)
def test_network_currents_match_pandapower_results(name: str) -> None:
    m = network_model(name)
    net = m.net
    for idx in net.line.index[net.line.in_service]:
        for side, col in (("f", "i_from_ka"), ("t", "i_to_ka")):
            if (m.f_bus if side == "f" else m.t_bus)[m.branch_rows[("line", idx)]] not in m.bus_lookup.values():
                continue  # open end (aux bus)
            got = abs(m.true_phasor(Channel("x", "I", 0, "line", int(idx), side))) / 1e3
            assert got == pytest.approx(net.res_line.at[idx, col], rel=1e-9, abs=1e-12)
    for idx in net.trafo.index:
        got = abs(m.true_phasor(Channel("x", "I", 0, "trafo", int(idx), "f"))) / 1e3
        assert got == pytest.approx(net.res_trafo.at[idx, "i_hv_ka"], rel=1e-9)
    for b in net.bus.index:
        v = m.true_phasor(Channel(f"V:{b}", "V", int(b))) / m.v_base(m.bus_lookup[b])
        assert abs(v) == pytest.approx(net.res_bus.at[b, "vm_pu"], rel=1e-12)
        assert np.degrees(np.angle(v)) == pytest.approx(net.res_bus.at[b, "va_degree"], abs=1e-9)


def test_generator_is_seeded_and_inside_the_tve_budget() -> None:
    a, b, other = (PhasorSource("case33bw", range(33), seed=s) for s in (7, 7, 8))
    da, db, do = a.sample(), b.sample(), other.sample()
    assert all(np.array_equal(x, y) for x, y in zip(da, db))
    assert not all(np.array_equal(x, y) for x, y in zip(da, do))
    worst = max(float(tve(z, t).max()) for _ in range(200) for z, t in zip(a.sample(), a.truth))
    assert worst < a.max_tve() < 0.01
    assert worst > 0.002                                     # the noise is really there
    table = a.long_form(1.0, da)
    assert list(table.columns) == ["pmu_id", "bus", "branch", "side", "quantity", "t", "mag", "ang_rad",
                                   "sigma_mag", "sigma_ang"]
    assert len(table) == sum(len(c) for c in a.channels)


def test_channel_names_parse_and_fit_cfg2() -> None:
    assert Channel.parse("I:trafo:3:t") == Channel("I:trafo:3:t", "I", -1, "trafo", 3, "t")
    assert Channel.parse("V:12").bus == 12
    with pytest.raises(ValueError, match="not V:<bus>"):
        Channel.parse("P:1")
    src = PhasorSource("case33bw", range(33))
    assert max(len(ch.name) for ch in _all_channels(src)) <= 16
    with pytest.raises(ValueError, match="bus 99 is not a bus"):
        PhasorSource("case14", [99])


@pytest.mark.parametrize("name", NETWORKS)
def test_linear_se_is_exact_without_noise_and_within_noise_with_it(name: str) -> None:
    m = network_model(name)
    exact = PhasorSource(name, sorted(m.bus_lookup), sigma_mag=0, sigma_ang=0)
    est = LinearPmuEstimator(m, _all_channels(exact))
    assert est.observable
    res = est.estimate(np.concatenate(exact.sample()))
    assert errors(res.v, est.true_v())["max_abs_dvec"] < 1e-9
    noisy = PhasorSource(name, sorted(m.bus_lookup), seed=11)
    est = LinearPmuEstimator(m, _all_channels(noisy))
    v_idx = [i for i, ch in enumerate(_all_channels(noisy)) if ch.kind == "V"]
    est_err, raw_err, chi2 = [], [], []
    for _ in range(30):
        z = np.concatenate(noisy.sample())
        r = est.estimate(z)
        est_err.append(errors(r.v, est.true_v())["max_abs_dvec"])
        raw = z[v_idx] / np.array([m.v_base(m.bus_lookup[ch.bus]) for ch in np.array(_all_channels(noisy))[v_idx]])
        raw_err.append(errors(raw, est.true_v())["max_abs_dvec"])
        chi2.append(r.objective / r.dof)
    assert np.median(est_err) < 0.5 * np.median(raw_err)    # redundancy filters the noise
    assert max(est_err) < 3 * noisy.sigma_mag
    assert 0.5 < np.median(chi2) < 2.0                        # J ~ chi2(m - 2n) with the right weights


def test_linear_se_drops_absent_measurements() -> None:
    m = network_model("case14")
    src = PhasorSource("case14", range(14), seed=4)
    est = LinearPmuEstimator(m, _all_channels(src))
    z = np.concatenate(src.sample())
    z[[0, 5, 17]] = np.nan
    r = est.estimate(z)
    assert np.isfinite(r.v).all() and errors(r.v, est.true_v())["max_abs_dvec"] < 0.006
    with pytest.raises(ValueError, match="expected 54 measurements"):
        est.estimate(z[:10])


def test_pandapower_wls_on_the_same_measurements() -> None:
    m = network_model("case14")
    src = PhasorSource("case14", range(14), seed=5)
    chans = _all_channels(src)
    z = np.concatenate(src.sample())
    v_pp, seconds, ok = pandapower_wls(m, chans, z)
    assert ok and seconds > 0
    est = LinearPmuEstimator(m, chans)
    truth = est.true_v()
    e_pp, e_lin = errors(v_pp, truth), errors(est.estimate(z).v, truth)
    assert e_pp["max_abs_dv"] < 0.01 and e_lin["max_abs_dv"] < 0.01
