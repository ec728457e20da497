"""The thesis' topology figures, drawn from plans (networkx layout + matplotlib, seaborn style).

Figure ids follow the thesis: ``fig-5-1-links-vs-n`` (eq. 5.1), ``fig-5-2-independent-groups``,
``fig-5-3-dependent-groups``, ``fig-6-1-logical-domains``, ``fig-6-3-two-level-domains`` and
``fig-7-1-testbed``. Each ``draw_*`` function takes a plan (or a links table) and a path
and writes a PNG and, next to it, an SVG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from labkit.topology import examples, peering
from labkit.topology.model import MAX_NODES_PER_CLUSTER, Plan
from labkit.topology.planner import plan as make_plan

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Position = tuple[float, float]
ROLE_STYLE = {"acc": ("#1f3b73", 900, "s"), "primary": ("#3a7bd5", 600, "o"), "secondary": ("#9ecae1", 420, "o")}
EDGE_STYLE = {  # kind -> (colour, line style, width, label)
    "star": ("#444444", "solid", 1.4, "star: ACC peers + offloads"),
    "backup": ("#d95f02", "solid", 1.6, "main primary -> backup"),
    "jurisdiction": ("#1b9e77", "solid", 1.4, "main primary -> secondary"),
    "offload": ("#444444", "solid", 1.0, "offloading peering"),
    "mesh": ("#7570b3", "dashed", 1.1, "DB domain full mesh"),
    "explicit": ("#444444", "solid", 1.0, "explicit peering"),
}
LINKS_TABLE = "topology_links"


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, with the seaborn theme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="white", context="paper")
    return plt


def save(fig: Figure, path: Path, svg: bool = True) -> Path:
    """Write ``fig`` to ``path`` (PNG) and, when ``svg``, to the same name with ``.svg``; close it."""
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    if svg:
        fig.savefig(path.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- layouts


def radial_layout(plan: Plan) -> dict[str, Position]:
    """The ACC in the centre, every other cluster on a circle in env order (the thesis' star)."""
    root = plan.env.root.name
    others = [c.name for c in plan.env.clusters if c.name != root]
    pos = {root: (0.0, 0.0)}
    for i, name in enumerate(others):
        angle = math.pi / 2 - 2 * math.pi * i / max(len(others), 1)
        pos[name] = (math.cos(angle), math.sin(angle))
    return pos


def tree_layout(plan: Plan) -> dict[str, Position]:
    """Rows by role (ACC, primaries, secondaries); secondaries under their parent primary."""
    clusters = plan.env.clusters
    primaries = [c.name for c in clusters if c.role == "primary"]
    order = {p: i for i, p in enumerate(primaries)}
    secondaries = sorted((c for c in clusters if c.role == "secondary"),
                         key=lambda c: (order.get(c.parent or "", len(order)), clusters.index(c)))
    pos: dict[str, Position] = {}
    width = max(len(secondaries), len(primaries), 1)
    row = max(1.5, width / 5)
    for i, c in enumerate(secondaries):
        pos[c.name] = (i - (len(secondaries) - 1) / 2, -2.0 * row)
    for i, name in enumerate(primaries):
        kids = [pos[c.name][0] for c in secondaries if c.parent == name]
        pos[name] = (sum(kids) / len(kids) if kids else (i - (len(primaries) - 1) / 2) * width / len(primaries), -row)
    _spread(pos, primaries, min_gap=1.2)
    pos[plan.env.root.name] = (0.0, 0.0)
    return pos


def _spread(pos: dict[str, Position], names: Sequence[str], min_gap: float) -> None:
    """Push apart nodes of one row that sit closer than ``min_gap``."""
    ordered = sorted(names, key=lambda n: pos[n][0])
    for a, b in zip(ordered, ordered[1:]):
        if pos[b][0] - pos[a][0] < min_gap:
            pos[b] = (pos[a][0] + min_gap, pos[b][1])


# --------------------------------------------------------------------------- drawing a plan


def draw_plan(plan: Plan, ax: Axes, pos: Mapping[str, Position], rings: Mapping[str, Sequence[str]] | None = None,
              fills: Mapping[str, str] | None = None, fill_legend: Mapping[str, str] | None = None,
              title: str = "") -> None:
    """Draw a plan's clusters (by role) and peerings (by kind) on ``ax``.

    Parameters
    ----------
    plan
        The plan to draw.
    ax
        Matplotlib axes.
    pos
        Cluster positions.
    rings
        Group name -> members: each group is a coloured ring around its members (a cluster in
        several groups gets several rings, as leaf C of Fig. 5.2).
    fills
        Cluster -> colour overriding the role colour (dependent groups of one hierarchy).
    fill_legend
        Legend entries (name -> colour) explaining ``fills``.
    title
        Axes title.
    """
    import networkx as nx

    from matplotlib.lines import Line2D

    graph = plan.graph()
    _draw_rings(ax, pos, rings or {})
    bends = {"mesh": 0.15, "backup": 0.3}
    for kind in EDGE_STYLE:
        edges = [(u, v) for u, v, d in graph.edges(data=True) if _main_kind(d["kinds"]) == kind]
        if not edges:
            continue
        colour, style, width, label = EDGE_STYLE[kind]
        nx.draw_networkx_edges(graph, pos, edgelist=edges, ax=ax, edge_color=colour, style=style, width=width,
                               arrows=True, arrowstyle="-|>", arrowsize=9, node_size=600,
                               connectionstyle=f"arc3,rad={bends.get(kind, 0.0)}")
        ax.add_line(Line2D([], [], color=colour, linestyle=style, linewidth=width, label=label))
    for role, (colour, size, shape) in ROLE_STYLE.items():
        nodes = [n for n, d in graph.nodes(data=True) if d["role"] == role]
        colours = [(fills or {}).get(n, colour) for n in nodes]
        nx.draw_networkx_nodes(graph, pos, nodelist=nodes, ax=ax, node_color=colours, node_size=size,
                               node_shape=shape, edgecolors="white", linewidths=1.0, label=role)
    for name, colour in (fill_legend or {}).items():
        ax.scatter([], [], color=colour, s=60, label=name)
    nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7,
                            labels={n: n for n in graph.nodes}, font_color="black",
                            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.margins(0.12)


def _main_kind(kinds: Sequence[str]) -> str:
    """The kind a link is drawn as: the first of star, backup, jurisdiction, offload, mesh, explicit."""
    return next((k for k in EDGE_STYLE if k in kinds), "explicit")


def _draw_rings(ax: Axes, pos: Mapping[str, Position], rings: Mapping[str, Sequence[str]]) -> None:
    """A translucent ring per group around each member, nested when a cluster is in several groups."""
    from matplotlib.patches import Circle

    palette = _palette(len(rings))
    points = list(pos.values())
    spacing = min((math.dist(a, b) for i, a in enumerate(points) for b in points[i + 1:]), default=1.0)
    depth: dict[str, int] = {}
    for (group, members), colour in zip(rings.items(), palette):
        for member in members:
            level = depth.get(member, 0)
            depth[member] = level + 1
            radius = spacing * (0.3 + 0.1 * level)
            ax.add_patch(Circle(pos[member], radius, facecolor=(*colour, 0.18), edgecolor=colour, linewidth=1.6,
                                zorder=0, label=group if member == members[0] else None))


def _palette(n: int) -> list[tuple[float, float, float]]:
    """``n`` distinct colours (seaborn's colour-blind palette)."""
    import seaborn as sns

    return [tuple(c) for c in sns.color_palette("colorblind", max(n, 1))]  # type: ignore[misc]


def _legend(ax: Axes) -> None:
    """One legend of edge kinds, roles and groups, deduplicated."""
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7,
              frameon=False, markerscale=0.5)


