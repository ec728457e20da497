"""The scenarios on a running test bed: one repetition of a pod or a cluster failure, and the
measurements (pod failure, cluster failure, island: deploy, record, inject, tidy rows with the
frame rates and the fault log) the experiment modules call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from labkit.config import Env
from labkit.deploy import INSTANCE
from labkit.deploy.chain import (Chain, chain_domains, chain_of, core_api, home_pods, hosting_cluster, pod_namespace,
                                 prepare, wait_databases)
from labkit.deploy.recorders import RecorderPod, record_chain, start_recorders, stop_recorders, wait_recovered
from labkit.experiments.stream.common import StreamError
from labkit.experiments.stream.phases import first_at, pdc_logs, repetition_rows, restart_logs, unix_seconds
from labkit.faults import ClusterDisconnect, FaultLog, FaultSpec, LivenessFail, injected
from labkit.measure import collecting
from labkit.measure.nodes import NodeReadyWatch, wait_node
from labkit.measure.pods import PodEvents
from labkit.measure.stream import valid_frames
from labkit.results import tidy
from labkit.testbed import Testbed
from labkit.waiting import wait_until
from labkit.workloads.timers import FAST, Timers


# --------------------------------------------------------------------------- one repetition


def pod_failure_once(testbed: Testbed, chain: Chain, recorders: Mapping[str, RecorderPod], rep: int, after_s: float,
                     timeout_s: float, log: FaultLog) -> tuple[float, str]:
    """Make the low PDC's liveness probe fail once it ran ``after_s`` s; wait until the stream is back.

    Returns the fault time (UNIX s, when the probe's file was created) and the hosting cluster.
    """
    cluster = hosting_cluster(testbed, chain, chain.low)
    spec = FaultSpec(name=f"liveness-{rep}", action=LivenessFail(
        cluster=cluster, namespace=pod_namespace(chain, chain.low, cluster), labels={INSTANCE: chain.low},
        after_s=after_s))
    with injected(testbed, chain.env, spec, log):
        t_fault = log.injected_at(spec.name).timestamp()
        if wait_recovered(recorders["low"], t_fault, timeout_s) is None:
            raise Unrecovered(t_fault, cluster, f"repetition {rep}: the low PDC's stream did not come back within "
                                                f"{timeout_s:.0f} s; {diagnose(testbed, chain, recorders)}")
        wait_recovered(recorders["high"], t_fault, 20.0)
    return t_fault, cluster


class Unrecovered(StreamError):
    """A repetition's stream did not come back in time: when its fault came, where, and what was seen."""

    def __init__(self, t_fault: float, cluster: str, message: str) -> None:
        super().__init__(message)
        self.t_fault, self.cluster = t_fault, cluster


def diagnose(testbed: Testbed, chain: Chain, recorders: Mapping[str, RecorderPod]) -> str:
    """What the low PDC's pods look like in its owner and where they run, its last log lines and the
    recorders' status: for the message of a repetition that did not recover."""
    parts = []
    try:
        clusters = {chain.owner(chain.low), hosting_cluster(testbed, chain, chain.low)}
        for cluster in sorted(clusters):
            pods = core_api(testbed, cluster).list_namespaced_pod(
                pod_namespace(chain, chain.low, cluster), label_selector=f"{INSTANCE}={chain.low}",
                _request_timeout=10).items
            for pod in pods:
                states = [f"{cs.name}: {_state(cs)} restarts={cs.restart_count} ready={cs.ready}"
                          for cs in (pod.status.container_statuses or [])]
                parts.append(f"{cluster}/{pod.metadata.name} on {pod.spec.node_name} phase={pod.status.phase}"
                             f"{' deleting' if pod.metadata.deletion_timestamp else ''} [{'; '.join(states)}]")
        logs = pdc_logs(testbed, chain, chain.low, sorted(clusters))
        parts.append("last PDC log lines: " + " | ".join(logs.sort_values("t")["message"].tail(6)))
    except Exception as exc:  # a diagnosis must not hide the failure it describes
        parts.append(f"(diagnosis failed: {exc})")
    parts += [f"DB domain {name}: {_db_state(testbed, chain, name)}" for name in chain_domains(chain)]
    parts += [f"recorder {name}: {rec.status()}" for name, rec in recorders.items()]
    return "; ".join(parts)


def _db_state(testbed: Testbed, chain: Chain, domain: str) -> str:
    """Each member's cluster and Galera state (a PDC reads its configuration from the domain), for a diagnosis."""
    from labkit.deploy import database

    keys = ("cluster", "wsrep_cluster_status", "wsrep_local_state_comment", "wsrep_cluster_size", "error",
            "restarts")
    try:
        members = database.describe(testbed, chain.plan, domain)
    except Exception as exc:  # a diagnosis must not hide the failure it describes
        return f"(not readable: {exc})"
    return "; ".join(f"{pod} " + " ".join(f"{k}={m[k]}" for k in keys if k in m) for pod, m in members.items())


def _state(cs: Any) -> str:
    """A container status' state as it reads (``running``, ``waiting: CrashLoopBackOff``, ...)."""
    if cs.state is None:
        return "?"
    if cs.state.waiting is not None:
        return f"waiting: {cs.state.waiting.reason}"
    return "terminated" if cs.state.terminated is not None else "running"


def _virtual_node(chain: Chain, cluster: str) -> str:
    """Name of the virtual node of provider ``cluster`` in the low PDC's owner (Liqo: ``liqo-<id>``)."""
    return f"liqo-{cluster}"


def cluster_failure_once(testbed: Testbed, chain: Chain, recorders: Mapping[str, RecorderPod], rep: int,
                         timeout_s: float, log: FaultLog) -> tuple[float, str, pd.DataFrame, pd.DataFrame]:
    """Disconnect the cluster running the low PDC until the stream is back; then reconnect it.

    Returns the fault time, the disconnected cluster, and the owner's node and pod observations.
    """
    cluster = hosting_cluster(testbed, chain, chain.low)
    others = {hosting_cluster(testbed, chain, n) for n in (*chain.pmus, chain.high)}
    if cluster in others or cluster == chain.owner(chain.low):
        raise StreamError(f"repetition {rep}: the low PDC runs in {cluster}, which also runs its PMU, the high "
                          f"PDC or owns the namespace; disconnecting it would not be a low-PDC failure")
    owner = chain.owner(chain.low)
    keys = {"run_id": "", "scenario": "", "step": "measure"}  # the experiment's table sets its own
    nodes = NodeReadyWatch(core_api(testbed, owner), cluster=owner, nodes=[_virtual_node(chain, cluster)], **keys)
    pods = PodEvents(core_api(testbed, owner), cluster=owner, namespace=chain.namespace(chain.low),
                     label_selector=f"{INSTANCE}={chain.low}", **keys)
    old = {p.metadata.name for p in home_pods(testbed, chain, chain.low)}
    spec = FaultSpec(name=f"disconnect-{rep}", action=ClusterDisconnect(cluster=cluster))
    with collecting([nodes, pods]):
        with injected(testbed, chain.env, spec, log):
            t_fault = log.injected_at(spec.name).timestamp()
            if wait_recovered(recorders["low"], t_fault, timeout_s) is None:
                raise Unrecovered(t_fault, cluster, f"repetition {rep}: the low PDC's stream did not come back "
                                                    f"within {timeout_s:.0f} s of disconnecting {cluster}; "
                                                    f"{diagnose(testbed, chain, recorders)}")
            wait_recovered(recorders["high"], t_fault, 20.0)
        wait_node(core_api(testbed, owner), _virtual_node(chain, cluster), ready=True, timeout=120.0, interval=1.0)
    wait_single_pod(testbed, chain, chain.low, 120.0)
    pod_rows = pods.collect()
    pod_rows = pod_rows.assign(new=~pod_rows["pod"].isin(old)) if not pod_rows.empty else pod_rows
    return t_fault, cluster, nodes.collect(), pod_rows


def replace_pod(testbed: Testbed, chain: Chain, recorders: Mapping[str, RecorderPod], name: str,
                timeout_s: float) -> None:
    """Delete the pod of component ``name``; wait until its controller's new pod streams again.

    Raises
    ------
    StreamError
        When the low recorder sees no new frame within ``timeout_s``.
    """
    core = core_api(testbed, chain.owner(name))
    since = time.time()
    for pod in home_pods(testbed, chain, name):
        core.delete_namespaced_pod(pod.metadata.name, chain.namespace(name))
    if wait_recovered(recorders["low"], since, timeout_s) is None:
        raise Unrecovered(since, chain.owner(name), f"{name}: no frame at the low recorder within {timeout_s:.0f} s "
                                                    f"of replacing its pod; {diagnose(testbed, chain, recorders)}")
    wait_single_pod(testbed, chain, name, timeout_s)


def wait_single_pod(testbed: Testbed, chain: Chain, name: str, timeout: float) -> None:
    """Wait until the owner holds exactly one pod of ``name`` (evicted copies finished terminating)."""
    count = 0

    def single() -> bool:
        nonlocal count
        count = len(core_api(testbed, chain.owner(name)).list_namespaced_pod(
            chain.namespace(name), label_selector=f"{INSTANCE}={name}").items)
        return count == 1

    wait_until(single, timeout=timeout, interval=1.0, error=StreamError,
               message=lambda: f"{name}: {count} pods in {chain.owner(name)} after {timeout:.0f} s")


# --------------------------------------------------------------------------- experiments


@dataclass
class Observed:
    """What one repetition observed besides the recorders' frames (tidied once the frames are in)."""

    rep: int
    t_fault: float
    cluster: str
    logs: pd.DataFrame
    high_logs: pd.DataFrame
    ready_at: float | None
    before: list[tuple[str, float | None]] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)


