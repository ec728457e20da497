"""The replot path of 20-latency, 30-reaction and 70-scalability: tidy tables in, figures and summaries out.

Each ``notebook`` test writes a small tidy table the way ``labkit.experiments.record`` would, then
runs the notebook with papermill ``replot=True`` (no test bed) and checks the figure and the
summary; the ``unit`` tests check the experiments' envs, parameters and arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest

from labkit import paths, reference, results
from labkit.config import load_env
from labkit.experiments import latency, reaction, scalability
from labkit.testbed import MachineBusy, TestbedError
from labkit.topology import plan


def _replot(notebook: str, tmp_path: Path, **extra: object) -> tuple[Path, str]:
    """Run ``notebook`` with ``replot=True`` on ``tmp_path/run``; return the figures dir and the last outputs' text."""
    run_dir, figures = tmp_path / "run", tmp_path / "fig"
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(paths.notebooks_dir() / notebook), str(out),
                        parameters={"run_id": "t", "run_dir": str(run_dir), "figures_dir": str(figures),
                                    "replot": True, **extra},
                        kernel_name="labkit", progress_bar=False, cwd=str(paths.repo_root()))
    cells = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    text = "\n".join(o.get("data", {}).get("text/plain", "") for c in cells[-2:] for o in c.get("outputs", []))
    return figures, text