def _groups(plan: Plan, hierarchy: str | None = None) -> dict[str, list[str]]:
    """Independent groups (``hierarchy=None``) or the groups of one hierarchy, name -> members."""
    return {g.name: list(g.members) for g in plan.env.groups if g.hierarchy == hierarchy}


def _caption(plan: Plan) -> str:
    """Counts under a figure: clusters, peerings by kind, ACC virtual nodes."""
    kinds: dict[str, int] = {}
    for link in plan.peerings:
        kind = _main_kind(link.kinds)
        kinds[kind] = kinds.get(kind, 0) + 1
    shown = ", ".join(f"{k} {v}" for k, v in kinds.items())
    root = plan.env.root.name
    return (f"{len(plan.env.clusters)} clusters, {len(plan.peerings)} peerings ({shown}); "
            f"virtual nodes in {root}: {plan.virtual_nodes_per_cluster[root]}")


def _figure(plan: Plan, path: Path, title: str, pos: Mapping[str, Position], size: tuple[float, float] = (7, 5),
            **kwargs: Any) -> Path:
    """One plan on one axes, with legend and counts, saved to ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=size)
    draw_plan(plan, ax, pos, title=title, **kwargs)
    _legend(ax)
    fig.text(0.02, 0.01, _caption(plan), fontsize=7, color="#555555")
    return save(fig, path)


# --------------------------------------------------------------------------- the thesis' figures


def draw_independent_groups(plan: Plan, path: Path) -> Path:
    """Fig. 5.2: independent groups as rings; a cluster may be in several."""
    return _figure(plan, path, "Independent groups (Fig. 5.2)", radial_layout(plan), rings=_groups(plan))


def draw_dependent_groups(plan: Plan, path: Path) -> Path:
    """Fig. 5.3: one hierarchy as rings, a second one as node colours; the DB domain's full mesh."""
    hierarchies = list(dict.fromkeys(g.hierarchy for g in plan.env.groups if g.hierarchy))
    rings = _groups(plan, hierarchies[0]) if hierarchies else {}
    fills: dict[str, str] = {}
    legend: dict[str, str] = {}
    if len(hierarchies) > 1:
        second = _groups(plan, hierarchies[1])
        for (group, members), colour in zip(second.items(), ["#fdae6b", "#a1d99b", "#bcbddc", "#fa9fb5"]):
            fills |= {m: colour for m in members}
            legend[f"{hierarchies[1]}: {group}"] = colour
    title = "Dependent groups (Fig. 5.3): rings = " + " / ".join(
        f"{h}: {', '.join(_groups(plan, h))}" for h in hierarchies[:2]) + (" (fill)" if len(hierarchies) > 1 else "")
    return _figure(plan, path, title, radial_layout(plan), rings=rings, fills=fills, fill_legend=legend)


