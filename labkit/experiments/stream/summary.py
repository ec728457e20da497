"""What the notebooks show from a run's tidy table: downtimes and phases per repetition, summary
statistics, the comparison with the thesis (Figs. 7.3, 7.4), the island's lost frames, and the
figures (stacked phases and downtime distribution; frame rates around the isolation).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labkit import reference
from labkit.experiments.stream.phases import PHASES, unix_seconds


# --------------------------------------------------------------------------- summaries and comparison


def downtimes(rows: pd.DataFrame, stream: str = "low") -> pd.DataFrame:
    """One row per repetition: the measured downtime of ``stream`` (s) and whether it recovered."""
    d = rows[(rows["metric"] == "stream_downtime") & (rows["stream"] == stream)]
    return d[["repetition", "cluster", "value"]].rename(columns={"value": "downtime_s"}).reset_index(drop=True)


def phase_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Phases per repetition, wide (one column per measured phase, in :data:`PHASES` order)."""
    p = rows[rows["metric"] == "phase"]
    if p.empty or "phase" not in p:
        return pd.DataFrame(index=pd.Index([], name="repetition"))
    wide = p.pivot_table(index="repetition", columns="phase", values="value", aggfunc="sum")
    return wide[[c for c in PHASES if c in wide.columns]]


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Median, mean, std, min, max and n of the downtime per stream and of every phase."""
    parts = []
    d = rows[rows["metric"] == "stream_downtime"]
    for stream, g in d.groupby("stream"):
        parts.append(_stats(g["value"].dropna(), f"downtime ({stream} PDC)"))
    p = rows[rows["metric"] == "phase"]
    for phase in [x for x in PHASES if "phase" in p and x in set(p["phase"].dropna())]:
        parts.append(_stats(p[p["phase"] == phase]["value"], f"phase: {phase}"))
    return pd.DataFrame(parts, columns=["what", "median", "mean", "std", "min", "max", "n"])


def _stats(values: pd.Series, what: str) -> dict[str, Any]:
    v = values.astype(float)
    return {"what": what, "median": v.median(), "mean": v.mean(), "std": v.std(), "min": v.min(), "max": v.max(),
            "n": int(v.count())}


def _ours(rows: pd.DataFrame, what: str) -> tuple[float, float | None, int]:
    """(median, std, n) of one :func:`table` row."""
    t = table(rows).set_index("what")
    if what not in t.index:
        return np.nan, None, 0
    r = t.loc[what]
    return float(r["median"]), (float(r["std"]) if np.isfinite(r["std"]) else None), int(r["n"])


def compare_pod_failure(rows: pd.DataFrame) -> pd.DataFrame:
    """Thesis Fig. 7.3 median (16.41 s) vs our median downtime at the low PDC."""
    ref = reference.published("stream_downtime_s.figure_7_3_pod_failure_median", "s")
    med, std, n = _ours(rows, "downtime (low PDC)")
    return reference.compare([(ref, med, std, n)] if n else [])


#: The thesis' explanation of Fig. 7.4, and our phases that measure each term.
COMPOSITION = {"not_ready_detection": ("detection",), "eviction_wait": ("eviction",),
               "pod_restart": ("restart", "startup", "config fetch", "reconnect", "first frame")}


def composition(rows: pd.DataFrame) -> pd.DataFrame:
    """Per repetition, our measurement of each term of the thesis' composition of Fig. 7.4 (s)."""
    wide = phase_table(rows)
    return pd.DataFrame({term: wide[[p for p in phases if p in wide.columns]].sum(axis=1)
                         for term, phases in COMPOSITION.items()})


def compare_cluster_failure(rows: pd.DataFrame) -> pd.DataFrame:
    """Thesis Fig. 7.4 composition (9.75 + 5 + 16.41 s) term by term vs our medians, and the total."""
    comp = composition(rows)
    pairs = []
    base = "stream_downtime_s.figure_7_4_cluster_failure_composition"
    for term in COMPOSITION:
        if term in comp and comp[term].count():
            v = comp[term]
            pairs.append((reference.published(f"{base}.{term}", "s"), float(v.median()),
                          float(v.std()) if v.count() > 1 else None, int(v.count())))
    total = sum(float(x) for x in reference.lookup(base).values())
    med, std, n = _ours(rows, "downtime (low PDC)")
    if n:
        pairs.append((reference.Published(f"{base}.total", total, None, None, "s"), med, std, n))
    return reference.compare(pairs)