def pod_watch(testbed: Testbed, chain: Chain, name: str, cluster: str | None = None) -> PodEvents:
    """A watch on component ``name``'s pods in ``cluster``: its owner by default (what the owner's Service and
    Liqo see), or a provider (its real pod, as the kubelet there reports it)."""
    keys = {"run_id": "", "scenario": "", "step": "measure"}  # the experiment's table sets its own
    where = cluster or chain.owner(name)
    return PodEvents(core_api(testbed, where), cluster=where, namespace=pod_namespace(chain, name, where),
                     label_selector=f"{INSTANCE}={name}", **keys)


def ready_again(pods: pd.DataFrame, since: float, new_only: bool = False) -> tuple[float | None, float]:
    """When a pod watch (:class:`~labkit.measure.pods.PodEvents` rows) saw the pod Ready again after ``since``,
    and for how long it saw it not Ready (s).

    ``new_only``: the first Ready of a pod created after ``since`` (column ``new``, the cluster
    failure's replacement), not Ready from its first sighting. Otherwise the first Ready after the
    pod was seen not Ready (a restart); a pod seen Ready throughout was never taken out of its
    Service: Ready at ``since`` and 0 s (the readiness phase then takes no time). ``(None, nan)``:
    the watch saw nothing.
    """
    if pods.empty:
        return None, np.nan
    sel = pods.assign(t=unix_seconds(pods["t"]))
    sel = sel[sel["t"] >= since]
    if new_only:
        sel = sel[sel["new"]] if "new" in sel else sel.iloc[0:0]
        ready = first_at(sel, since, value=1.0)
        return ready, (ready - float(sel["t"].min())) if ready is not None else np.nan
    if sel.empty:
        return None, np.nan
    down = sel[sel["value"] == 0.0]
    if down.empty:
        return since, 0.0
    start = float(down["t"].min())
    ready = first_at(sel, start, value=1.0)
    return ready, (ready - start) if ready is not None else np.nan


