"""The downtime and its phases: milestones from the PDCs' logs (parsed, read from their pods in the
clusters concerned), the split of a downtime into consecutive phases at measured milestones,
and the tidy rows of one repetition (downtime and phases per stream, missing milestones named).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from labkit.deploy import INSTANCE
from labkit.deploy.chain import Chain, hosting_cluster, pod_namespace
from labkit.grid.pdc_config import parse_fetch_line
from labkit.measure.stream import DOWNTIME_THRESHOLD_S, stream_downtime
from labkit.testbed import Testbed


#: Order of the phases in tables and figures (each ends at the milestone of :data:`MILESTONES`).
PHASES = ("detection", "eviction", "termination", "restart", "startup", "config fetch", "reconnect", "readiness",
          "high reconnect", "first frame")
#: What ends each phase, and where it is observed.
MILESTONES = {
    "detection": "pod failure: the old PDC logs SIGTERM (the kubelet kills it after the liveness probe's failures; "
                 "starts at the fault, before the downtime); cluster failure: the owner sees the virtual node "
                 "NotReady (node watch)",
    "eviction": "cluster failure: the replacement pod appears in the owner (pod watch)",
    "termination": "the old PDC logs 'stopped' (its container exits; from the last old frame)",
    "restart": "the new PDC process logs 'process started' (includes the kubelet's restart back-off)",
    "startup": "the configuration fetch starts (its 'config-fetch' line minus the duration it measured)",
    "config fetch": "the PDC logs 'config-fetch ... seconds=<s>' (from its DB domain, or its ConfigMap file)",
    "reconnect": "the new PDC logs 'input <pmu> connected' (CFG-2 of its PMU received)",
    "readiness": "the owner sees the new pod Ready (pod watch; its Service sends clients to it from then on)",
    "high reconnect": "high stream only: the high PDC logs 'input <low PDC> connected'",
    "first frame": "the stream's recorder receives the first frame of the new stream (its timestamp)",
}


# --------------------------------------------------------------------------- PDC logs


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\S+) (\w+) (.*)$")
#: Log messages of the PDC that mark a milestone: (event, pattern).
LOG_EVENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("process started", re.compile(r"^process started")),
    ("stopping", re.compile(r" stopping on SIG\w+$")),
    ("stopped", re.compile(r" stopped$")),
    ("listening", re.compile(r"listening on ")),
    ("input connected", re.compile(r"^input (?P<input>\S+) connected")),
    ("first forward", re.compile(r"^first frame forwarded after (?P<kind>\w+) of (?P<input>\S+)")),
)


def parse_log(text: str) -> pd.DataFrame:
    """Milestones in a PDC log (the kit's format ``%(asctime)s %(name)s %(levelname)s %(message)s``, UTC).

    Returns columns ``t`` (UNIX s), ``event``, ``input`` (for ``config fetched``: ``file`` or ``db``),
    ``seconds`` (the fetch duration the PDC measured, :func:`labkit.grid.pdc_config.parse_fetch_line`), ``message``.
    """
    rows = []
    for line in text.splitlines():
        m = _LOG_LINE.match(line.strip())
        if not m:
            continue
        stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=timezone.utc).timestamp()
        message = m.group(4)
        fetched = parse_fetch_line(message)
        if fetched is not None:
            rows.append({"t": stamp, "event": "config fetched", "input": fetched[1].source,
                         "seconds": fetched[1].seconds, "message": message})
            continue
        for event, pattern in LOG_EVENTS:
            hit = pattern.search(message)
            if hit:
                groups = hit.groupdict()
                rows.append({"t": stamp, "event": event, "input": groups.get("input") or "", "seconds": np.nan,
                             "message": message})
                break
    return pd.DataFrame(rows, columns=["t", "event", "input", "seconds", "message"])


def pdc_logs(testbed: Testbed, chain: Chain, name: str, clusters: Iterable[str]) -> pd.DataFrame:
    """Milestones of every container (current and previous) of ``name``'s real pods in ``clusters``."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    frames = []
    for cluster in clusters:
        core = client.CoreV1Api(testbed.kube(cluster))
        ns = pod_namespace(chain, name, cluster)
        try:
            pods = core.list_namespaced_pod(ns, label_selector=f"{INSTANCE}={name}", _request_timeout=10).items
        except Exception:  # an unreachable or missing namespace holds nothing to read
            continue
        for pod in pods:
            if pod.spec.node_name and pod.spec.node_name.startswith("liqo-"):
                continue  # the home view of an offloaded pod: its logs are in the provider
            for previous in (False, True):
                try:
                    text = core.read_namespaced_pod_log(pod.metadata.name, ns, previous=previous,
                                                        _request_timeout=15)
                except (ApiException, Exception):
                    continue
                frames.append(parse_log(text).assign(cluster=cluster, pod=pod.metadata.name))
    if not frames:
        return pd.DataFrame(columns=["t", "event", "input", "seconds", "message", "cluster", "pod"])
    return pd.concat(frames, ignore_index=True).drop_duplicates(["t", "event", "pod"])


def restart_logs(testbed: Testbed, chain: Chain, cluster: str, since: float, attempts: int = 3) -> pd.DataFrame:
    """The low PDC's milestones after a fault in ``cluster``: its logs there and where it runs now.

    A log read can time out on a busy machine, and a replaced pod may run elsewhere, so both
    clusters are read, up to ``attempts`` times until a ``process started`` after ``since`` shows.
    """
    logs = pd.DataFrame()
    for attempt in range(attempts):
        clusters = {cluster, hosting_cluster(testbed, chain, chain.low)}
        logs = pdc_logs(testbed, chain, chain.low, sorted(clusters))
        if ((logs["event"] == "process started") & (logs["t"] >= since)).any():
            break
        time.sleep(2.0 * (attempt + 1))
    return logs


# --------------------------------------------------------------------------- phases


def phase_split(last_old: float, first_new: float,
                milestones: Sequence[tuple[str, float | None]]) -> list[tuple[str, float, float]]:
    """Consecutive phases from ``last_old`` to ``first_new`` ending at ``milestones`` (name, time).

    Missing milestones (``None``) are skipped, the next phase starting where the previous
    ended; times out of order are clamped into ``[previous end, first_new]``. The last phase
    (``first frame``) ends at ``first_new``. The durations add up to ``first_new - last_old``.
    """
    if first_new < last_old:
        raise ValueError(f"first_new {first_new} is before last_old {last_old}")
    out: list[tuple[str, float, float]] = []
    start = last_old
    for name, t in milestones:
        if t is None or not np.isfinite(t):
            continue
        end = min(max(float(t), start), first_new)
        out.append((name, start, end))
        start = end
    out.append(("first frame", start, first_new))
    return out


def first_at(frame: pd.DataFrame, after: float, **equal: Any) -> float | None:
    """Time of the first row of ``frame`` (column ``t``, UNIX s) at or after ``after`` matching ``equal``."""
    if frame.empty:
        return None
    sel = frame[frame["t"] >= after]
    for column, value in equal.items():
        sel = sel[sel[column] == value]
    return float(sel["t"].min()) if not sel.empty else None


def unix_seconds(series: pd.Series) -> pd.Series:
    """UTC timestamps as UNIX seconds."""
    return (pd.to_datetime(series, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def downtime_after(frames: pd.DataFrame, t_fault: float, stream: str, until: float | None = None,
                   window_s: float = 30.0) -> pd.Series | None:
    """The outage of ``stream`` a fault caused: its longest downtime whose last old frame is from 2 s
    before the fault to ``until`` (the fault's removal, which waits for the stream to come back;
    default ``window_s`` after the fault).

    A few frames a busy PDC dropped while the fault was being detected make a shorter downtime;
    what the next repetition does (a fresh pod replacing this one) comes after ``until``.
    """
    sel = frames[frames["stream"] == stream] if "stream" in frames else frames
    if sel.empty:
        return None
    end = until if until is not None else t_fault + window_s
    dt = stream_downtime(sel, threshold=DOWNTIME_THRESHOLD_S)
    dt = dt[(dt["last_old"] >= t_fault - 2.0) & (dt["last_old"] <= end)]
    return dt.sort_values("value").iloc[-1] if not dt.empty else None


def repetition_rows(*, rep: int, t_fault: float, frames: pd.DataFrame, logs: pd.DataFrame,
                    milestones_before: Sequence[tuple[str, float | None]], cluster: str,
                    detection_before_downtime: bool, ready_at: float | None = None,
                    high_logs: pd.DataFrame | None = None, high_input: str = "", terminated: bool = True,
                    until: float | None = None, **keys: Any) -> list[dict[str, Any]]:
    """Tidy rows of one repetition: ``stream_downtime`` and the ``phase`` rows of each stream.

    ``milestones_before`` are the scenario's own milestones preceding the PDC's log milestones
    (cluster failure: NotReady, replacement pod). ``logs`` are the low PDC's milestones (old and
    new container), ``ready_at`` when the owner saw the new pod Ready, ``high_logs`` the high
    PDC's milestones (its input ``high_input``, the low PDC, reconnecting). ``terminated``: the old
    container's end is observable (pod failure; not when its cluster is cut off). ``until``: when
    the fault was removed (:func:`downtime_after`). Every phase row names, in ``missing``, the
    milestones expected but not observed in this repetition.
    """
    rows: list[dict[str, Any]] = []
    base = {"repetition": rep, "cluster": cluster, **keys}
    for stream in ("low", "high"):
        d = downtime_after(frames, t_fault, stream, until)
        if d is None:
            rows.append({**base, "metric": "stream_downtime", "unit": "s", "t": pd.Timestamp(t_fault, unit="s", tz="UTC"),
                         "value": np.nan, "stream": stream, "recovered": False})
            continue
        rows.append({**base, "metric": "stream_downtime", "unit": "s", "t": d["t"], "value": float(d["value"]),
                     "stream": stream, "recovered": True, "last_old": float(d["last_old"]),
                     "first_new": float(d["first_new"]), "missing_frames": int(d["missing_frames"]),
                     "pmu_idcode": int(d["pmu_idcode"])})
        last_old, first_new = float(d["last_old"]), float(d["first_new"])
        milestones = stream_milestones(logs, last_old, first_new, t_fault, milestones_before, ready_at,
                                       high_logs if stream == "high" else None, high_input, terminated)
        missing = ",".join(name for name, t in milestones if t is None)
        source = config_source(logs, last_old)
        for name, start, end in phase_split(last_old, first_new, milestones):
            rows.append({**base, "metric": "phase", "unit": "s", "t": pd.Timestamp(end, unit="s", tz="UTC"),
                         "value": end - start, "stream": stream, "phase": name, "start": start, "end": end,
                         "config_source": source, "missing": missing})
        if detection_before_downtime:
            kill = _first(logs, t_fault, first_new, "stopping") if terminated else None
            end = kill if kill is not None else last_old
            rows.append({**base, "metric": "phase", "unit": "s", "t": pd.Timestamp(end, unit="s", tz="UTC"),
                         "value": max(0.0, end - t_fault), "stream": stream, "phase": "detection",
                         "start": t_fault, "end": end, "config_source": source, "missing": missing})
    return rows


def _first(logs: pd.DataFrame | None, since: float, until: float, event: str, **equal: Any) -> float | None:
    """Time of the first ``event`` in ``logs`` within ``[since, until]`` matching ``equal`` (None: none)."""
    if logs is None or logs.empty:
        return None
    t = first_at(logs[logs["t"] <= until], since, event=event, **equal)
    return t


def config_source(logs: pd.DataFrame, last_old: float) -> str:
    """Where the new PDC fetched its configuration from (``db``/``file``; empty: no fetch line)."""
    if logs.empty:
        return ""
    fetched = logs[(logs["t"] >= last_old - 0.5) & (logs["event"] == "config fetched")]
    return str(fetched["input"].iloc[0]) if len(fetched) else ""


def stream_milestones(logs: pd.DataFrame, last_old: float, first_new: float, t_fault: float,
                      before: Sequence[tuple[str, float | None]], ready_at: float | None,
                      high_logs: pd.DataFrame | None, high_input: str,
                      terminated: bool) -> list[tuple[str, float | None]]:
    """The milestones of one stream's downtime, in order (``None``: expected, not observed).

    From the low PDC's log: its old container's ``stopped`` (when ``terminated``), the new one's
    ``process started``, the configuration fetch (start = its line minus the duration it
    measured), ``input ... connected``; the owner's Ready; for the high stream (``high_logs``
    given) the high PDC's ``input <high_input> connected``. Log lines of the new container count
    from half a second before the last old frame (clocks of one machine, milliseconds).
    """
    since = last_old - 0.5
    after = logs[logs["t"] >= since] if not logs.empty else logs
    out = list(before)
    if terminated:
        out.append(("termination", _first(logs, t_fault, first_new, "stopped")))
    out.append(("restart", first_at(after, since, event="process started") if not after.empty else None))
    fetched = after[after["event"] == "config fetched"] if not after.empty else after
    if len(fetched):  # the fetch ends at its log line and lasted what the PDC measured
        fetch_end = float(fetched["t"].iloc[0])
        out += [("startup", fetch_end - float(fetched["seconds"].iloc[0])), ("config fetch", fetch_end)]
    else:
        out.append(("startup", first_at(after, since, event="listening") if not after.empty else None))
    out.append(("reconnect", first_at(after, since, event="input connected") if not after.empty else None))
    # Ready before the downtime: the owner never took the pod out of its Service (the phase takes no time)
    out.append(("readiness", None if ready_at is None else max(ready_at, since)))
    if high_logs is not None:
        out.append(("high reconnect", _first(high_logs, since, first_new + 1.0, "input connected", input=high_input)))
    return out
