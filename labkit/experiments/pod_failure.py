"""Pod failure (thesis 7.4.1, Fig. 7.3): how long the PMU stream stays down when the low PDC's pod fails.

The low-level PDC's liveness probe starts failing once its container has run ``after_s`` seconds
(the thesis: 60 s); the kubelet of the cluster that really runs the pod kills and restarts the
container. Two recorder pods in the root subscribe to the low and the high PDC's output; the
downtime is the timestamp of the first frame of the new stream minus that of the last frame of
the old one (thesis 7.4), at both PDCs, split into measured phases (:mod:`labkit.experiments.stream`).

Two timer profiles run one after the other (:mod:`labkit.workloads.timers`):

- ``thesis``: the thesis' protocol on one long-lived pod (its container fails again and again,
  60 s after each start) with Kubernetes v1.24's probe defaults and openPDC's 1.5 s reconnect.
  The kubelet's restart back-off (10 s doubling to 300 s, not configurable in v1.24) applies
  once it exceeds the time between two failures: at this cadence from the 7th restart on.
- ``fast``: the kit's timers, and a fresh pod before every repetition (no back-off ever).

A sweep (``sweep``) varies one setting of the ``thesis`` timers at a time and shows how the
downtime moves with it (Fig. 7.3 sweep).

Tables ``pod_failure`` (``stream_downtime`` per repetition and stream, s; ``phase`` per stream,
s; ``frame_rate``; the fault log; every row labelled ``profile``, and ``sweep_parameter`` /
``sweep_value`` for the sweep's points) and ``pod_failure_timers`` (metric ``timer``: every
setting of every profile and sweep point the run used, with its source and why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import field_validator, model_validator

from labkit import reference
from labkit.config import Env
from labkit.experiments.base import Tables, param, thesis
from labkit.experiments.stream import (ProfiledParameters, compare_pod_failure, concat, decomposition, downtimes,
                                       iqr_text, kept, measure_pod_failure, median_of, missing_table, phase_table,
                                       plot_pod_failure, plot_sweep, repetitions_table, sweep_table, table,
                                       timer_rows, timers_frame, timers_table)
from labkit.fidelity import Check, Method, holds, within
from labkit.testbed import Testbed
from labkit.workloads.timers import (FAST, THESIS, ProfileName, Timers, expected_backoffs,
                                     restarts_without_backoff)

#: The experiment's name (its module's): its tables, headline metrics and comparison are filed under it.
NAME = __name__.rsplit(".", 1)[-1]
#: The tables :func:`measure` returns: the measurement, and the timers each profile ran with.
TABLES = (NAME, f"{NAME}_timers")
#: Thesis key of the published median downtime.
REFERENCE_KEY = "stream_downtime_s.figure_7_3_pod_failure_median"
#: The sweep's base: the thesis' timers with the fast profile's liveness probe (detection precedes the
#: downtime; the thesis' 10 s x 3 would add 20-30 s to every repetition and move nothing the sweep shows).
SWEEP_BASE = THESIS.model_copy(update={name: getattr(FAST, name) for name in
                                       ("liveness_period_s", "liveness_failure_threshold")})
#: The ``protocol`` label of a profile's rows: one pod failing again and again (the thesis'), or a fresh pod each time.
ONE_POD, FRESH_PODS = "one pod", "fresh pods"
#: Settings the sweep may vary: the numeric timers.
SWEEPABLE = tuple(n for n, f in Timers.model_fields.items() if f.annotation in (int, float))


class Parameters(ProfiledParameters):
    """What a pod-failure run measures."""

    repetitions: dict[ProfileName, int] = param(
        {"thesis": 7, "fast": 10},
        "liveness failures per profile (the thesis does not say how many it ran); thesis: 7, the 7th being the "
        "first the kubelet's back-off delays on one pod failing every ~85 s (160 s)")
    fresh_pods: tuple[ProfileName, ...] = param(
        ("fast",), "profiles whose low-PDC pod is replaced before every repetition, so each restart is its "
                   "container's first and the kubelet's back-off never applies; the others fail one pod again and "
                   "again, as the thesis did (7.4.1)")
    after_s: float = thesis(60.0, "the probe fails once the container has run 60 s (thesis 7.4.1: \"a failure check "
                                  "after the pod had been running for 60 seconds\")", gt=0)
    fresh_after_s: float = param(15.0, "seconds a fresh pod runs before its probe fails (fresh pods and the sweep): "
                                       "no part of the downtime depends on it while no back-off applies", gt=0)
    sweep: dict[str, tuple[float, ...]] = param(
        {}, "settings of the sweep's base varied one at a time, and their values; each point runs on a fresh "
            "deployment")
    sweep_base: dict[str, float] = param(
        {}, "settings changed in SWEEP_BASE (the thesis' timers with the fast liveness probe) for every point of "
            "the sweep, e.g. a slower PDC start under which the readiness period shows")
    sweep_repetitions: int = param(3, "failures per sweep point, on that point's pod (as many as the kubelet "
                                      "restarts without back-off)", ge=1)
    timeout_s: float = param(420.0, "seconds the stream may take to come back before the run fails: the kubelet's "
                                    "back-off cap (300 s, pkg/kubelet/kubelet.go:132) and its pod worker's retry "
                                    "(<= 15 s, pkg/kubelet/pod_workers.go:1180-1181) fit", gt=0)

    @field_validator("sweep", "sweep_base")
    @classmethod
    def _sweepable(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(SWEEPABLE))
        if unknown:
            raise ValueError(f"cannot sweep {unknown}; sweepable settings: {list(SWEEPABLE)}")
        empty = [k for k, v in value.items() if isinstance(v, tuple) and not v]
        if empty:
            raise ValueError(f"sweep of {empty} lists no value")
        return value

    @model_validator(mode="after")
    def _points_valid(self) -> Parameters:
        for setting, value, timers in self.sweep_points():
            cycle = self.fresh_after_s + timers.liveness_period_s * (timers.liveness_failure_threshold - 1)
            if self.sweep_repetitions > restarts_without_backoff(cycle):
                raise ValueError(f"sweep point {setting}={value}: {self.sweep_repetitions} failures on one pod, "
                                 f"{cycle:g} s or more apart, meet the kubelet's back-off from failure "
                                 f"{restarts_without_backoff(cycle) + 1:g} on; lower sweep_repetitions or raise "
                                 "fresh_after_s")
        return self

    def sweep_points(self) -> list[tuple[str, float | None, Timers]]:
        """The sweep's configurations: the base (``("base", None, SWEEP_BASE)``) first, then each setting's
        values other than the base's, as (setting, value, timers). Empty without a sweep."""
        if not self.sweep:
            return []
        base = _updated(SWEEP_BASE, self.sweep_base)
        points: list[tuple[str, float | None, Timers]] = [("base", None, base)]
        for setting, values in self.sweep.items():
            points += [(setting, float(v), _updated(base, {setting: v})) for v in values
                       if type(getattr(base, setting))(v) != getattr(base, setting)]
        return points


