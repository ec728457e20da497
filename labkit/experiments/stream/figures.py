"""The stream experiments' figures, drawn from their tidy tables alone: phases per repetition, the
median decomposition per timer profile beside the thesis, the downtime distributions, the timer
sweep (Figs. 7.3, 7.4), the multi-level run, and frame rates around an isolation (Fig. 6.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labkit.experiments.stream.phases import PHASES, unix_seconds
from labkit.experiments.stream.summary import (COMPOSITION, STREAMS, base_setting, composition, downtimes,
                                               phase_table, profiles, sweep_table, with_profile)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _phase_colors() -> dict[str, Any]:
    cmap = _pyplot().get_cmap("tab10")
    return {p: cmap(i) for i, p in enumerate(PHASES)}


def _save(fig: Any, path: Path) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return Path(path)


def _legend_once(ax: Any, **kwargs: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), **kwargs)


# --------------------------------------------------------------------------- panels


def phases_panel(ax: Any, rows: pd.DataFrame, stream: str, title: str) -> None:
    """Stacked phases per repetition of ``stream``, grouped by profile; detection before the downtime below 0."""
    colors = _phase_colors()
    ticks, labels, x = [], [], 0
    for profile in profiles(rows):
        wide = phase_table(rows, stream, profile)
        before_downtime = "eviction" not in wide.columns
        for rep, r in wide.iterrows():
            bottom = 0.0
            for phase in wide.columns:
                v = r[phase]
                if not np.isfinite(v):
                    continue
                below = phase == "detection" and before_downtime
                ax.bar(x, v, bottom=-v if below else bottom, color=colors[phase], hatch="//" if below else None,
                       edgecolor="white", label=phase)
                bottom += 0.0 if below else v
            ticks.append(x)
            labels.append(f"{profile[:1]}{int(rep)}" if profile else str(int(rep)))
            x += 1
        x += 1  # a gap between profiles
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.axhline(0, color="black", linewidth=0.6)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.35 * (high - min(low, 0.0)))  # room for the legend above the bars
    _legend_once(ax, fontsize=7, loc="upper left", ncol=4)
    ax.set(xlabel="repetition (t: thesis profile, f: fast)", title=title,
           ylabel="seconds (below 0: before the last old frame)")


def decomposition_panel(ax: Any, rows: pd.DataFrame, stream: str, reference_bar: tuple[str, Mapping[str, float]],
                        terms: Mapping[str, tuple[str, ...]] | None = None) -> None:
    """The thesis' bar beside each profile's median phases (or ``terms``: groups of phases) stacked.

    ``reference_bar`` is (label, {part: seconds}): one part for a number the thesis did not
    decompose, several for the thesis' own composition. A marker shows each profile's median downtime.
    """
    label, parts = reference_bar
    names = [label]
    bottom = 0.0
    cmap = _pyplot().get_cmap("Set2")
    for i, (part, v) in enumerate(parts.items()):
        ax.bar(0, v, bottom=bottom, color="lightgray" if len(parts) == 1 else cmap(i), edgecolor="black",
               hatch="..", label=part.replace("_", " ") if len(parts) > 1 else None)
        bottom += v
    ax.text(0, bottom, f"{bottom:.2f} s", ha="center", va="bottom", fontsize=8)
    colors = _phase_colors()
    for x, profile in enumerate(profiles(rows), start=1):
        names.append(f"{profile} profile\n(median, n={len(downtimes(rows, stream, profile)['downtime_s'].dropna())})")
        if terms:
            med = composition(rows, stream, profile).median()
            groups = [(term, med.get(term, np.nan), cmap(i)) for i, term in enumerate(terms)]
        else:
            wide = phase_table(rows, stream, profile)
            med = wide.drop(columns=["detection"], errors="ignore").median()
            groups = [(phase, med[phase], colors[phase]) for phase in med.index]
        bottom = 0.0
        for name, v, color in groups:
            if np.isfinite(v):
                ax.bar(x, v, bottom=bottom, color=color, edgecolor="white",
                       label=name.replace("_", " ") if terms else name)
                bottom += v
        d = downtimes(rows, stream, profile)["downtime_s"].dropna()
        if len(d):
            ax.plot([x - 0.4, x + 0.4], [d.median()] * 2, color="black", linewidth=1.2,
                    label="median downtime")
            ax.text(x, max(bottom, d.median()), f"{d.median():.2f} s", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=7)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 1.3)
    _legend_once(ax, fontsize=6, loc="upper right", ncol=2)
    ax.set(ylabel="seconds", title=f"what the downtime at the {stream} PDC is made of")


def downtime_panel(ax: Any, rows: pd.DataFrame, line: tuple[float, str] | None, title: str) -> None:
    """Box and points of the downtime per profile and stream, with one labelled reference line."""
    data, names = [], []
    for profile in profiles(rows):
        for stream in STREAMS:
            d = downtimes(rows, stream, profile)["downtime_s"].dropna().to_numpy()
            if len(d):
                data.append(d)
                names.append(f"{profile} {stream}" if profile else f"{stream} PDC")
    if data:
        ax.boxplot(data, showmeans=False)
        ax.set_xticks(range(1, len(names) + 1), names, fontsize=7, rotation=20)
        for i, x in enumerate(data, start=1):
            ax.scatter(np.full(len(x), i) + np.linspace(-0.08, 0.08, len(x)), x, s=12, color="tab:blue", zorder=3)
        if max(float(np.max(x)) for x in data) > 20 * max(min(float(np.median(x)) for x in data), 0.1):
            ax.set_yscale("log")
    if line is not None:
        ax.axhline(line[0], color="tab:red", linestyle="--", label=line[1])
        ax.legend(fontsize=7)
    ax.set(ylabel="downtime (s): first new - last old frame", title=title)


# --------------------------------------------------------------------------- figures


def plot_pod_failure(rows: pd.DataFrame, path: Path, thesis_median: float) -> Path:
    """Fig. 7.3: phases per repetition (high stream), the decomposition per profile beside the thesis' 16.41 s,
    and the downtime at both PDCs per profile."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), constrained_layout=True,
                             gridspec_kw={"width_ratios": [2.2, 1.2, 1.2]})
    named = with_profile(rows)
    named = named[named["profile"] != "sweep"]
    phases_panel(axes[0], named, "high", "Fig. 7.3 pod failure: phases per repetition (high PDC)")
    decomposition_panel(axes[1], named, "high", ("thesis (Fig. 7.3)\nmedian, not decomposed",
                                                 {"thesis": thesis_median}))
    downtime_panel(axes[2], named, (thesis_median, f"thesis median {thesis_median:g} s"),
                   "downtime per profile and PDC")
    return _save(fig, path)