def draw_logical_domains(plan: Plan, path: Path) -> Path:
    """Fig. 6.1: the ACC offloads to every station; each domain a ring, DB domains in full mesh."""
    return _figure(plan, path, "Logical domains (Fig. 6.1)", tree_layout(plan), size=(11, 5),
                   rings=_groups(plan))


def draw_two_level_domains(plan: Plan, path: Path) -> Path:
    """Fig. 6.3: a partial-mesh star of primaries under the ACC, then a star per main primary."""
    return _figure(plan, path, "Multi-level logical domains (Fig. 6.3)", tree_layout(plan), size=(10, 5),
                   rings=_groups(plan))


def draw_testbed(plan: Plan, path: Path) -> Path:
    """Fig. 7.1: the thesis' test bed, root + 4 leaves, full mesh among the leaves."""
    return _figure(plan, path, "Test environment (Fig. 7.1)", radial_layout(plan), size=(6, 5),
                   rings={d.name: list(d.members) for d in plan.env.db_domains})


def draw_env(plan: Plan, path: Path) -> Path:
    """Any env: tree layout when it has primaries with secondaries, radial otherwise."""
    tree = any(c.parent for c in plan.env.clusters)
    pos = tree_layout(plan) if tree else radial_layout(plan)
    return _figure(plan, path, f"env {plan.env.name} ({plan.env.implementation})", pos, rings=_groups(plan))


# --------------------------------------------------------------------------- eq. 5.1


def links_table(ns: Iterable[int], domain_size: int = 20, plan_up_to: int = 0, run_id: str = "scratch") -> pd.DataFrame:
    """Peering links vs number of clusters N for star, partial-mesh star and full mesh (tidy rows).

    Parameters
    ----------
    ns
        Cluster counts N (ACC included).
    domain_size
        Clusters per DB domain in the partial-mesh star (a primary and its secondaries).
    plan_up_to
        For N up to this, the partial-mesh star count is read from a planned synthetic region
        (``source='plan'``); above it, from the closed form (``source='formula'``).
    run_id
        The run id of the rows.

    Returns
    -------
    pandas.DataFrame
        Key columns (metric ``peering_links``, unit ``links``) plus ``n``, ``model``, ``source``.
    """
    now = datetime.now(UTC)
    rows = []
    for n in ns:
        counts = {"star": (peering.star_links(n), "formula"),
                  "partial mesh star": _partial_mesh_star(n, domain_size, plan_up_to),
                  "full mesh": (peering.full_mesh_links(n), "formula")}
        for model, (value, source) in counts.items():
            rows.append({"run_id": run_id, "scenario": "topology", "step": "links-vs-n", "cluster": "all",
                         "metric": "peering_links", "unit": "links", "t": now, "value": float(value),
                         "n": n, "model": model, "source": source, "domain_size": domain_size})
    return pd.DataFrame(rows)