def _updated(timers: Timers, settings: dict[str, float]) -> Timers:
    """``timers`` with ``settings`` (a PDC reconnect interval is fixed, as openPDC's: its maximum moves with it)."""
    update = {name: type(getattr(timers, name))(value) for name, value in settings.items()}
    if "pdc_reconnect_s" in update and "pdc_reconnect_max_s" not in update:
        update["pdc_reconnect_max_s"] = float(update["pdc_reconnect_s"])
    return Timers.model_validate({**timers.model_dump(), **update})


def beds(env: Env, params: Parameters) -> list[Env]:
    """The env's own test bed, reduced to ``clusters`` when given."""
    return [kept(env, params.clusters)]


def measure(testbed: Testbed, env: Env, params: Parameters) -> Tables:
    """Each profile's liveness failures, then the sweep's points
    (:func:`~labkit.experiments.stream.measure_pod_failure`)."""
    common = params.options()
    parts, timers = [], []
    for profile in params.profiles:
        fresh = profile in params.fresh_pods
        parts.append(measure_pod_failure(testbed, env, repetitions=params.repetitions[profile],
                                         after_s=params.fresh_after_s if fresh else params.after_s,
                                         timers=params.timers(profile), fresh_pod=fresh, profile=profile,
                                         protocol=FRESH_PODS if fresh else ONE_POD, **common))
        timers += timer_rows(params.timers(profile), profile=profile)
    for setting, value, point in params.sweep_points():
        labels = {"profile": "sweep", "sweep_parameter": setting, "sweep_value": value, "protocol": ONE_POD}
        parts.append(measure_pod_failure(testbed, env, repetitions=params.sweep_repetitions,
                                         after_s=params.fresh_after_s, timers=point, fresh_pod=False,
                                         **labels, **common))
        timers += timer_rows(point, **labels)
    return {NAME: concat(parts), f"{NAME}_timers": timers_frame(timers)}