def container_restarts(testbed: Testbed, chain: Chain, name: str, cluster: str) -> dict[str, Any]:
    """Restart count of ``name``'s container in ``cluster`` and the wait between its last exit and start (s).

    From the pod's status (whole seconds): a wait of 10 s or more is the kubelet's restart back-off.
    """
    try:
        pods = core_api(testbed, cluster).list_namespaced_pod(
            pod_namespace(chain, name, cluster), label_selector=f"{INSTANCE}={name}", _request_timeout=10).items
    except Exception:  # a status read is a label of the row, not worth failing the run for
        return {"restarts": np.nan, "restart_wait_s": np.nan}
    for pod in pods:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            running = cs.state.running if cs.state else None
            exited = cs.last_state.terminated if cs.last_state else None
            if running is None:
                continue
            wait = np.nan
            if exited is not None and exited.finished_at is not None:
                wait = (running.started_at - exited.finished_at).total_seconds()
            return {"restarts": int(cs.restart_count or 0), "restart_wait_s": float(wait)}
    return {"restarts": np.nan, "restart_wait_s": np.nan}


def measure_pod_failure(testbed: Testbed, env: Env, *, repetitions: int, after_s: float, with_db: bool = True,
                        settle_s: float = 5.0, timeout_s: float = 120.0, timers: Timers = FAST, fresh_pod: bool = True,
                        **keys: Any) -> pd.DataFrame:
    """Fig. 7.3 on a running test bed: ``repetitions`` liveness failures of the low PDC; tidy rows.

    The chain runs with ``timers`` (:mod:`labkit.workloads.timers`). ``with_db``: the PDCs fetch
    their configuration from the DB domain at every start (the thesis); otherwise from their
    ConfigMap file. ``fresh_pod``: the low PDC's pod is replaced before every repetition but the
    first, so each failure restarts a container for the first time; otherwise (the thesis'
    protocol) one pod fails again and again and the kubelet's restart back-off applies once it
    exceeds the time between two failures (:func:`labkit.workloads.timers.restarts_without_backoff`).
    Besides the recorders: the owner's pod watch (Ready), both PDCs' logs and the container's
    restart count per repetition. ``keys`` label every row (``profile``, ...).
    """
    chain = chain_of(env)
    recorders = record_chain(testbed, chain, with_db, timers)
    high_cluster = hosting_cluster(testbed, chain, chain.high)
    log = FaultLog()
    seen: list[Observed] = []
    try:
        for rep in range(1, repetitions + 1):
            if fresh_pod and rep > 1:
                try:
                    replace_pod(testbed, chain, recorders, chain.low, timeout_s)
                except Unrecovered as exc:
                    seen.append(unrecovered(rep, exc, keys))
                    break
            cluster = hosting_cluster(testbed, chain, chain.low)
            owner, leaf = pod_watch(testbed, chain, chain.low), pod_watch(testbed, chain, chain.low, cluster)
            with collecting([owner, leaf]):
                try:
                    t_fault, cluster = pod_failure_once(testbed, chain, recorders, rep, after_s, timeout_s, log)
                except Unrecovered as exc:
                    seen.append(unrecovered(rep, exc, keys))
                    break
                time.sleep(settle_s)
            ready_at, owner_s = ready_again(owner.collect(), t_fault)
            labels = {**container_restarts(testbed, chain, chain.low, cluster), "not_ready_owner_s": owner_s,
                      "not_ready_leaf_s": ready_again(leaf.collect(), t_fault)[1]}
            seen.append(Observed(rep, t_fault, cluster, restart_logs(testbed, chain, cluster, t_fault),
                                 pdc_logs(testbed, chain, chain.high, [high_cluster]), ready_at, labels=labels))
    finally:
        frames = stop_recorders(recorders)
    return _tidy(seen, frames, log, chain, keys, detection_before_downtime=True, terminated=True)