def plot_cluster_failure(rows: pd.DataFrame, path: Path, terms: Mapping[str, float]) -> Path:
    """Fig. 7.4: phases per repetition (high stream), the thesis' composed 9.75 + 5 + 16.41 s beside each
    profile's measured terms, and the downtime at both PDCs per profile."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), constrained_layout=True,
                             gridspec_kw={"width_ratios": [2.2, 1.2, 1.2]})
    phases_panel(axes[0], rows, "high", "Fig. 7.4 cluster failure: phases per repetition (high PDC)")
    composed = " + ".join(f"{v:g}" for v in terms.values())
    decomposition_panel(axes[1], rows, "high", (f"thesis: {composed},\ncomposed", dict(terms)), terms=COMPOSITION)
    downtime_panel(axes[2], rows, (sum(terms.values()), f"thesis: {composed}, composed (not a measured median)"),
                   "downtime per profile and PDC")
    return _save(fig, path)


def plot_sweep(rows: pd.DataFrame, timers: pd.DataFrame, path: Path) -> Path:
    """The timer sweep: per swept setting, each repetition's downtime at both PDCs and their medians vs the value."""
    plt = _pyplot()
    sweep = sweep_table(rows, timers)
    settings = list(dict.fromkeys(sweep["setting"])) if not sweep.empty else []
    fig, axes = plt.subplots(1, max(1, len(settings)), figsize=(5.2 * max(1, len(settings)), 4.0),
                             constrained_layout=True, squeeze=False)
    if not settings:
        axes[0][0].text(0.5, 0.5, "no timer sweep in this run\n(parameter 'sweep' empty)", ha="center", va="center")
        axes[0][0].set_axis_off()
        return _save(fig, path)
    s = with_profile(rows)
    s = s[(s["profile"] == "sweep") & (s["metric"] == "stream_downtime")]
    for ax, setting in zip(axes[0], settings):
        base = base_setting(timers, setting)
        for stream, color in zip(STREAMS, ("tab:blue", "tab:orange")):
            points = s[(s["stream"] == stream) & (s["sweep_parameter"] == setting)]
            xs = list(points["sweep_value"].astype(float))
            ys = list(points["value"])
            if base is not None:
                b = s[(s["stream"] == stream) & (s["sweep_parameter"] == "base")]["value"]
                xs += [base] * len(b)
                ys += list(b)
            ax.scatter(xs, ys, s=14, color=color, alpha=0.6)
            sel = sweep[sweep["setting"] == setting]
            ax.plot(sel["value"], sel[f"{stream} median (s)"], marker="o", color=color, label=f"{stream} PDC median")
        if base is not None:
            ax.axvline(base, color="gray", linestyle=":", label=f"the sweep's base: {base:g}")
        ax.set(xlabel=setting, ylabel="downtime (s)", title=f"downtime vs {setting}")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_downtime(rows: pd.DataFrame, path: Path, title: str, thesis_median: float | None = None) -> Path:
    """Stacked phases per repetition (low stream) and the downtime distribution with the thesis' median."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 3.8), constrained_layout=True)
    phases_panel(axes[0], rows, "low", f"{title}: phases per repetition")
    line = (thesis_median, f"thesis median {thesis_median:g} s") if thesis_median is not None else None
    downtime_panel(axes[1], rows, line, f"{title}: downtime")
    return _save(fig, path)


def plot_island(rows: pd.DataFrame, path: Path) -> Path:
    """Frames/s at the low and the high PDC vs time from the cut, isolation window shaded (Fig. 6.2)."""
    plt = _pyplot()
    lost = rows[rows["metric"] == "frames_lost"]
    t_cut, t_back = float(lost["start"].iloc[0]), float(lost["end"].iloc[0])
    rate = rows[rows["metric"] == "frame_rate"].copy()
    rate["s"] = unix_seconds(rate["t"]) - t_cut
    fig, axes = plt.subplots(2, 1, figsize=(8, 4.8), sharex=True, constrained_layout=True)
    for ax, stream in zip(axes, STREAMS):
        sel = rate[rate["stream"] == stream]
        for pmu, g in sel.groupby("pmu_idcode"):
            ax.step(g["s"], g["value"], where="post", label=f"PMU {pmu}")
        ax.axvspan(0, t_back - t_cut, color="tab:red", alpha=0.15, label="low PDC's cluster isolated")
        lost_here = lost[lost["stream"] == stream]["value"].sum()
        ax.set(ylabel="frames/s", title=f"{stream} PDC: {int(lost_here)} frames lost while isolated")
        ax.legend(fontsize=7, loc="lower left")
    axes[-1].set_xlabel("seconds from the cut")
    return _save(fig, path)