def headline(tables: Tables) -> dict[str, float]:
    """Per profile: repetitions, how many recovered, the median and longest downtime at each PDC (s)."""
    rows = tables[NAME]
    out: dict[str, float] = {}
    for profile in ("thesis", "fast"):
        if (rows.get("profile") == profile).any():
            out |= {f"{profile}.{k}": v for k, v in downtime_headline(rows, profile=profile, longest=True).items()}
    return out


def downtime_headline(rows: pd.DataFrame, longest: bool = False, profile: str | None = None) -> dict[str, float]:
    """Repetitions, recovered and unrecovered ones (a stream not back within ``timeout_s``: the measurement
    stopped there), the median (and ``longest``: maximum) downtime at the low and the high PDC (s).

    Keys ``downtime_s_median`` (low PDC), ``high_downtime_s_median`` (high PDC), ...
    """
    out: dict[str, float] = {}
    for stream, prefix in (("low", ""), ("high", "high_")):
        d = downtimes(rows, stream, profile)["downtime_s"]
        if stream == "low":
            out |= {"repetitions": float(len(d)), "recovered": float(d.notna().sum()),
                    "unrecovered": float(d.isna().sum())}
        if d.notna().any():
            out[f"{prefix}downtime_s_median"] = float(d.median())
            if longest:
                out[f"{prefix}downtime_s_max"] = float(d.max())
    return out


def compare(tables: Tables) -> pd.DataFrame:
    """The thesis' median downtime (Fig. 7.3, 16.41 s) beside ours, per profile and PDC."""
    return compare_pod_failure(tables[NAME])


#: Fig. 7.3's band around the thesis' median for the thesis profile (issue #22).
THESIS_BAND = 0.25
#: The fast profile's target: this many times below the thesis' median (issue #22).
FAST_FACTOR = 10.0
#: Seconds a phase governed by a timer may take beyond the timer: the kubelet's status update and Liqo's
#: reflection into the owner (readiness), Liqo's EndpointSlice reflection and kube-proxy's 1 s minimum sync
#: (the high PDC's reconnect).
PROPAGATION_S = 2.0
#: A restart taking this long or more was delayed by the kubelet's back-off (its first is 10 s; an
#: undelayed restart is a runc start and an interpreter, about 1 s here).
BACKOFF_SEEN_S = 5.0


def fidelity(tables: Tables) -> list[Check]:
    """Fig. 7.3's checks: the thesis profile's median in +-25 % of 16.41 s, or the missing phase named; its
    timer-governed phases within their defaults; the back-off where the kubelet's rule puts it; every
    milestone observed; the fast profile 10x below the thesis."""
    rows, timers = tables[NAME], tables[f"{NAME}_timers"]
    out: list[Check] = []
    for profile in [p for p in ("thesis", "fast") if (rows["profile"] == p).any()]:
        out += [phases_observed(rows, profile, "Fig. 7.3"), _backoff_check(rows, profile)]
    if (rows["profile"] == "thesis").any():
        out += _thesis_checks(rows, timers)
    if (rows["profile"] == "fast").any():
        d = downtimes(rows, "high", "fast")["downtime_s"].dropna()
        target = reference.lookup(REFERENCE_KEY) / FAST_FACTOR
        out.append(within("Fig. 7.3", "fast profile: median downtime at the high PDC", median_of(d), high=target,
                          unit="s", basis="kit", spread=iqr_text(d), n=len(d),
                          reason=f"the fast profile's target: {FAST_FACTOR:g}x below the thesis' median"))
    return out


def _setting(timers: pd.DataFrame, profile: str, name: str) -> float:
    sel = timers[(timers["profile"] == profile) & (timers["setting"] == name)]["value"]
    return float(sel.iloc[0]) if len(sel) else float("nan")