def unrecovered(rep: int, exc: Unrecovered, keys: Mapping[str, Any]) -> Observed:
    """Repetition ``rep`` as one that did not recover (said on stdout; its rows carry the message as ``failure``).

    The measurement stops there (the chain is in a state the next repetition would not start
    from); the experiment's other measurements go on, and its ``unrecovered`` headline fails the
    run's bound.
    """
    print(f"[stream] {keys.get('profile') or 'measurement'}: {exc}; its remaining repetitions are skipped", flush=True)
    empty = pd.DataFrame(columns=["t", "event", "input", "seconds", "message"])
    return Observed(rep, exc.t_fault, exc.cluster, empty, empty, None, labels={"failure": str(exc)})


def _tidy(seen: list[Observed], frames: pd.DataFrame, log: FaultLog, chain: Chain, keys: Mapping[str, Any], *,
          detection_before_downtime: bool, terminated: bool) -> pd.DataFrame:
    """The experiment's table from every repetition's observations and the recorders' frames."""
    rows: list[dict[str, Any]] = []
    for o in seen:
        rows += repetition_rows(rep=o.rep, t_fault=o.t_fault, frames=frames, logs=o.logs, milestones_before=o.before,
                                cluster=o.cluster, detection_before_downtime=detection_before_downtime,
                                ready_at=o.ready_at, high_logs=o.high_logs, high_input=chain.low,
                                terminated=terminated, until=log.recovered_after(o.t_fault), **o.labels, **keys)
    return experiment_table(rows, frames, log, keys)