def island_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Frames expected, received and lost during the isolation, per stream and PMU."""
    lost = rows[rows["metric"] == "frames_lost"]
    return lost[["stream", "pmu_idcode", "expected", "received", "value"]].rename(
        columns={"value": "lost"}).reset_index(drop=True)


# --------------------------------------------------------------------------- figures


def _phase_colors() -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {p: cmap(i) for i, p in enumerate(PHASES)}


def plot_downtime(rows: pd.DataFrame, path: Path, title: str, thesis_median: float | None = None,
                  composition_ref: Mapping[str, float] | None = None) -> Path:
    """Stacked phases per repetition, the downtime distribution (box + points) with the thesis median.

    With ``composition_ref`` (Fig. 7.4) a third panel sets the thesis' composition beside
    our median of each term.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if composition_ref else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), constrained_layout=True)
    colors = _phase_colors()
    wide = phase_table(rows)
    ax = axes[0]
    for rep, r in wide.iterrows():
        bottom = 0.0
        for phase in wide.columns:
            v = r[phase]
            if not np.isfinite(v):
                continue
            start = -v if phase == "detection" and "eviction" not in wide.columns else bottom
            ax.bar(rep, v, bottom=start, color=colors[phase], hatch="//" if start < 0 else None,
                   edgecolor="white", label=phase)
            if start >= 0:
                bottom += v
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper left")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set(xlabel="repetition", ylabel="seconds (below 0: before the last old frame)",
           title=f"{title}: phases per repetition")
    d = rows[(rows["metric"] == "stream_downtime")].dropna(subset=["value"])
    ax = axes[1]
    streams = [s for s in ("low", "high") if s in set(d["stream"])]
    data = [d[d["stream"] == s]["value"].to_numpy() for s in streams]
    if any(len(x) for x in data):
        ax.boxplot(data, showmeans=False)
        ax.set_xticks(range(1, len(streams) + 1), [f"{s} PDC" for s in streams])
        for i, x in enumerate(data, start=1):
            ax.scatter(np.full(len(x), i) + np.linspace(-0.08, 0.08, len(x)), x, s=14, color="tab:blue", zorder=3)
    if thesis_median is not None:
        ax.axhline(thesis_median, color="tab:red", linestyle="--", label=f"thesis median {thesis_median:g} s")
        ax.legend(fontsize=8)
    ax.set(ylabel="downtime (s): first new - last old frame", title=f"{title}: downtime (n={len(data[0]) if data else 0})")
    if composition_ref:
        ax = axes[2]
        comp = composition(rows).median()
        terms = list(COMPOSITION)
        x = np.arange(2)
        bottom = np.zeros(2)
        for i, term in enumerate(terms):
            vals = np.array([composition_ref[term], comp.get(term, np.nan)])
            ax.bar(x, np.nan_to_num(vals), bottom=bottom, label=term.replace("_", " "),
                   color=plt.get_cmap("Set2")(i))
            bottom += np.nan_to_num(vals)
        ax.set_xticks(x, ["thesis (assumed)", "labkit (measured median)"])
        ax.set(ylabel="seconds", title="Fig. 7.4 composition")
        ax.legend(fontsize=8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_island(rows: pd.DataFrame, path: Path) -> Path:
    """Frames/s at the low and the high PDC vs time from the cut, isolation window shaded (Fig. 6.2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lost = rows[rows["metric"] == "frames_lost"]
    t_cut, t_back = float(lost["start"].iloc[0]), float(lost["end"].iloc[0])
    rate = rows[rows["metric"] == "frame_rate"].copy()
    rate["s"] = unix_seconds(rate["t"]) - t_cut
    fig, axes = plt.subplots(2, 1, figsize=(8, 4.8), sharex=True, constrained_layout=True)
    for ax, stream in zip(axes, ("low", "high")):
        sel = rate[rate["stream"] == stream]
        for pmu, g in sel.groupby("pmu_idcode"):
            ax.step(g["s"], g["value"], where="post", label=f"PMU {pmu}")
        ax.axvspan(0, t_back - t_cut, color="tab:red", alpha=0.15, label="low PDC's cluster isolated")
        lost_here = lost[lost["stream"] == stream]["value"].sum()
        ax.set(ylabel="frames/s", title=f"{stream} PDC: {int(lost_here)} frames lost while isolated")
        ax.legend(fontsize=7, loc="lower left")
    axes[-1].set_xlabel("seconds from the cut")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