def _thesis_checks(rows: pd.DataFrame, timers: pd.DataFrame) -> list[Check]:
    """The thesis profile against Fig. 7.3: the band or the missing phase, and each timer's phase."""
    published = reference.lookup(REFERENCE_KEY)
    d = downtimes(rows, "high", "thesis")["downtime_s"].dropna()
    wide = phase_table(rows, "high", "thesis").median()
    low, high = (1 - THESIS_BAND) * published, (1 + THESIS_BAND) * published
    ready_bound = _setting(timers, "thesis", "readiness_period_s") + PROPAGATION_S
    reconnect_bound = _setting(timers, "thesis", "pdc_reconnect_max_s") + PROPAGATION_S
    timers_ok = (wide.get("readiness", float("nan")) <= ready_bound
                 and wide.get("high reconnect", float("nan")) <= reconnect_bound)
    median = median_of(d)
    own = sum(wide.get(p, 0.0) for p in ("termination", "restart", "startup", "config fetch", "reconnect"))
    in_band = median is not None and low <= median <= high
    named = median is not None and median < low and timers_ok and missing_table(
        rows[rows["profile"] == "thesis"]).empty
    gap = f"{published - median:.2f}" if median is not None else "?"
    common = {"thesis": f"{published:g} s (median)", "spread": iqr_text(d), "n": len(d)}
    return [
        within("Fig. 7.3", "thesis profile: median downtime at the high PDC", median, low=low, high=high, unit="s",
               basis="thesis", **common,
               reason="the thesis' protocol (one pod failing 60 s after each start) with its software's timers "
                      "(Kubernetes v1.24 probes, openPDC's 1.5 s reconnect); left: the kit's PDC for openPDC v2.4, "
                      "one machine for five VMs"),
        holds("Fig. 7.3", "thesis profile: Fig. 7.3 reproduced, or the missing phase named", None if median is None
              else in_band or named, observed=median, unit="s", basis="thesis", **common,
              expected=f"{low:.2f}–{high:.2f} s, or shorter with every phase observed and each timer's phase within "
                       "its default: the missing time is then the PDC's own start",
              reason=f"16.41 s - ours = {gap} s: no timer phase holds it, so it is the start of openPDC v2.4 (Mono, "
                     "its configuration load) and the readiness wait a slow start brings (Fig. 7.3 sweep), which the "
                     f"kit's PDC does not reproduce (ours: {own:.2f} s from the last old frame to its inputs "
                     "connected)"),
        within("Fig. 7.3", "thesis profile: readiness phase, median", wide.get("readiness"), high=ready_bound,
               unit="s", basis="software", n=len(d),
               reason="Kubernetes v1.24: one readiness probe at once after a restart, then every periodSeconds "
                      f"(default 10 s); + {PROPAGATION_S:g} s for the kubelet's status and Liqo's reflection"),
        within("Fig. 7.3", "thesis profile: the high PDC's reconnect, median", wide.get("high reconnect"),
               high=reconnect_bound, unit="s", basis="software", n=len(d),
               reason="openPDC retries an input every 1.5 s (delayedConnectionInterval); + "
                      f"{PROPAGATION_S:g} s for Liqo's EndpointSlice reflection and kube-proxy's 1 s minimum sync"),
    ]


def _backoff_check(rows: pd.DataFrame, profile: str) -> Check:
    """The restarts the kubelet delayed are those its rule delays, given the measured time between failures."""
    det = rows[(rows["profile"] == profile) & (rows["metric"] == "phase") & (rows["stream"] == "low")]
    kills = det[det["phase"] == "detection"].set_index("repetition")["end"].sort_index()
    restart = det[det["phase"] == "restart"].set_index("repetition")["value"].reindex(kills.index)
    fresh = _fresh(rows, profile)  # then every restart is its container's first: never delayed
    late = [False] * len(kills) if fresh else expected_backoffs([0.0, *kills.diff().dropna()])
    expected = [rep for rep, delayed in zip(kills.index, late) if delayed]
    seen = [rep for rep, v in restart.items() if v >= BACKOFF_SEEN_S]
    return holds("Fig. 7.3", f"{profile} profile: the kubelet's back-off where its rule puts it "
                             f"({FRESH_PODS if fresh else ONE_POD})",
                 None if kills.empty else seen == expected, observed=len(seen), unit="restarts", basis="software",
                 n=len(kills), expected=f"delayed restarts: {[int(r) for r in expected] or 'none'}",
                 reason=f"Kubernetes v1.24 restarts a container at once unless its previous instance exited less than "
                        f"the back-off (10 s doubling to 300 s) ago; seen delayed (>= {BACKOFF_SEEN_S:g} s): "
                        f"{[int(r) for r in seen] or 'none'}")