def measure_cluster_failure(testbed: Testbed, env: Env, *, repetitions: int, with_db: bool = True, settle_s: float = 5.0,
                            timeout_s: float = 180.0, timers: Timers = FAST, **keys: Any) -> pd.DataFrame:
    """Fig. 7.4 on a running test bed: ``repetitions`` disconnections of the low PDC's cluster; tidy rows.

    ``with_db`` and ``timers`` as in :func:`measure_pod_failure`; every repetition after the
    first starts once the DB domains are complete again (:func:`~.chain.wait_databases`).
    """
    chain = chain_of(env)
    recorders = record_chain(testbed, chain, with_db, timers)
    high_cluster = hosting_cluster(testbed, chain, chain.high)
    log = FaultLog()
    seen: list[Observed] = []
    try:
        for rep in range(1, repetitions + 1):
            if with_db and rep > 1:
                wait_databases(testbed, chain)
            try:
                t_fault, cluster, nodes, pods = cluster_failure_once(testbed, chain, recorders, rep, timeout_s, log)
            except Unrecovered as exc:
                seen.append(unrecovered(rep, exc, keys))
                break
            time.sleep(settle_s)
            node_t = nodes.assign(t=unix_seconds(nodes["t"])) if not nodes.empty else nodes
            pod_t = pods.assign(t=unix_seconds(pods["t"])) if not pods.empty else pods
            before = [("detection", first_at(node_t, t_fault, value=0.0) if not node_t.empty else None),
                      ("eviction", first_at(pod_t, t_fault, new=True) if not pod_t.empty else None)]
            ready_at, not_ready_s = ready_again(pods, t_fault, new_only=True)
            seen.append(Observed(rep, t_fault, cluster, restart_logs(testbed, chain, cluster, t_fault),
                                 pdc_logs(testbed, chain, chain.high, [high_cluster]), ready_at, before=before,
                                 labels={"not_ready_owner_s": not_ready_s}))
    finally:
        frames = stop_recorders(recorders)
    return _tidy(seen, frames, log, chain, keys, detection_before_downtime=False, terminated=False)


