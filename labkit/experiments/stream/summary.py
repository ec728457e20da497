"""What the notebooks show from a run's tidy tables: downtimes and phases per repetition and profile,
their decomposition, the missing milestones, summary statistics, the timer sweep, the timer
profiles a run used, the comparison with the thesis (Figs. 7.3, 7.4) and the island's lost frames.

The failure tables carry a ``profile`` label (``thesis``, ``fast``, ``sweep``: the timer profile a
repetition ran under, :mod:`labkit.workloads.timers`); tables without it (80's) form one profile ``""``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from labkit import reference
from labkit.experiments.stream.phases import MILESTONES, PHASES
from labkit.workloads.timers import Timers

#: The order profiles are shown in; the sweep's points come last.
PROFILE_ORDER = ("thesis", "fast", "sweep", "")
#: The streams, as the recorders name them: at the low PDC, and at the high PDC (where the thesis measured:
#: "before reaching its intended application", 7.4).
STREAMS = ("low", "high")


# --------------------------------------------------------------------------- selection


def with_profile(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with a ``profile`` column (``""`` for a table of one unnamed profile)."""
    return rows if "profile" in rows.columns else rows.assign(profile="")


def profiles(rows: pd.DataFrame, sweep: bool = False) -> list[str]:
    """The profiles of ``rows`` in :data:`PROFILE_ORDER` (the sweep's points only with ``sweep``)."""
    present = set(with_profile(rows)["profile"].dropna())
    return [p for p in PROFILE_ORDER if p in present and (sweep or p != "sweep")]


def _of(rows: pd.DataFrame, profile: str | None) -> pd.DataFrame:
    rows = with_profile(rows)
    return rows if profile is None else rows[rows["profile"] == profile]


# --------------------------------------------------------------------------- per repetition


def downtimes(rows: pd.DataFrame, stream: str = "low", profile: str | None = None) -> pd.DataFrame:
    """One row per repetition: ``stream``'s measured downtime (s), of ``profile`` (all: ``None``)."""
    d = _of(rows, profile)
    d = d[(d["metric"] == "stream_downtime") & (d["stream"] == stream)]
    return (d[["profile", "repetition", "cluster", "value"]].rename(columns={"value": "downtime_s"})
            .reset_index(drop=True))


def phase_table(rows: pd.DataFrame, stream: str = "low", profile: str | None = None) -> pd.DataFrame:
    """Phases per repetition of ``stream``, wide (one column per measured phase, :data:`PHASES` order).

    Indexed by repetition, or by (profile, repetition) when ``rows`` hold several profiles and
    ``profile`` is ``None``.
    """
    p = _of(rows, profile)
    p = p[(p["metric"] == "phase") & (p["stream"] == stream)] if "stream" in p else p.iloc[0:0]
    if p.empty or "phase" not in p:
        return pd.DataFrame(index=pd.Index([], name="repetition"))
    index = ["profile", "repetition"] if profile is None and p["profile"].nunique() > 1 else "repetition"
    wide = p.pivot_table(index=index, columns="phase", values="value", aggfunc="sum")
    if isinstance(index, list):
        order = {name: i for i, name in enumerate(PROFILE_ORDER)}
        wide = wide.sort_index(key=lambda level: level.map(order) if level.name == "profile" else level)
    return wide[[c for c in PHASES if c in wide.columns]]


def repetitions_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per profile and repetition: both streams' downtime, where it ran, restarts, the restart wait (s, whole
    seconds, from the pod's status) and how long the owner and the leaf saw the pod not Ready (s)."""
    d = with_profile(rows)
    d = d[d["metric"] == "stream_downtime"]
    if d.empty:
        return pd.DataFrame()
    index = [c for c in ("profile", "sweep_parameter", "sweep_value", "repetition", "cluster") if c in d]
    labels = [c for c in ("restarts", "restart_wait_s", "not_ready_owner_s", "not_ready_leaf_s") if c in d]
    out = d.drop_duplicates(index)[index + labels]
    for stream in STREAMS:
        values = d[d["stream"] == stream][index + ["value"]].rename(columns={"value": f"downtime {stream} (s)"})
        out = out.merge(values, on=index, how="left")
    return out.astype({"repetition": int}).reset_index(drop=True)