def _fresh(rows: pd.DataFrame, profile: str) -> bool:
    """Whether ``profile``'s repetitions each failed a fresh pod (label ``protocol``)."""
    return "protocol" in rows and (rows.loc[rows["profile"] == profile, "protocol"] == FRESH_PODS).any()


def phases_observed(rows: pd.DataFrame, profile: str, figure: str) -> Check:
    """Every repetition's decomposition has all its milestones (else: which are missing, named)."""
    missing = missing_table(rows[rows["profile"] == profile])
    n = int(((rows["profile"] == profile) & (rows["metric"] == "stream_downtime")).sum())
    names = sorted({m for ms in missing["missing"] for m in ms.split(",")})
    return holds(figure, f"{profile} profile: every phase observed", missing.empty, observed=len(missing),
                 unit="repetition-streams", basis="kit", n=n, expected="0 with a milestone missing",
                 reason="a phase without its milestone is folded into the next one: " +
                        (f"missing {', '.join(names)}" if names else "none missing"))


def methods(tables: Tables) -> list[Method]:
    """Fig. 7.3: the thesis' protocol and where it measured, ours per profile, what remains."""
    rows = tables[NAME]
    counts = {p: int(((rows["profile"] == p) & (rows["metric"] == "stream_downtime") & (rows["stream"] == "low"))
                     .sum()) for p in ("thesis", "fast", "sweep")}
    return [Method(
        "Fig. 7.3",
        thesis="the PDC pod's liveness probe customised to fail once it has run 60 s (7.4.1), repeated on it; "
               "downtime = first new - last old frame timestamp, before the stream's application (after the high "
               "PDC); repetitions, probe and reconnect timers not given (Kubernetes v1.24, openPDC v2.4 defaults)",
        ours=f"thesis profile: {counts['thesis']} failures of one pod 60 s after each start, Kubernetes v1.24.17's "
             f"probe defaults, 1.5 s fixed reconnect; fast profile: {counts['fast']} failures, each of a fresh pod; "
             f"sweep: {counts['sweep']} failures; downtime at the low and at the high PDC, split into measured phases",
        environment="one machine: five clusters as network namespaces running Kubernetes v1.24.17 (2 shared cores) "
                    "instead of five 4-core VMs",
        implementation="the kit's C37.118 PDC (Python) instead of openPDC v2.4; Galera (MariaDB) instead of the "
                       "Percona XtraDB operator; Liqo as the test bed ran it (Fig. 7.2)")]


def figures(tables: Tables, out_dir: Path) -> dict[str, Path]:
    """Fig. 7.3 (phases, decomposition per profile beside the thesis, downtimes) and the timer sweep."""
    rows = tables[NAME]
    return {"Fig. 7.3": plot_pod_failure(rows, Path(out_dir) / "fig-7-3-pod-failure.png",
                                         reference.lookup(REFERENCE_KEY)),
            "Fig. 7.3 sweep": plot_sweep(rows, tables[f"{NAME}_timers"], Path(out_dir) / "fig-7-3-sweep.png")}


def summary(tables: Tables) -> dict[str, pd.DataFrame]:
    """The profiles' timers, the decomposition per profile, the statistics, each repetition, the sweep."""
    rows, timers = tables[NAME], tables[f"{NAME}_timers"]
    named = rows[rows["profile"] != "sweep"]
    out = {"timer profiles": timers_table(timers),
           "median phases at the high PDC per profile (s)": decomposition(named, "high"),
           "median phases at the low PDC per profile (s)": decomposition(named, "low"),
           "downtime and phases (s)": table(named),
           "repetitions": repetitions_table(rows),
           "milestones not observed": missing_table(rows)}
    sweep = sweep_table(rows, timers)
    if not sweep.empty:
        out["timer sweep"] = sweep
    return out