def measure_island(testbed: Testbed, env: Env, *, isolation_s: float, before_s: float, after_s: float,
                   with_db: bool = True, **keys: str) -> pd.DataFrame:
    """Fig. 6.2 on a running test bed: cut the low PDC's cluster off for ``isolation_s`` s; tidy rows.

    The low PDC's recorder runs in the isolated cluster (it connects to the PDC's pod
    address), the high PDC's in its owner. Rows: ``frame_rate`` per second and stream,
    ``frames_lost`` per stream for the isolation window, and the fault's ``fault`` rows.
    """
    chain = chain_of(env)
    image = prepare(testbed, chain, with_db)
    cluster, low_ip = running_address(testbed, chain, chain.low)
    placed = {n: hosting_cluster(testbed, chain, n) for n in chain.pmus}
    recorders = start_recorders(testbed, chain, image, low_cluster=cluster, low_target=low_ip)
    log = FaultLog()
    try:
        time.sleep(before_s)
        spec = FaultSpec(name="island", action=ClusterDisconnect(cluster=cluster), duration_s=isolation_s)
        with injected(testbed, chain.env, spec, log):
            pass
        time.sleep(after_s)
    finally:
        frames = stop_recorders(recorders)
    t_cut = log.injected_at("island").timestamp()
    t_back = next(e.t for e in log.events if e.phase == "recover").timestamp()
    rows = island_rows(frames, t_cut, t_back, chain.env.grid.fps, cluster=cluster,
                       colocated=all(c == cluster for c in placed.values()),
                       placement=",".join(f"{n}@{c}" for n, c in sorted(placed.items())), **keys)
    return experiment_table(rows, frames, log, keys)


def running_address(testbed: Testbed, chain: Chain, name: str) -> tuple[str, str]:
    """The cluster really running ``name`` and its pod's address there."""
    cluster = hosting_cluster(testbed, chain, name)
    ns = pod_namespace(chain, name, cluster)
    pods = [p for p in core_api(testbed, cluster).list_namespaced_pod(ns, label_selector=f"{INSTANCE}={name}").items
            if p.status.phase == "Running" and p.status.pod_ip and p.metadata.deletion_timestamp is None]
    if not pods:
        raise StreamError(f"{name}: no running pod in {cluster}/{ns}")
    return cluster, pods[0].status.pod_ip


def island_rows(frames: pd.DataFrame, t_cut: float, t_back: float, fps: int, **labels: Any) -> list[dict[str, Any]]:
    """Frames lost per stream in ``[t_cut, t_back]`` (expected = one per 1/fps slot) and per-second rates."""
    rows: list[dict[str, Any]] = []
    for stream, grp in frames.groupby("stream"):
        valid = valid_frames(grp)
        for pmu, pg in valid.groupby("pmu_idcode"):
            t = pg["frame_time"].to_numpy()
            expected = int(np.floor(t_back * fps) - np.ceil(t_cut * fps) + 1)
            got = int(((t >= t_cut) & (t <= t_back)).sum())
            rows.append({**labels, "metric": "frames_lost", "unit": "frames", "t": pd.Timestamp(t_back, unit="s", tz="UTC"),
                         "value": float(expected - got), "stream": stream, "pmu_idcode": int(pmu),
                         "expected": expected, "received": got, "start": t_cut, "end": t_back})
    return rows


def rate_rows(frames: pd.DataFrame, **labels: Any) -> list[dict[str, Any]]:
    """Data frames per second (by frame timestamp, 1 s bins) per stream and PMU, zero-filled inside the span."""
    rows: list[dict[str, Any]] = []
    for (stream, pmu), grp in valid_frames(frames).groupby(["stream", "pmu_idcode"]):
        sec = np.floor(grp["frame_time"].to_numpy()).astype(np.int64)
        counts = pd.Series(sec).value_counts().sort_index()
        full = counts.reindex(range(int(sec.min()), int(sec.max()) + 1), fill_value=0)
        for s, n in full.items():
            rows.append({**labels, "metric": "frame_rate", "unit": "1/s", "t": pd.Timestamp(int(s), unit="s", tz="UTC"),
                         "value": float(n), "stream": stream, "pmu_idcode": int(pmu)})
    return rows


def experiment_table(rows: list[dict[str, Any]], frames: pd.DataFrame, log: FaultLog,
                     keys: Mapping[str, Any]) -> pd.DataFrame:
    """The experiment's tidy table: its rows, the per-second frame rates and the fault log."""
    defaults = {"run_id": "", "scenario": "", "step": "measure", "cluster": "", **keys}
    parts = [tidy(rows, **defaults)] if rows else []
    parts.append(tidy(rate_rows(frames), **defaults))
    parts.append(log.table(**{k: v for k, v in defaults.items() if k != "cluster"}))
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    return tidy(out)