def _partial_mesh_star(n: int, domain_size: int, plan_up_to: int) -> tuple[int, str]:
    """Links of a 6.1 region of ``n`` clusters with DB domains of ``domain_size``: planned or closed form."""
    if n > plan_up_to or n < 2:
        return peering.partial_mesh_star_links(n, domain_size), "formula"
    leaves = n - 1
    primaries = math.ceil(leaves / domain_size)
    return len(make_plan(examples.region(primaries, leaves - primaries)).peerings), "plan"


def draw_links_vs_n(table: pd.DataFrame, path: Path, limit: int = MAX_NODES_PER_CLUSTER) -> Path:
    """Fig. "links vs N" (eq. 5.1): peerings per topology, with the 5,000-node limit marked.

    In the star and in logical domains the ACC holds one virtual node per other cluster, so
    Kubernetes' limit of ``limit`` nodes (1 physical + N - 1 virtual) caps N at ``limit``.
    """
    import seaborn as sns

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=table, x="n", y="value", hue="model", style="model", markers=True, dashes=False, ax=ax)
    ax.set(xscale="log", yscale="log", xlabel="clusters N (ACC included)", ylabel="peerings",
           title="Peering links vs N (eq. 5.1: full mesh N(N-1)/2)")
    ax.axvline(limit, color="#b2182b", linestyle=":", linewidth=1.5)
    ax.text(limit, ax.get_ylim()[0] * 3, f"  {limit:,}-node limit\n  (ACC: N-1 virtual nodes)", color="#b2182b",
            fontsize=8, ha="right")
    size = int(table["domain_size"].iloc[0]) if "domain_size" in table else 0
    handles, names = ax.get_legend_handles_labels()
    names = [f"{n} (DB domains of {size})" if n == "partial mesh star" else n for n in names]
    ax.legend(handles, names, frameon=False, fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    return save(fig, path)


def log_grid(max_n: int) -> list[int]:
    """Cluster counts 2, 5, 10, 20, 50, ... up to ``max_n`` (the x axis of the links figure)."""
    out, decade = [2], 1
    while True:
        for step in (5, 10, 20):
            n = step * decade
            if n > max_n:
                return out
            out.append(n)
        decade *= 10


def plan_summary(plan: Plan) -> pd.DataFrame:
    """One row per cluster: role, parent, nodes (physical/virtual), pod and service CIDR, namespaces."""
    rows = [{"cluster": c.name, "role": c.role, "parent": c.parent or "", "physical_nodes": len(c.nodes),
             "virtual_nodes": plan.virtual_nodes_per_cluster[c.name], "pod_cidr": str(plan.cidrs[c.name].pod),
             "service_cidr": str(plan.cidrs[c.name].service), "namespaces": ", ".join(plan.namespaces(c.name))}
            for c in plan.env.clusters]
    return pd.DataFrame(rows)


FIGURES: dict[str, str] = {
    "fig-5-1-links-vs-n": "peering links vs N for star, partial-mesh star and full mesh (eq. 5.1)",
    "fig-5-2-independent-groups": "independent groups (5.2.1)",
    "fig-5-3-dependent-groups": "dependent groups / hierarchies (5.2.2)",
    "fig-6-1-logical-domains": "logical domains (6.1) on envs/region.yaml",
    "fig-6-3-two-level-domains": "multi-level logical domains (6.2) on envs/multilevel.yaml",
    "fig-7-1-testbed": "the thesis' test bed (7.1) on envs/thesis.yaml",
}


def draw_models(figures_dir: Path, region: Plan, multilevel: Plan, testbed: Plan) -> list[Path]:
    """Draw the five topology schemes of the thesis into ``figures_dir``; returns the PNG paths."""
    figures_dir = Path(figures_dir)
    return [
        draw_independent_groups(make_plan(examples.independent_groups()),
                                figures_dir / "fig-5-2-independent-groups.png"),
        draw_dependent_groups(make_plan(examples.dependent_groups()), figures_dir / "fig-5-3-dependent-groups.png"),
        draw_logical_domains(region, figures_dir / "fig-6-1-logical-domains.png"),
        draw_two_level_domains(multilevel, figures_dir / "fig-6-3-two-level-domains.png"),
        draw_testbed(testbed, figures_dir / "fig-7-1-testbed.png"),
    ]