def missing_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Every repetition and stream whose decomposition lacks a milestone: which, and what it would have been."""
    p = with_profile(rows)
    if "missing" not in p:
        return pd.DataFrame(columns=["profile", "repetition", "stream", "missing", "what"])
    p = p[(p["metric"] == "phase") & p["missing"].fillna("").astype(bool)]
    out = p.drop_duplicates(["profile", "repetition", "stream"])[["profile", "repetition", "stream", "missing"]]
    what = out["missing"].map(lambda names: "; ".join(f"{n}: {MILESTONES.get(n, '?')}" for n in names.split(",")))
    return out.assign(what=what).reset_index(drop=True)


# --------------------------------------------------------------------------- statistics


def _stats(values: pd.Series, what: str, **labels: Any) -> dict[str, Any]:
    v = values.astype(float).dropna()
    q1, q3 = (v.quantile(0.25), v.quantile(0.75)) if len(v) else (np.nan, np.nan)
    return {**labels, "what": what, "median": v.median(), "q1": q1, "q3": q3, "mean": v.mean(), "std": v.std(),
            "min": v.min(), "max": v.max(), "n": int(v.count())}


def median_of(values: pd.Series) -> float | None:
    """The median of ``values`` (``None`` when there is none: a figure's check then says "not measured")."""
    values = values.dropna()
    return float(values.median()) if len(values) else None


def iqr_text(values: pd.Series) -> str:
    """The interquartile range of ``values`` as it reads (``"IQR 9.41–10.12"``; empty when there is none)."""
    values = values.dropna()
    return f"IQR {values.quantile(0.25):.2f}–{values.quantile(0.75):.2f}" if len(values) else ""


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Median, quartiles, mean, std, min, max and n of each stream's downtime and of every phase, per profile."""
    parts = []
    rows = with_profile(rows)
    for profile in profiles(rows):
        r = rows[rows["profile"] == profile]
        d = r[r["metric"] == "stream_downtime"]
        for stream in [s for s in STREAMS if s in set(d["stream"])]:
            parts.append(_stats(d[d["stream"] == stream]["value"], f"downtime ({stream} PDC)", profile=profile))
        p = r[r["metric"] == "phase"]
        for stream in [s for s in STREAMS if "stream" in p and s in set(p["stream"])]:
            ps = p[p["stream"] == stream]
            for phase in [x for x in PHASES if x in set(ps["phase"].dropna())]:
                parts.append(_stats(ps[ps["phase"] == phase]["value"], f"phase: {phase} ({stream} PDC)",
                                    profile=profile))
    return pd.DataFrame(parts, columns=["profile", "what", "median", "q1", "q3", "mean", "std", "min", "max", "n"])


def decomposition(rows: pd.DataFrame, stream: str = "high") -> pd.DataFrame:
    """Per profile: the median of each phase of ``stream`` (s), their sum, the median downtime and n.

    The medians of the phases need not add up to the median downtime; ``sum of medians`` says how
    far they do. Detection (before the downtime) is left out of the sum.
    """
    out = []
    for profile in profiles(rows):
        wide = phase_table(rows, stream, profile)
        d = downtimes(rows, stream, profile)["downtime_s"].dropna()
        med = wide.median()
        inside = med.drop(labels=["detection"], errors="ignore") if "eviction" not in wide else med
        out.append({"profile": profile, **{p: med.get(p, np.nan) for p in PHASES},
                    "sum of medians": float(inside.sum()), "downtime median": d.median(), "n": int(d.count())})
    frame = pd.DataFrame(out).set_index("profile") if out else pd.DataFrame()
    return frame.dropna(axis=1, how="all")


def sweep_table(rows: pd.DataFrame, timers: pd.DataFrame | None = None) -> pd.DataFrame:
    """The timer sweep: per swept setting and value, both streams' median downtime, spread, n, main phases.

    The base point (``sweep_parameter == "base"``) is listed under every swept setting at its
    value there, read from ``timers`` (the ``*_timers`` table) when given.
    """
    s = with_profile(rows)
    s = s[s["profile"] == "sweep"]
    if s.empty:
        return pd.DataFrame()
    settings = [x for x in s["sweep_parameter"].dropna().unique() if x != "base"]
    base = s[s["sweep_parameter"] == "base"]
    out = []
    for setting in settings:
        points = [(float(v), g) for v, g in s[s["sweep_parameter"] == setting].groupby("sweep_value")]
        base_value = base_setting(timers, setting) if timers is not None else None
        if base_value is not None and not base.empty:
            points.append((base_value, base))
        for value, g in sorted(points, key=lambda x: x[0]):
            row: dict[str, Any] = {"setting": setting, "value": value, "base": value == base_value}
            for stream in STREAMS:
                d = g[(g["metric"] == "stream_downtime") & (g["stream"] == stream)]["value"].dropna()
                row |= {f"{stream} median (s)": d.median(), f"{stream} min (s)": d.min(),
                        f"{stream} max (s)": d.max()}
            ph = g[(g["metric"] == "phase") & (g["stream"] == "high")]
            for phase in ("restart", "readiness", "high reconnect", "first frame"):
                row[f"{phase} (s)"] = ph[ph["phase"] == phase]["value"].median()
            row["n"] = int(g[(g["metric"] == "stream_downtime") & (g["stream"] == "high")]["value"].count())
            out.append(row)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- the timers a run used


def timer_rows(timers: Timers, **labels: Any) -> list[dict[str, Any]]:
    """Tidy rows of one timer profile as a run used it: metric ``timer``, one row per setting."""
    rows = []
    for name in type(timers).model_fields:
        value = getattr(timers, name)
        rows.append({"metric": "timer", "unit": "s" if name.endswith("_s") else "", "value": float(value),
                     "setting": name, "source": type(timers).source(name), "why": type(timers).why(name),
                     **labels})
    return rows


def timers_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A ``*_timers`` table of :func:`timer_rows`' rows, with the tidy columns every table has."""
    return pd.DataFrame(rows).assign(t=pd.Timestamp.now(tz="UTC"), run_id="", scenario="", step="measure", cluster="")


def base_setting(timers: pd.DataFrame, setting: str) -> float | None:
    """The sweep base's value of ``setting`` in a ``*_timers`` table (``None``: not there)."""
    t = with_profile(timers)
    sel = t[(t["profile"] == "sweep") & (t.get("sweep_parameter", "") == "base") & (t["setting"] == setting)]
    return float(sel["value"].iloc[0]) if len(sel) else None


def timers_table(timers: pd.DataFrame) -> pd.DataFrame:
    """The named profiles' settings side by side: value and source per profile, and why (from a ``*_timers`` table)."""
    t = with_profile(timers)
    t = t[t["profile"].isin(["thesis", "fast"])]
    if t.empty:
        return pd.DataFrame()
    out = t.pivot_table(index="setting", columns="profile", values="value", aggfunc="first", sort=False)
    for profile in [p for p in ("thesis", "fast") if p in out.columns]:
        sel = t[t["profile"] == profile].set_index("setting")
        out[f"{profile} source"] = sel["source"]
        out[f"{profile} why"] = sel["why"]
    columns = [c for p in ("thesis", "fast") for c in (p, f"{p} source", f"{p} why") if c in out.columns]
    return out[columns]


# --------------------------------------------------------------------------- comparison with the thesis


def compare_pod_failure(rows: pd.DataFrame) -> pd.DataFrame:
    """Thesis Fig. 7.3 median (16.41 s) beside our median downtime, per profile and stream."""
    ref = reference.published("stream_downtime_s.figure_7_3_pod_failure_median", "s")
    parts = []
    for profile in profiles(rows):
        for stream in STREAMS:
            d = downtimes(rows, stream, profile)["downtime_s"].dropna()
            if len(d):
                std = float(d.std()) if len(d) > 1 else None
                parts.append(reference.compare([(ref, float(d.median()), std, int(d.count()))])
                             .assign(profile=profile, stream=stream))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


#: The thesis' explanation of Fig. 7.4, and our phases that measure each term.
COMPOSITION = {"not_ready_detection": ("detection",), "eviction_wait": ("eviction",),
               "pod_restart": ("termination", "restart", "startup", "config fetch", "reconnect", "readiness",
                               "high reconnect", "first frame")}


def composition(rows: pd.DataFrame, stream: str = "high", profile: str | None = None) -> pd.DataFrame:
    """Per repetition, our measurement of each term of the thesis' composition of Fig. 7.4 (s)."""
    wide = phase_table(rows, stream, profile)
    return pd.DataFrame({term: wide[[p for p in phases if p in wide.columns]].sum(axis=1, min_count=1)
                         for term, phases in COMPOSITION.items()})


def composed_total() -> float:
    """The thesis' 9.75 + 5 + 16.41 s: a sum of three numbers it measured elsewhere, not a measured median."""
    return float(sum(reference.lookup("stream_downtime_s.figure_7_4_cluster_failure_composition").values()))


def compare_cluster_failure(rows: pd.DataFrame) -> pd.DataFrame:
    """Thesis Fig. 7.4 composition (9.75 + 5 + 16.41 s) term by term, and composed, beside our medians.

    Per profile and stream; the total's thesis side is the composed sum (key ``...composition.total``).
    """
    base = "stream_downtime_s.figure_7_4_cluster_failure_composition"
    parts = []
    for profile in profiles(rows):
        for stream in STREAMS:
            comp = composition(rows, stream, profile)
            pairs = []
            for term in COMPOSITION:
                v = comp[term].dropna() if term in comp else pd.Series(dtype=float)
                if len(v):
                    pairs.append((reference.published(f"{base}.{term}", "s"), float(v.median()),
                                  float(v.std()) if len(v) > 1 else None, int(v.count())))
            d = downtimes(rows, stream, profile)["downtime_s"].dropna()
            if len(d):
                pairs.append((reference.Published(f"{base}.total", composed_total(), None, None, "s"),
                              float(d.median()), float(d.std()) if len(d) > 1 else None, int(d.count())))
            if pairs:
                parts.append(reference.compare(pairs).assign(profile=profile, stream=stream))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def island_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Frames expected, received and lost during the isolation, per stream and PMU."""
    lost = rows[rows["metric"] == "frames_lost"]
    return lost[["stream", "pmu_idcode", "expected", "received", "value"]].rename(
        columns={"value": "lost"}).reset_index(drop=True)


def concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Tables of several measurements (profiles, sweep points) as one."""
    parts = [f for f in frames if not f.empty]
    if not parts:
        return pd.DataFrame()
    columns = list(dict.fromkeys(c for f in parts for c in f.columns))
    # all-NA columns (a label one measurement lacks) are left out of the concat, then restored
    return pd.concat([f.dropna(axis=1, how="all") for f in parts], ignore_index=True).reindex(columns=columns)