def _latency_rows(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for step, base in (("vm-to-vm", 0.07), ("pod-same-cluster", 0.09), ("pod-peered", 0.30)):
        for leaf in ("leaf-1", "leaf-2"):
            for seq, v in enumerate(base + rng.gamma(2.0, 0.01, 40)):
                rows.append({"step": step, "cluster": leaf, "metric": "rtt", "unit": "ms", "value": float(v),
                             "t": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(seconds=0.2 * seq),
                             "leaf": leaf, "seq": seq})
            rows.append({"step": step, "cluster": leaf, "metric": "loss", "unit": "ratio", "value": 0.0,
                         "t": pd.Timestamp("2026-01-01", tz="UTC"), "leaf": leaf, "seq": -1})
    return results.tidy(rows, run_id="t", scenario="latency")


@pytest.mark.notebook
def test_latency_replot_draws_tables_7_2_to_7_5(tmp_path: Path) -> None:
    rows = _latency_rows(np.random.default_rng(1))
    results.write_table(tmp_path / "run", "latency", rows)
    reference.write_comparison(tmp_path / "run", "latency", latency.compare({"latency": rows}))
    figures, text = _replot("20-latency.ipynb", tmp_path)
    assert (figures / "tab-7-2-7-5-latency.png").stat().st_size > 20_000
    assert "pod-peered" in text and "table_7_5_liqo_overhead" in text
    comparison = reference.read_comparisons(tmp_path / "run").set_index("key")
    expected = rows[(rows["step"] == "pod-peered") & (rows["metric"] == "rtt")]["value"].mean() \
        - rows[(rows["step"] == "pod-same-cluster") & (rows["metric"] == "rtt")]["value"].mean()
    assert comparison.loc["latency_ms.table_7_5_liqo_overhead", "labkit_mean"] == pytest.approx(expected)
    assert "latency_ms.table_7_4_liqo_peered.avg" in comparison.index


def _reaction_rows(delays: dict[str, list[float]], bed: str = reaction.BED) -> pd.DataFrame:
    fault = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [{"t": fault + pd.Timedelta(minutes=i), "metric": "not_ready_delay", "unit": "s", "value": v,
             "repetition": i, "method": method, "reason": "KubeletNotReady" if v < 15 else "NodeStatusUnknown",
             "path": "tunnel" if v < 15 else "api-lease", "node": "liqo-leaf-1", "bed": bed,
             "peering": "Liqo v0.10.2 (built from its source, driven with liqoctl)", "ping_interval_s": 2.0,
             "loss_threshold": 5}
            for method, values in delays.items() for i, v in enumerate(values)]
    return results.tidy(rows, run_id="t", scenario="reaction", step=reaction.STEP, cluster="root")


@pytest.mark.notebook
def test_reaction_replot_draws_fig_7_2_with_median_and_paths(tmp_path: Path) -> None:
    delays = {"poll": [10.4, 11.2, 9.9, 10.8, 24.0], "watch": [10.1, 11.0, 9.6, 10.5, 23.7]}
    rows = pd.concat([_reaction_rows(delays, reaction.PAIR), _reaction_rows({"poll": [9.0, 9.5], "watch": [8.8, 9.3]})],
                     ignore_index=True)
    results.write_table(tmp_path / "run", "reaction", rows)
    results.write_table(tmp_path / "run", "reaction-nodes", rows.head(0))
    reference.write_comparison(tmp_path / "run", "reaction", reaction.compare({"reaction": rows}))
    figures, text = _replot("30-reaction.ipynb", tmp_path)
    assert (figures / "fig-7-2-reaction.png").stat().st_size > 20_000
    summary = reaction.table(rows).set_index(["bed", "method"])
    assert summary.loc[("pair", "poll"), "median"] == pytest.approx(10.8)
    assert summary.loc[("pair", "watch"), "iqr"] == pytest.approx(11.0 - 10.1)
    assert summary.loc[("pair", "poll"), "paths"] == "tunnel: 4, api-lease: 1"
    assert summary.loc[("bed", "poll"), "n"] == 2 and list(summary.index.get_level_values(0)) == ["pair"] * 2 + ["bed"] * 2
    assert "poll" in text and "10.8" in text
    comparison = reference.read_comparisons(tmp_path / "run").set_index("key")
    assert comparison.loc[reaction.REFERENCE_KEY, "labkit_mean"] == pytest.approx(10.8)
    assert comparison.loc[reaction.REFERENCE_KEY, "thesis_mean"] == 9.75
    assert comparison.loc[f"{reaction.REFERENCE_KEY}.bed.poll", "labkit_mean"] == pytest.approx(9.25)


@pytest.mark.unit
def test_reaction_table_counts_a_missed_detection() -> None:
    rows = _reaction_rows({"poll": [10.0, float("nan"), 12.0], "watch": [9.0, 9.5, 11.0]})
    summary = reaction.table(rows).set_index("method")
    assert summary.loc["poll", "n"] == 2 and summary.loc["poll", "missed"] == 1
    assert summary.loc["poll", "median"] == pytest.approx(11.0)
    old = rows.drop(columns=["bed", "peering", "ping_interval_s", "loss_threshold"])  # before the pair was measured
    assert list(reaction.table(old)["bed"]) == ["bed", "bed"]


def _scalability_rows(star: bool = False) -> pd.DataFrame:
    """Full meshes of N = 2, 4, 6 (and, with ``star``, a partial-mesh star of 8 in domains of 3)."""
    cases = [(scalability.FULL_MESH, n, n - 1) for n in (2, 4, 6)]
    cases += [(scalability.PARTIAL_MESH_STAR, 8, 3)] if star else []
    rows = []
    for topology, n, d in cases:
        links = scalability.formula_links(topology, n, d)
        values = {"clusters_ready": 15 + 4 * n, "peerings_ready": 3 + 0.8 * links, "tunnels_connected": links,
                  "virtual_nodes_ready": links, "memory_pss": 420.0 * n + 35 * links,
                  "memory_rss": 600.0 * n + 40 * links, "cpu_idle": 0.08 * n + 0.01 * links, "down": 5 + n}
        rows += [{"t": pd.Timestamp("2026-01-01", tz="UTC"), "metric": m, "unit": scalability.UNITS[m],
                  "value": float(v), "topology": topology, "n": n, "domain_size": d, "links_planned": links,
                  "links_formula": links, "step": f"n-{n}"} for m, v in values.items()]
    return results.tidy(rows, run_id="t", scenario="scalability", cluster="all")


@pytest.mark.notebook
def test_scalability_replot_draws_links_beside_eq_5_1(tmp_path: Path) -> None:
    rows = _scalability_rows(star=True)
    results.write_table(tmp_path / "run", "scalability", rows)
    assert scalability.compare({"scalability": rows}).empty  # the thesis measured no N: nothing stands beside ours
    figures, text = _replot("70-scalability.ipynb", tmp_path)
    assert (figures / "eq-5-1-scalability.png").stat().st_size > 20_000
    summary = scalability.table(rows)
    mesh = summary[summary["topology"] == scalability.FULL_MESH].set_index("n")
    assert list(mesh["eq_5_1_links"]) == [1, 6, 15] and list(mesh["star_links"]) == [1, 3, 5]
    assert mesh.loc[6, "setup"] == pytest.approx(39 + 15)
    star = summary[summary["topology"] == scalability.PARTIAL_MESH_STAR].iloc[0]
    assert (star["n"], star["links_formula"], star["eq_5_1_links"]) == (8, 7 + 3 + 1 + 1, 28)  # 7 leaves: domains of 3, 2, 2
    assert "setup time grows linearly with N" in text
    slope, _ = scalability.per_cluster_cost(mesh.reset_index(), "clusters_ready")
    assert slope == pytest.approx(4.0)


@pytest.mark.unit
def test_scalability_reads_tables_from_before_the_partial_mesh_star() -> None:
    rows = _scalability_rows().drop(columns=["topology", "domain_size"])
    summary = scalability.table(rows)
    assert set(summary["topology"]) == {scalability.FULL_MESH} and list(summary["domain_size"]) == [1, 3, 5]
    assert scalability.headline({"scalability": rows})["links_missing"] == 0.0


@pytest.mark.unit
def test_reaction_provider_is_a_leaf_the_root_peers_with() -> None:
    env = load_env("thesis")
    assert reaction.provider_of(env) == "leaf-1"
    assert reaction.provider_of(env, "leaf-3") == "leaf-3"
    with pytest.raises(ValueError, match="does not peer with 'leaf-9'"):
        reaction.provider_of(env, "leaf-9")
    alone = latency.single_cluster(env, 2)
    with pytest.raises(ValueError, match="peers with no cluster"):
        reaction.provider_of(alone)


@pytest.mark.unit
def test_latency_peered_probes_go_to_the_leaves_the_root_offloads_to() -> None:
    env = load_env("thesis")
    assert latency.offloaded_leaves(env, 3) == ("test", ["leaf-1", "leaf-2", "leaf-3"])
    with pytest.raises(ValueError, match="5 leaves requested"):
        latency.offloaded_leaves(env, 5)


@pytest.mark.unit
def test_reaction_delay_rows_take_the_first_not_ready_after_the_fault_and_its_path() -> None:
    fault = pd.Timestamp("2026-01-01 00:00:10", tz="UTC")
    obs = []
    for method, seconds, ready, reason in (("poll", 9.0, 0.0, "LiqoTunnelDisconnected"),  # before the fault: ignored
                                           ("poll", 12.0, 1.0, "KubeletReady"),
                                           ("poll", 20.4, 0.0, "LiqoTunnelDisconnected"),
                                           ("poll", 20.8, 0.0, "NodeStatusUnknown"),
                                           ("watch", 20.123, 0.0, "LiqoTunnelDisconnected")):
        obs.append({"t": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(seconds=seconds), "node": "liqo-x",
                    "value": ready, "reason": reason, "method": method})
    rows = {r["method"]: r for r in reaction.delay_rows(pd.DataFrame(obs), "liqo-x", fault, 4)}
    assert rows["poll"]["value"] == pytest.approx(10.4) and rows["poll"]["path"] == "tunnel"
    assert rows["watch"]["value"] == pytest.approx(10.123) and rows["watch"]["repetition"] == 4
    assert reaction.path_of("NodeStatusUnknown") == "api-lease" and reaction.path_of("Foo") == "other"
    missed = {r["method"]: r for r in reaction.delay_rows(pd.DataFrame(obs[:2]), "liqo-x", fault, 0)}
    assert np.isnan(missed["poll"]["value"]) and missed["watch"]["path"] == "not-observed"


@pytest.mark.unit
@pytest.mark.parametrize("n", [2, 3, 5, 20])
def test_scalability_mesh_env_peers_every_pair_once(n: int) -> None:
    env = scalability.mesh_env(load_env("thesis"), n)
    topo = plan(env)
    pairs = {frozenset((v.consumer, v.provider)) for v in topo.virtual_nodes}
    assert len(env.clusters) == n and len(topo.virtual_nodes) == scalability.full_mesh_links(n) == len(pairs)
    assert sum(v.consumer == "root" for v in topo.virtual_nodes) == scalability.star_links(n)
    cidrs = [str(topo.cidrs[c.name].pod) for c in env.clusters]
    assert len(set(cidrs)) == n  # distinct pod CIDRs: no NAT in the DB domain


@pytest.mark.unit
@pytest.mark.parametrize(("n", "domain_size"), [(2, 4), (5, 2), (12, 4), (20, 4), (20, 19)])
def test_scalability_region_env_is_a_partial_mesh_star(n: int, domain_size: int) -> None:
    base = load_env("thesis")
    env = scalability.region_env(base, n, domain_size)
    topo = plan(env)
    assert len(env.clusters) == n and env.tuning == base.tuning and env.backend == base.backend
    assert len(topo.virtual_nodes) == scalability.formula_links(scalability.PARTIAL_MESH_STAR, n, domain_size)
    assert sum(v.consumer == env.root.name for v in topo.virtual_nodes) == n - 1
    assert max(len(d.members) for d in env.db_domains) <= domain_size
    if domain_size >= n - 1:  # one domain of every leaf: the full mesh again
        assert len(topo.virtual_nodes) == scalability.full_mesh_links(n)
    with pytest.raises(ValueError, match="domain_size must be >= 1"):
        scalability.region_env(base, n, 0)
    with pytest.raises(ValueError, match="expected 'full mesh'"):
        scalability.formula_links("ring", n, domain_size)


@pytest.mark.unit
def test_a_size_that_does_not_come_up_is_recorded_and_ends_its_topology(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    measured = _scalability_rows(star=True)
    tried = []

    def fake_measure(testbed, env, *, topology, domain_size, **keys):  # noqa: ANN001, ANN202
        n = len(env.clusters)
        tried.append((topology, n))
        if (topology, n) == (scalability.FULL_MESH, 4):
            raise TestbedError("virtual node liqo-leaf-3 not Ready in cluster leaf-1")
        one = measured[(measured["topology"] == topology) & (measured["n"] == n)].assign(error="")
        return pd.concat([one, one.head(1).assign(metric="setup_failed", value=0.0)])

    monkeypatch.setattr(scalability, "measure_size", fake_measure)
    params = scalability.Parameters(sizes="2,4,6", star_sizes=[8], domain_size=3)
    tables = scalability.measure(object(), load_env("thesis"), params)  # type: ignore[arg-type]
    rows = tables["scalability"]
    assert tried == [(scalability.FULL_MESH, 2), (scalability.FULL_MESH, 4), (scalability.PARTIAL_MESH_STAR, 8)]
    summary = scalability.table(rows).set_index(["topology", "n"])
    assert summary.loc[(scalability.FULL_MESH, 4), "setup_failed"] == 1.0
    assert np.isnan(summary.loc[(scalability.FULL_MESH, 4), "virtual_nodes_ready"])
    assert "liqo-leaf-3 not Ready" in rows.loc[rows["metric"] == "setup_failed", "error"].str.cat()
    assert scalability.headline(tables) | {"setup_s_largest_n": 0} == {
        "sizes_failed": 1.0, "largest_n": 8.0, "links_missing": 0.0, "tunnels_missing": 0.0, "setup_s_largest_n": 0}
    verdicts = {c.name: c.verdict for c in scalability.fidelity(tables)}
    assert verdicts["full mesh, N = 4: came up and peered"] == "fail"
    assert verdicts["full mesh, N = 2: virtual nodes Ready"] == "pass"
    assert scalability.figures(tables, tmp_path)["eq. 5.1"].stat().st_size > 20_000


@pytest.mark.unit
def test_a_busy_machine_is_an_error_not_a_failed_size(monkeypatch) -> None:  # noqa: ANN001
    def busy(testbed, env, *, topology, domain_size, **keys):  # noqa: ANN001, ANN202
        raise MachineBusy("another embedded testbed is running on this machine (pid 1: invoke up)")

    monkeypatch.setattr(scalability, "measure_size", busy)
    with pytest.raises(MachineBusy, match="pid 1"):
        scalability.measure(object(), load_env("thesis"), scalability.Parameters(sizes=[2, 4]))  # type: ignore[arg-type]


@pytest.mark.unit
def test_scalability_sizes_and_memory_check() -> None:
    assert scalability.parse_sizes("6, 2,4,4") == [2, 4, 6]
    assert scalability.parse_sizes([3, 2]) == [2, 3]
    assert scalability.parse_sizes("") == []
    for bad in ("1,2", "two"):
        with pytest.raises(ValueError):
            scalability.parse_sizes(bad)
    assert scalability.Parameters(sizes="4,2").sizes == (2, 4)
    with pytest.raises(ValueError, match="no sizes"):
        scalability.Parameters(sizes=[], star_sizes=[])
    scalability.check_memory(4, available=4 * 450 + 6 * 40 + 1)
    with pytest.raises(TestbedError, match="N=20 needs about 16600 MiB"):
        scalability.check_memory(20, available=8000)
    scalability.check_memory(20, links=46, available=20 * 450 + 46 * 40 + 1)  # the partial-mesh star fits


@pytest.mark.unit
def test_headlines_are_the_numbers_bounds_limit(tmp_path: Path) -> None:
    """Each experiment's headline numbers: what ``labkit.experiments.record`` records for the env's bounds."""
    from labkit import bounds

    lat = latency.headline({"latency": _latency_rows(np.random.default_rng(1))})
    assert set(lat) == {"vm_to_vm_rtt_ms", "pod_same_cluster_rtt_ms", "pod_peered_rtt_ms"}
    assert 0.30 < lat["pod_peered_rtt_ms"] < 0.40  # base 0.30 + gamma(2, 0.01)
    rea = reaction.headline({"reaction": _reaction_rows({"poll": [10.0, 11.0, 30.0], "watch": [9.5, 10.5, 29.0]})})
    assert rea == {"not_ready_s_median_poll": 11.0, "missed_poll": 0.0, "bed_not_ready_s_median_poll": 11.0,
                   "bed_missed_poll": 0.0, "not_ready_s_median_watch": 10.5, "missed_watch": 0.0,
                   "bed_not_ready_s_median_watch": 10.5, "bed_missed_watch": 0.0}
    both = pd.concat([_reaction_rows({"poll": [12.0, float("nan")]}, reaction.PAIR), _reaction_rows({"poll": [9.0]})])
    assert {k: v for k, v in reaction.headline({"reaction": both}).items() if not k.startswith(("pair", "bed"))} \
        == {"not_ready_s_median_poll": 12.0, "missed_poll": 1.0}  # the larger median, every missed cut
    sca = scalability.headline({"scalability": _scalability_rows()})
    assert sca == {"sizes_failed": 0.0, "largest_n": 6.0, "links_missing": 0.0, "tunnels_missing": 0.0,
                   "setup_s_largest_n": 15 + 4 * 6 + 3 + 0.8 * 15}
    for experiment, values in (("latency", lat), ("reaction", rea), ("scalability", sca)):
        bounds.record(tmp_path, experiment, **values)  # every headline is recordable
    assert len(bounds.measured(tmp_path)) == len(lat) + len(rea) + len(sca)


@pytest.mark.unit
def test_parameters_default_to_the_thesis_and_say_why() -> None:
    assert latency.Parameters().count == 1000 and latency.Parameters.source("count") == "thesis"
    assert "1000" in latency.Parameters.why("count")
    assert reaction.Parameters().poll_interval == 0.4 and reaction.Parameters.source("poll_interval") == "thesis"
    assert latency.Parameters.source("concurrent") == "kit"
    table = latency.Parameters(count=100).table()
    assert table.loc["count", "value"] == 100 and table.loc["count", "default"] == 1000
    with pytest.raises(ValueError, match="count"):
        latency.Parameters(count=0)
    with pytest.raises(ValueError, match="extra"):
        latency.Parameters(counts=10)  # a misspelt name is refused, not ignored
    with pytest.raises(KeyError, match="no parameter 'counts'"):
        latency.Parameters.why("counts")


@pytest.mark.unit
def test_latency_measures_tables_7_2_and_7_3_on_the_single_cluster_and_7_4_on_the_env() -> None:
    env = load_env("thesis")
    beds = latency.beds(env, latency.Parameters(leaves=2))
    assert [len(b.clusters) for b in beds] == [1, len(env.clusters)]
    assert latency.beds(env, latency.Parameters(leaves=2, peered=False)) == beds[:1]


@pytest.mark.unit
def test_reaction_measures_the_thesis_pair_then_the_env_bed() -> None:
    env = load_env("thesis")
    pair, bed = reaction.beds(env, reaction.Parameters())
    assert [c.name for c in pair.clusters] == ["root", "leaf-1"] and bed == env
    assert [(v.consumer, v.provider) for v in plan(pair).virtual_nodes] == [("root", "leaf-1")]
    assert (reaction.bed_of(pair), reaction.bed_of(bed)) == (reaction.PAIR, reaction.BED)
    assert reaction.beds(env, reaction.Parameters(bed=False)) == [pair]
    assert reaction.beds(env, reaction.Parameters(pair=False)) == [env]
    assert [c.name for c in reaction.beds(env, reaction.Parameters(provider="leaf-3"))[0].clusters] == ["root", "leaf-3"]
    assert len(reaction.beds(pair, reaction.Parameters())) == 1  # a pair env is measured once
    with pytest.raises(ValueError, match="no test bed"):
        reaction.Parameters(pair=False, bed=False)


@pytest.mark.unit
def test_reaction_window_is_liqos_tunnel_check() -> None:
    assert reaction.tunnel_window() == (8.0, 11.0)
    assert reaction.tunnel_window(1.0, 3) == (2.0, 3.3)


def _verdicts(rows: pd.DataFrame) -> dict[str, str]:
    return {c.name: c.verdict for c in reaction.fidelity({"reaction": rows})}


@pytest.mark.unit
def test_reaction_fidelity_passes_medians_in_liqos_window_and_fails_outside() -> None:
    good = pd.concat([_reaction_rows({"poll": [9.4, 9.9, 10.6], "watch": [9.1, 9.6, 10.3]}, reaction.PAIR),
                      _reaction_rows({"poll": [9.8, 10.2, 10.9], "watch": [9.5, 9.9, 10.6]})], ignore_index=True)
    verdicts = _verdicts(good)
    assert len(verdicts) == 9 and set(verdicts.values()) == {"pass"}
    late = _verdicts(_reaction_rows({"poll": [11.8, 12.1, 12.4], "watch": [11.5, 11.8, 12.1]}, reaction.PAIR))
    assert late["NotReady delay, median, the pair, a 0.4 s poll (the thesis')"] == "fail"  # 12.1 > 11 + 0.5 + 0.4
    assert late["NotReady delay, median, the pair, a watch"] == "fail"
    early = _verdicts(_reaction_rows({"poll": [7.0, 7.2], "watch": [6.9, 7.1]}, reaction.PAIR))
    assert set(early.values()) == {"pass", "fail"} and early["NotReady delay, median, the pair, a watch"] == "fail"


@pytest.mark.unit
def test_reaction_fidelity_fails_on_the_api_path_a_missed_cut_and_beds_apart() -> None:
    lease = _verdicts(_reaction_rows({"poll": [9.5, 10.0, 24.0]}, reaction.PAIR))
    assert lease["every NotReady from the tunnel check, the pair, a 0.4 s poll (the thesis')"] == "fail"
    missed = _verdicts(_reaction_rows({"poll": [9.5, float("nan"), 10.0]}))
    assert missed["every NotReady from the tunnel check, the env bed, a 0.4 s poll (the thesis')"] == "fail"
    apart = pd.concat([_reaction_rows({"poll": [8.2, 8.4]}, reaction.PAIR), _reaction_rows({"poll": [10.8, 10.9]})])
    assert _verdicts(apart)["pair vs env bed: difference of the poll medians"] == "fail"
    slower = reaction.fidelity({"reaction": _reaction_rows({"poll": [9.5, 10.0]}).assign(ping_interval_s=1.0)})
    assert slower[0].expected == "4–6.4 s" and slower[0].verdict == "fail"  # the window follows the run's timers


@pytest.mark.unit
def test_reaction_methods_say_which_peering_ran() -> None:
    rows = _reaction_rows({"poll": [9.5, 10.0]}, reaction.PAIR)
    real = reaction.methods({"reaction": rows})[0]
    assert "Liqo v0.10.2" in real.ours and real.implementation.startswith("none for the timers")
    fake = reaction.methods({"reaction": rows.assign(peering="the kit's Liqo look-alike (fallback: no Liqo source)")})
    assert "look-alike" in fake[0].implementation
    unknown = reaction.methods({"reaction": rows.drop(columns=["peering"])})[0]
    assert unknown.implementation.startswith("unknown")


@pytest.mark.unit
def test_tunnels_count_pairs_connected_at_both_ends() -> None:
    def tep(remote: str, status: str, by_label: bool = False) -> dict:
        spec = {} if by_label else {"clusterIdentity": {"clusterName": remote}}
        return {"metadata": {"labels": {"clusterID": remote}}, "spec": spec, "status": {"connection": {"status": status}}}

    endpoints = {"root": [tep("leaf-1", "Connected"), tep("leaf-2", "Connected")],
                 "leaf-1": [tep("root", "Connected"), tep("leaf-2", "Connected", by_label=True)],
                 "leaf-2": [tep("root", "Error"), tep("leaf-1", "Connected")]}
    assert scalability.connected_pairs(endpoints) == 2  # root-leaf-1 and leaf-1-leaf-2; root-leaf-2 is down at one end
    assert scalability.connected_pairs({"root": [tep("leaf-1", "Connected")]}) == 0  # one end is not a tunnel


@pytest.mark.unit
def test_cpu_seconds_reads_this_process() -> None:
    import os

    mine = scalability.cpu_seconds([os.getpid(), 2 ** 22 + 7])  # a pid that does not exist is left out
    assert list(mine) == [os.getpid()] and mine[os.getpid()] > 0


@pytest.mark.unit
def test_least_squares_recovers_coefficients_and_refuses_what_it_cannot_fit() -> None:
    n = np.array([2, 4, 8, 12, 16])
    fit = scalability.least_squares({"N": n}, 10 + 4 * n + np.array([0.1, -0.1, 0.2, -0.2, 0.0]))
    assert fit is not None and fit.coef["N"] == pytest.approx(4.0, abs=0.05) and 0 < fit.se["N"] < 0.05
    assert fit.dof == 3 and fit.r2 > 0.999
    assert scalability.least_squares({"N": n[:2]}, [1.0, 2.0]) is None  # no degree of freedom
    assert scalability.least_squares({"N": n, "2N": 2 * n}, n * 1.0) is None  # collinear


def _claim_rows(setup: Callable[[int, int], float], memory_per_link: float) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for topology, n, d in [(scalability.FULL_MESH, n, n - 1) for n in (2, 4, 8, 12)] + \
                          [(scalability.PARTIAL_MESH_STAR, n, 4) for n in (4, 8, 12, 16, 20)]:
        links = scalability.formula_links(topology, n, d)
        values = {"clusters_ready": 3.0 * n, "peerings_ready": setup(n, links) - 3.0 * n + rng.normal(0, 0.5),
                  "tunnels_connected": links, "virtual_nodes_ready": links,
                  "memory_pss": 450.0 * n + memory_per_link * links + rng.normal(0, 5),
                  "memory_rss": 800.0 * n, "cpu_idle": 0.08 * n + 0.001 * links + rng.normal(0, 0.002), "down": 5.0}
        rows += [{"t": pd.Timestamp("2026-01-01", tz="UTC"), "metric": m, "unit": scalability.UNITS[m],
                  "value": float(v), "topology": topology, "n": n, "domain_size": d} for m, v in values.items()]
    return results.tidy(rows, run_id="t", scenario="scalability", step="s", cluster="all")


def _claim_verdicts(rows: pd.DataFrame) -> dict[str, str]:
    return {c.name: c.verdict for c in scalability.fidelity({"scalability": rows}) if c.name.startswith("5.3")}


@pytest.mark.unit
def test_chapter_5_3_claims_hold_on_a_linear_setup_and_cheap_peerings() -> None:
    verdicts = _claim_verdicts(_claim_rows(lambda n, links: 20 + 9 * n, memory_per_link=10.0))
    assert verdicts == {"5.3: setup time grows linearly with N (full mesh)": "pass",
                        "5.3: setup time grows linearly with N (partial mesh star)": "pass",
                        "5.3: a peering's extra memory is negligible": "pass",
                        "5.3: a peering's extra CPU is negligible": "pass"}
    claims = scalability.claims(scalability.table(_claim_rows(lambda n, links: 20 + 9 * n, 10.0))).set_index("scope")
    assert claims.loc["partial mesh star", "estimate"] == pytest.approx(9.0, abs=0.3)


@pytest.mark.unit
def test_chapter_5_3_claims_fail_on_a_setup_that_grows_with_the_links_and_costly_peerings() -> None:
    verdicts = _claim_verdicts(_claim_rows(lambda n, links: 20 + 3 * n + 2.5 * links, memory_per_link=120.0))
    assert verdicts["5.3: setup time grows linearly with N (full mesh)"] == "fail"  # N(N-1)/2 links: curved
    assert verdicts["5.3: setup time grows linearly with N (partial mesh star)"] == "pass"  # links linear in N here
    assert verdicts["5.3: a peering's extra memory is negligible"] == "fail"  # 120 MiB per link vs 450 per cluster


@pytest.mark.unit
def test_scalability_fidelity_counts_links_from_the_clusters_and_needs_four_sizes() -> None:
    rows = _scalability_rows()
    short = rows["metric"].eq("virtual_nodes_ready") & rows["n"].eq(4)
    checks = {c.name: c for c in scalability.fidelity({"scalability": rows.assign(value=rows["value"].where(~short, 5.0))})}
    assert checks["full mesh, N = 4: virtual nodes Ready"].verdict == "fail"  # 5 of eq. 5.1's 6
    assert checks["full mesh, N = 4: tunnels Connected"].verdict == "pass"
    assert checks["full mesh, N = 4: virtual nodes Ready"].basis == "formula" and not checks[
        "full mesh, N = 4: virtual nodes Ready"].thesis  # the thesis measured no N
    assert checks["5.3: setup time grows linearly with N (full mesh)"].verdict == "not measured"  # 3 sizes
    failed = scalability.failed_size(scalability.mesh_env(load_env("thesis"), 5), scalability.FULL_MESH, 4,
                                     TestbedError("virtual node not Ready"), run_id="t", scenario="scalability")
    names = {c.name: c.verdict for c in scalability.fidelity({"scalability": pd.concat([rows, failed])})}
    assert names["full mesh, N = 5: came up and peered"] == "fail"
