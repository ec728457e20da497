"""Stream reaction time (thesis 7.4, Figs. 7.3 and 7.4) and island operation (6.1, Fig. 6.2).

One harness for the four PMU-stream notebooks: it deploys the env's synchrophasor chain
(``labkit.workloads.render``: PMUs -> low PDC -> high PDC) into a running test bed, records
every frame of the low and the high PDC's output with a :mod:`labkit.grid.recorder` pod, injects
a fault through :mod:`labkit.faults` and keeps recording until the stream is back.

- **pod failure** (Fig. 7.3, notebook 40; on the 6.2 implementation, notebook 80): the low PDC's
  liveness probe starts failing once its container has run ``after_s`` seconds (the thesis: 60 s);
  the kubelet of the cluster that really runs it restarts the container.
- **cluster failure** (Fig. 7.4, notebook 50): every VM of the cluster running the low PDC
  loses its lab interface; the owner sees the virtual node NotReady, evicts the pod, and the
  Deployment recreates it on another cluster.
- **island** (Fig. 6.2, notebook 60): the cluster running the low PDC *and its PMU* is cut off
  for ``isolation_s`` seconds and comes back; frames seen at both PDCs before, during, after.

Downtime is the thesis' definition (7.4): timestamp of the first frame of the new stream minus
that of the last frame of the old one (:func:`labkit.measure.stream.stream_downtime`). It is
split into phases at *measured* milestones, each taken from an observation of this run:

=============  ===================================================================================
phase          ends when (source)
=============  ===================================================================================
detection      pod failure: the old stream's last frame after the probe started failing
               (recorder; *before* the downtime, not part of it); cluster failure: the owner sees
               the virtual node NotReady (node watch, ms)
eviction       cluster failure: the replacement pod appears in the owner (pod watch, ms)
restart        the new PDC process logs ``process started`` (its log, ms)
startup        the configuration fetch starts (the PDC's ``config-fetch`` line minus the duration it
               measured), or without that line the PDC logs ``listening``
config fetch   the PDC logs ``config-fetch ... seconds=<s>`` (:func:`labkit.grid.config.parse_fetch_line`):
               from its DB domain (the thesis), or from its ConfigMap file (``with_db=False``)
reconnect      the PDC logs ``input <pmu> connected`` (CFG-2 of its input received; includes binding
               its output and the DNS lookup of the input)
first frame    the recorder receives the first frame of the new stream (its timestamp)
=============  ===================================================================================

Phases are consecutive, so they add up to the downtime exactly; a milestone observed out of
order (log lines and watch events come from different clocks' paths) is clamped into its
neighbours' interval, and the raw timestamps are kept in the table.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from labkit import reference
from labkit.config import Env, load_env, validate_env
from labkit.faults import FaultLog, FaultSpec, Selector, injected
from labkit.measure import collecting
from labkit.measure.nodes import NodeReadyWatch
from labkit.measure.pods import PodEvents
from labkit.grid.config import parse_fetch_line
from labkit.measure.stream import stream_downtime, valid_frames
from labkit.results import tidy
from labkit.testbed import load_image, off_event_loop, running
from labkit.testbed.pods import PodHost, start_pods
from labkit.topology import Plan, plan as make_plan
from labkit.workloads.render import C37118_PORT, Images, Manifest, grid, owner as namespace_owner

#: Namespace of the recorder pods (never offloaded: they stay where they are put).
RECORDER_NAMESPACE = "labkit-stream"
#: IDCODE the recorders put in their command frames.
RECORDER_IDCODE = 950
#: Files of a recorder pod (an emptyDir at /data).
REC_OUT, REC_STOP, REC_STATUS = "/data/frames.parquet", "/data/stop", "/data/status.json"
#: Label every grid object carries with its instance name (``labkit.workloads.render``).
INSTANCE = "app.kubernetes.io/instance"
#: Order of the phases in tables and figures.
PHASES = ("detection", "eviction", "restart", "startup", "config fetch", "reconnect", "first frame")
#: A gap of at least this many seconds between data frames is a downtime.
DOWNTIME_THRESHOLD_S = 0.5


class StreamError(RuntimeError):
    """The chain could not be deployed, or a stream did not behave (the message says which)."""


# --------------------------------------------------------------------------- envs


def _raw(env: Env) -> dict[str, Any]:
    """The env as a plain mapping (to derive variants)."""
    return env.model_dump(mode="json", exclude_none=True)


def colocated_env(env: Env) -> Env:
    """``env`` with each low PDC and the PMUs it reads required on one cluster (island: the leaf keeps its sources).

    That cluster is the low PDC's first preferred one, else the first its placement allows.
    """
    raw = _raw(env)
    for pdc, spec in zip(raw["grid"]["pdcs"], env.grid.pdcs):
        if spec.level != "low":
            continue
        allowed = _placement_clusters(env, spec.placement)
        home = (spec.placement.prefer or allowed or [None])[0]
        if home is None:
            raise StreamError(f"env {env.name!r}: the placement of {spec.name!r} allows no cluster")
        pdc["placement"] = {"clusters": [home], "prefer": [home]}
        for pmu in raw["grid"]["pmus"]:
            if pmu["name"] in spec.inputs:
                pmu["placement"] = {"clusters": [home], "prefer": [home]}
    raw["name"] = f"{env.name}-colocated"
    return validate_env(raw, source=f"colocated_env({env.name})")


def movable_low_env(env: Env) -> Env:
    """``env`` with the low PDC allowed only on clusters not preferred by its PMUs or the high PDC.

    A cluster failure must take down the low PDC alone: after each repetition the PDC lands
    somewhere else, and the next repetition disconnects that cluster.
    """
    raw = _raw(env)
    pdcs = raw["grid"]["pdcs"]
    taken = {c for item in [*raw["grid"]["pmus"], *[p for p in pdcs if p["level"] == "high"]]
             for c in item.get("placement", {}).get("prefer", [])[:1]}
    candidates = _placement_clusters(env, next(p for p in env.grid.pdcs if p.level == "low").placement)
    free = [c for c in candidates if c not in taken]
    if len(free) < 2:
        raise StreamError(f"env {env.name!r}: the low PDC needs two clusters free of its PMUs and the high PDC "
                          f"to move between (candidates {candidates}, taken {sorted(taken)})")
    for pdc in pdcs:
        if pdc["level"] == "low":
            prefer = [c for c in pdc.get("placement", {}).get("prefer", []) if c in free]
            pdc["placement"] = {"clusters": free, "prefer": prefer}
    raw["name"] = f"{env.name}-movable"
    return validate_env(raw, source=f"movable_low_env({env.name})")


def _placement_clusters(env: Env, placement: Any) -> list[str]:
    """Every cluster a placement allows (its clusters, group members and DB-domain members)."""
    out = list(placement.clusters)
    out += [m for g in env.groups if g.name in placement.groups for m in g.members]
    out += [m for d in env.db_domains if d.name in placement.domains for m in d.members]
    return sorted(set(out))


def reduced_env(env: Env, keep: Sequence[str]) -> Env:
    """``env`` restricted to the clusters ``keep`` and to what its grid chain needs.

    DB domains and offloads of namespaces the grid does not use are dropped, the others
    trimmed to ``keep``; groups no kept offload or placement names are dropped. For CI: the
    11-cluster multi-level env reduced to one branch of each level.
    """
    kept = set(keep)
    raw = _raw(env)
    raw["name"] = f"{env.name}-reduced"
    raw["clusters"] = [c for c in raw["clusters"] if c["name"] in kept]
    grid = raw["grid"]
    used = {item.get("namespace") or grid.get("namespace", "test") for item in [*grid["pmus"], *grid["pdcs"]]}
    raw["db_domains"] = [{**d, "members": [m for m in d["members"] if m in kept],
                          "replicas": min(d.get("replicas", 3), len([m for m in d["members"] if m in kept]))}
                         for d in raw.get("db_domains", []) if d["namespace"] in used
                         and any(m in kept for m in d["members"])]
    raw["offloading"] = [{**o, "clusters": [c for c in o.get("clusters", []) if c in kept]}
                         for o in raw.get("offloading", []) if o["namespace"] in used and o["consumer"] in kept]
    named = {g for o in raw["offloading"] for g in o.get("groups", [])}
    named |= {g for item in [*grid["pmus"], *grid["pdcs"]] for g in item.get("placement", {}).get("groups", [])}
    groups = []
    for g in raw.get("groups", []):
        members = [m for m in g["members"] if m in kept]
        if g["name"] in named and members:
            groups.append({k: v for k, v in {**g, "members": members}.items()
                           if k != "main" or v in members})
    raw["groups"] = groups
    names = {g["name"] for g in groups}
    for o in raw["offloading"]:
        o["groups"] = [g for g in o.get("groups", []) if g in names]
    if raw.get("peerings") is not None:
        raw["peerings"] = [p for p in raw["peerings"] if p["consumer"] in kept and p["provider"] in kept]
    domains = {d["name"] for d in raw["db_domains"]}
    for item in [*grid["pmus"], *grid["pdcs"]]:
        pl = item.get("placement", {})
        item["placement"] = {"clusters": [c for c in pl.get("clusters", []) if c in kept],
                             "groups": [g for g in pl.get("groups", []) if g in names],
                             "domains": [d for d in pl.get("domains", []) if d in domains],
                             "prefer": [c for c in pl.get("prefer", []) if c in kept]}
    return validate_env(raw, source=f"reduced_env({env.name}, {sorted(kept)})")


#: The clusters of ``envs/multilevel.yaml`` a CI run keeps: the ACC, the group area-1 (p-1 main,
#: p-2 backup) and two secondaries of p-1 (the low PDC's domain).
MULTILEVEL_CI = ("acc", "p-1", "p-2", "s-1-1", "s-1-2")


# --------------------------------------------------------------------------- the chain on a test bed


@dataclass(frozen=True)
class Chain:
    """The grid chain of an env as deployed: the plan and the names of its low and high PDC."""

    env: Env
    plan: Plan
    low: str
    high: str
    pmus: tuple[str, ...]

    def namespace(self, name: str) -> str:
        """The home namespace of component ``name``."""
        items = {i.name: i for i in [*self.env.grid.pmus, *self.env.grid.pdcs]}
        return items[name].namespace or self.env.grid.namespace

    def owner(self, name: str) -> str:
        """The cluster owning (offloading) the namespace of ``name``."""
        return namespace_owner(self.plan, self.namespace(name))

    def remote_namespace(self, name: str) -> str:
        """The namespace of ``name``'s pod in a provider cluster (Liqo's namespace mapping)."""
        ns = self.namespace(name)
        off = next((o for o in self.plan.offloads if o.namespace == ns), None)
        if off is None or off.mapping_strategy == "EnforceSameName":
            return ns
        return f"{ns}-{off.consumer}"


def chain_of(env: Env) -> Chain:
    """The chain of ``env``: its (first) low PDC, the high PDC reading it, the low PDC's PMUs."""
    lows = [p for p in env.grid.pdcs if p.level == "low"]
    if not lows:
        raise StreamError(f"env {env.name!r} has no low-level PDC in its grid")
    low = lows[0]
    high = next((p for p in env.grid.pdcs if p.level == "high" and low.name in p.inputs), None)
    if high is None:
        raise StreamError(f"env {env.name!r}: no high-level PDC reads {low.name!r}")
    return Chain(env, make_plan(env), low.name, high.name, tuple(low.inputs))


def grid_clusters(chain: Chain) -> list[str]:
    """Clusters where the chain's pods may run, plus the owners of its namespaces."""
    out: set[str] = set()
    for ns in {chain.namespace(n) for n in (*chain.pmus, chain.low, chain.high)}:
        owner = namespace_owner(chain.plan, ns)
        out.add(owner)
        for off in chain.plan.offloads:
            if off.namespace == ns:
                out.update(off.providers)
    return sorted(out)


#: Clusters of a test bed that already hold the runtime image (several experiments on one test bed).
def load_runtime(testbed: Any, clusters: Iterable[str]) -> str:
    """Import the ``runtime`` image into every node of ``clusters``; return its reference."""
    return load_image(testbed, sorted(set(clusters)), "runtime")


def apply_object(api: Any, obj: Mapping[str, Any]) -> None:
    """Create one namespaced object (ConfigMap, Secret, Service, Deployment, StatefulSet) in its cluster."""
    from kubernetes import client

    ns = obj["metadata"]["namespace"]
    kind = obj["kind"]
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    create: dict[str, Callable[..., Any]] = {
        "ConfigMap": core.create_namespaced_config_map, "Secret": core.create_namespaced_secret,
        "Service": core.create_namespaced_service, "Deployment": apps.create_namespaced_deployment,
        "StatefulSet": apps.create_namespaced_stateful_set}
    if kind not in create:
        raise StreamError(f"cannot apply a {kind} ({obj['metadata']['name']}): not a kind of the grid chain")
    create[kind](ns, dict(obj))


def chain_domains(chain: Chain) -> list[str]:
    """The DB domains keeping the configuration of the chain's PDCs (those of their namespaces)."""
    namespaces = {chain.namespace(chain.low), chain.namespace(chain.high)}
    return [d.name for d in chain.env.db_domains if d.namespace in namespaces]


def deploy_databases(testbed: Any, chain: Chain, log: Callable[[str], None] = print) -> list[str]:
    """Run the DB domains of the chain's PDCs and store the PDCs' configuration in them (thesis 3.2, 7.4).

    Uses :mod:`labkit.experiments.database` (Galera, as the thesis' Percona XtraDB Cluster).
    """
    from labkit.experiments import database

    from kubernetes import client
    from kubernetes.client.rest import ApiException

    domains = chain_domains(chain)
    if not domains:
        raise StreamError(f"env {chain.env.name!r}: no DB domain holds the namespaces of {chain.low}/{chain.high}")
    for name in domains:
        domain = database.domain_of(chain.plan, name)
        apps = client.AppsV1Api(testbed.kube(namespace_owner(chain.plan, domain.namespace)))
        try:  # a previous experiment on this test bed already runs it: wait for every member (one may rejoin)
            apps.read_namespaced_stateful_set(database.statefulset_name(domain), domain.namespace)
            database.wait_complete(testbed, chain.plan, domain, 300.0)
        except ApiException as exc:
            if exc.status != 404:
                raise
            database.deploy_database(testbed, chain.plan, name, log=log)
        database.write_pdc_configs(testbed, chain.plan, name)
    return domains


def deploy_chain(testbed: Any, chain: Chain, image: str, with_db: bool, estimator: bool = False) -> list[Manifest]:
    """Apply the env's PMUs and PDCs (and the state estimator if ``estimator``) to their owners.

    ``with_db``: the PDCs fetch their configuration from their DB domain (deployed first by
    :func:`deploy_databases`); otherwise they read their ConfigMap file. Returns what was applied.
    """
    images = Images(runtime=image, galera=Images.kit().galera)
    manifests = [m for m in grid(chain.plan, images, with_db=with_db)
                 if estimator or m.obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "se"]
    for m in manifests:
        apply_object(testbed.kube(m.cluster), m.obj)
    return manifests


def remove_chain(testbed: Any, chain: Chain, timeout: float = 120.0) -> None:
    """Delete the chain's objects and the recorder pods, and wait until their pods are gone.

    For several experiments on one test bed (the DB domains stay).
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    names = [*chain.pmus, chain.low, chain.high]
    for name in names:
        api, ns = testbed.kube(chain.owner(name)), chain.namespace(name)
        for delete in (client.AppsV1Api(api).delete_namespaced_deployment, client.CoreV1Api(api).delete_namespaced_service,
                       lambda n, s: client.CoreV1Api(api).delete_namespaced_config_map(f"{n}-config", s)):
            try:
                delete(name, ns)
            except ApiException as exc:
                if exc.status != 404:
                    raise
    for cluster in testbed.clusters():
        core = _core(testbed, cluster)
        try:
            core.delete_collection_namespaced_pod(RECORDER_NAMESPACE, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + timeout
    while True:
        left = [p.metadata.name for name in names for p in _core(testbed, chain.owner(name)).list_namespaced_pod(
            chain.namespace(name), label_selector=f"{INSTANCE}={name}").items]
        left += [p.metadata.name for c in testbed.clusters()
                 for p in _core(testbed, c).list_namespaced_pod(RECORDER_NAMESPACE).items]
        if not left:
            return
        if time.monotonic() > deadline:
            raise StreamError(f"pods of the chain still there after {timeout:.0f} s: {left}")
        time.sleep(1.0)


def wait_ready(testbed: Any, chain: Chain, names: Iterable[str], timeout: float = 240.0) -> None:
    """Wait until the Deployment of each component in ``names`` has a ready replica."""
    from kubernetes import client

    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending:
        for name in sorted(pending):
            dep = client.AppsV1Api(testbed.kube(chain.owner(name))).read_namespaced_deployment(
                name, chain.namespace(name))
            if (dep.status.ready_replicas or 0) >= 1:
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise StreamError(f"components not ready after {timeout:.0f} s: {sorted(pending)} "
                              f"(see the pods of their owners and providers)")
        time.sleep(1.0)


def home_pods(testbed: Any, chain: Chain, name: str) -> list[Any]:
    """The pods of component ``name`` in its owner (not being deleted), newest first."""
    from kubernetes import client

    pods = client.CoreV1Api(testbed.kube(chain.owner(name))).list_namespaced_pod(
        chain.namespace(name), label_selector=f"{INSTANCE}={name}").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    return sorted(live, key=lambda p: p.metadata.creation_timestamp, reverse=True)


def hosting_cluster(testbed: Any, chain: Chain, name: str) -> str:
    """The cluster that really runs component ``name`` (the provider behind a virtual node, or the owner)."""
    from kubernetes import client

    owner = chain.owner(name)
    pods = [p for p in home_pods(testbed, chain, name) if p.spec.node_name]
    if not pods:
        raise StreamError(f"{name}: no scheduled pod in {owner}/{chain.namespace(name)}")
    node = client.CoreV1Api(testbed.kube(owner)).read_node(pods[0].spec.node_name)
    return (node.metadata.labels or {}).get("liqo.io/remote-cluster-id", owner)


def pod_namespace(chain: Chain, name: str, cluster: str) -> str:
    """Namespace of ``name``'s real pod in ``cluster`` (home namespace in the owner, else the remote one)."""
    return chain.namespace(name) if cluster == chain.owner(name) else chain.remote_namespace(name)


# --------------------------------------------------------------------------- recorders


@dataclass
class RecorderPod:
    """A recorder pod subscribed to one PDC's output."""

    stream: str          # "low" or "high"
    cluster: str
    target: str          # host the recorder connects to
    host: PodHost

    def status(self) -> dict[str, Any]:
        """The recorder's status file (frames, last frame time and arrival), empty before the first flush."""
        res = self.host.run(["cat", REC_STATUS], timeout=15)
        if not res.ok or not res.stdout.strip():
            return {}
        try:
            return json.loads(res.stdout)
        except ValueError:
            return {}


def recorder_manifest(name: str, image: str, node: str, target: str) -> dict[str, Any]:
    """A pod on ``node`` recording ``target``:4712 until ``/data/stop`` exists, then idling (for the fetch)."""
    cmd = (f"python -m labkit.grid.recorder --host {target} --port {C37118_PORT} --idcode {RECORDER_IDCODE} "
           f"--out {REC_OUT} --stop-file {REC_STOP} --status-file {REC_STATUS} --backoff-max 0.5 "
           f"--gap {DOWNTIME_THRESHOLD_S} "
           f"--flush-every 0.5; touch /data/done; sleep infinity")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "labkit-recorder",
                                                  "app.kubernetes.io/part-of": "labkit"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "restartPolicy": "Never",
                     "containers": [{"name": "recorder", "image": image, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sh", "-c", cmd],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}


def start_recorder(testbed: Any, env: Env, stream: str, cluster: str, target: str, image: str) -> RecorderPod:
    """Start a recorder pod on the first node of ``cluster`` subscribed to ``target``."""
    node = env.cluster(cluster).nodes[0].name
    (host,) = start_pods(testbed.kube(cluster), RECORDER_NAMESPACE,
                         [recorder_manifest(f"rec-{stream}", image, node, target)], timeout=180)
    return RecorderPod(stream, cluster, target, host)


def service_host(chain: Chain, name: str, cluster: str) -> str:
    """DNS name of ``name``'s Service as seen from ``cluster`` (reflected Services keep their name)."""
    return f"{name}.{pod_namespace(chain, name, cluster)}.svc"


def wait_streaming(recorders: Sequence[RecorderPod], timeout: float = 120.0, fresh_s: float = 1.0) -> None:
    """Wait until every recorder receives frames (last arrival at most ``fresh_s`` old)."""
    deadline = time.monotonic() + timeout
    pending = list(recorders)
    while pending:
        pending = [r for r in pending if not _fresh(r.status(), fresh_s)]
        if pending and time.monotonic() > deadline:
            raise StreamError(f"no frames after {timeout:.0f} s at recorder(s) "
                              f"{[(r.stream, r.cluster, r.target) for r in pending]}")
        time.sleep(1.0)


def _fresh(status: Mapping[str, Any], fresh_s: float) -> bool:
    """Whether a recorder status shows a frame that arrived within ``fresh_s`` seconds."""
    arrival = status.get("last_arrival")
    return arrival is not None and time.time() - float(arrival) <= fresh_s + 0.6  # + one flush period


def wait_recovered(recorder: RecorderPod, since: float, timeout: float) -> float | None:
    """Wait until ``recorder`` saw a gap of data frames ending after ``since`` (UNIX s); return the first new frame's
    time (None: not within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gap = recorder.status().get("last_gap")
        if gap and float(gap[1]) > since:
            return float(gap[1])
        time.sleep(0.5)
    return None


def stop_recorder(recorder: RecorderPod, timeout: float = 60.0) -> pd.DataFrame:
    """Stop the recorder, wait until its file is closed, fetch it and return its frames."""
    recorder.host.run(["touch", REC_STOP], timeout=15)
    deadline = time.monotonic() + timeout
    while not recorder.host.run(["test", "-e", "/data/done"], timeout=15).ok:
        if time.monotonic() > deadline:
            raise StreamError(f"recorder {recorder.stream} in {recorder.cluster} did not stop within {timeout:.0f} s")
        time.sleep(0.5)
    res = recorder.host.run(["base64", "-w0", REC_OUT], timeout=120)
    if not res.ok:
        raise StreamError(f"recorder {recorder.stream} in {recorder.cluster}: cannot read {REC_OUT}: {res.stderr}")
    frames = pd.read_parquet(io.BytesIO(base64.b64decode(res.stdout)), engine="pyarrow")
    return frames.assign(stream=recorder.stream)


# --------------------------------------------------------------------------- PDC logs

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\S+) (\w+) (.*)$")
#: Log messages of the PDC that mark a milestone: (event, pattern).
LOG_EVENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("process started", re.compile(r"^process started")),
    ("listening", re.compile(r"listening on ")),
    ("input connected", re.compile(r"^input (?P<input>\S+) connected")),
    ("first forward", re.compile(r"^first frame forwarded after (?P<kind>\w+) of (?P<input>\S+)")),
)


def parse_log(text: str) -> pd.DataFrame:
    """Milestones in a PDC log (the kit's format ``%(asctime)s %(name)s %(levelname)s %(message)s``, UTC).

    Returns columns ``t`` (UNIX s), ``event``, ``input`` (for ``config fetched``: ``file`` or ``db``),
    ``seconds`` (the fetch duration the PDC measured, :func:`labkit.grid.config.parse_fetch_line`), ``message``.
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


def pdc_logs(testbed: Any, chain: Chain, name: str, clusters: Iterable[str]) -> pd.DataFrame:
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


def restart_logs(testbed: Any, chain: Chain, cluster: str, since: float, attempts: int = 3) -> pd.DataFrame:
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


def _first(frame: pd.DataFrame, after: float, **equal: Any) -> float | None:
    """Time of the first row of ``frame`` (column ``t``, UNIX s) at or after ``after`` matching ``equal``."""
    if frame.empty:
        return None
    sel = frame[frame["t"] >= after]
    for column, value in equal.items():
        sel = sel[sel[column] == value]
    return float(sel["t"].min()) if not sel.empty else None


def _unix(series: pd.Series) -> pd.Series:
    """UTC timestamps as UNIX seconds."""
    return (pd.to_datetime(series, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def downtime_after(frames: pd.DataFrame, t_fault: float, stream: str, window_s: float = 30.0) -> pd.Series | None:
    """The first downtime of ``stream`` whose last old frame is at most ``window_s`` before/after the fault."""
    sel = frames[frames["stream"] == stream] if "stream" in frames else frames
    if sel.empty:
        return None
    dt = stream_downtime(sel, threshold=DOWNTIME_THRESHOLD_S)
    dt = dt[(dt["last_old"] >= t_fault - 2.0) & (dt["last_old"] <= t_fault + window_s)]
    return dt.sort_values("last_old").iloc[0] if not dt.empty else None


def repetition_rows(*, rep: int, t_fault: float, frames: pd.DataFrame, logs: pd.DataFrame,
                    milestones_before: Sequence[tuple[str, float | None]], cluster: str,
                    detection_before_downtime: bool, **keys: Any) -> list[dict[str, Any]]:
    """Tidy rows of one repetition: ``stream_downtime`` per stream and ``phase`` of the low stream.

    ``milestones_before`` are the scenario's own milestones preceding the PDC's log milestones
    (cluster failure: NotReady, replacement pod); the log milestones are taken after the last
    old frame of the low stream.
    """
    rows: list[dict[str, Any]] = []
    base = {"repetition": rep, "cluster": cluster, **keys}
    for stream in ("low", "high"):
        d = downtime_after(frames, t_fault, stream)
        if d is None:
            rows.append({**base, "metric": "stream_downtime", "unit": "s", "t": pd.Timestamp(t_fault, unit="s", tz="UTC"),
                         "value": np.nan, "stream": stream, "recovered": False})
            continue
        rows.append({**base, "metric": "stream_downtime", "unit": "s", "t": d["t"], "value": float(d["value"]),
                     "stream": stream, "recovered": True, "last_old": float(d["last_old"]),
                     "first_new": float(d["first_new"]), "missing_frames": int(d["missing_frames"]),
                     "pmu_idcode": int(d["pmu_idcode"])})
    low = downtime_after(frames, t_fault, "low")
    if low is None:
        return rows
    last_old, first_new = float(low["last_old"]), float(low["first_new"])
    after = logs[logs["t"] >= last_old - 0.5] if not logs.empty else logs
    fetched = after[after["event"] == "config fetched"] if not after.empty else after
    source = str(fetched["input"].iloc[0]) if len(fetched) else ""
    if len(fetched):  # the fetch ends at its log line and lasted what the PDC measured
        fetch_end = float(fetched["t"].iloc[0])
        startup = [("startup", fetch_end - float(fetched["seconds"].iloc[0])), ("config fetch", fetch_end)]
    else:
        startup = [("startup", _first(after, last_old - 0.5, event="listening"))]
    milestones = [*milestones_before, ("restart", _first(after, last_old - 0.5, event="process started")),
                  *startup, ("reconnect", _first(after, last_old - 0.5, event="input connected"))]
    for name, start, end in phase_split(last_old, first_new, milestones):
        rows.append({**base, "metric": "phase", "unit": "s", "t": pd.Timestamp(end, unit="s", tz="UTC"),
                     "value": end - start, "stream": "low", "phase": name, "start": start, "end": end,
                     "config_source": source})
    if detection_before_downtime:
        rows.append({**base, "metric": "phase", "unit": "s", "t": pd.Timestamp(last_old, unit="s", tz="UTC"),
                     "value": max(0.0, last_old - t_fault), "stream": "low", "phase": "detection",
                     "start": t_fault, "end": last_old})
    return rows


# --------------------------------------------------------------------------- one repetition


def _core(testbed: Any, cluster: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(testbed.kube(cluster))


def pod_failure_once(testbed: Any, chain: Chain, recorders: Mapping[str, RecorderPod], rep: int, after_s: float,
                     timeout_s: float, log: FaultLog) -> tuple[float, str]:
    """Make the low PDC's liveness probe fail once it ran ``after_s`` s; wait until the stream is back.

    Returns the fault time (UNIX s, when the probe's file was created) and the hosting cluster.
    """
    cluster = hosting_cluster(testbed, chain, chain.low)
    spec = FaultSpec(name=f"liveness-{rep}", action="pod-liveness-fail",
                     selector=Selector(cluster=cluster, namespace=pod_namespace(chain, chain.low, cluster),
                                       labels={INSTANCE: chain.low}), params={"after_s": after_s})
    with injected(testbed, chain.env, spec, log):
        t_fault = log.injected_at(spec.name).timestamp()
        if wait_recovered(recorders["low"], t_fault, timeout_s) is None:
            raise StreamError(f"repetition {rep}: the low PDC's stream did not come back within {timeout_s:.0f} s")
        wait_recovered(recorders["high"], t_fault, 20.0)
    return t_fault, cluster


def _virtual_node(chain: Chain, cluster: str) -> str:
    """Name of the virtual node of provider ``cluster`` in the low PDC's owner (Liqo: ``liqo-<id>``)."""
    return f"liqo-{cluster}"


def cluster_failure_once(testbed: Any, chain: Chain, recorders: Mapping[str, RecorderPod], rep: int,
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
    nodes = NodeReadyWatch(_core(testbed, owner), cluster=owner, nodes=[_virtual_node(chain, cluster)], **keys)
    pods = PodEvents(_core(testbed, owner), cluster=owner, namespace=chain.namespace(chain.low),
                     label_selector=f"{INSTANCE}={chain.low}", **keys)
    old = {p.metadata.name for p in home_pods(testbed, chain, chain.low)}
    spec = FaultSpec(name=f"disconnect-{rep}", action="cluster-disconnect", selector=Selector(cluster=cluster))
    with collecting([nodes, pods]):
        with injected(testbed, chain.env, spec, log):
            t_fault = log.injected_at(spec.name).timestamp()
            if wait_recovered(recorders["low"], t_fault, timeout_s) is None:
                raise StreamError(f"repetition {rep}: the low PDC's stream did not come back within "
                                  f"{timeout_s:.0f} s of disconnecting {cluster}")
            wait_recovered(recorders["high"], t_fault, 20.0)
        wait_node_ready(testbed, owner, _virtual_node(chain, cluster), 120.0)
    wait_single_pod(testbed, chain, chain.low, 120.0)
    pod_rows = pods.collect()
    pod_rows = pod_rows.assign(new=~pod_rows["pod"].isin(old)) if not pod_rows.empty else pod_rows
    return t_fault, cluster, nodes.collect(), pod_rows


def wait_node_ready(testbed: Any, cluster: str, node: str, timeout: float) -> None:
    """Wait until ``node`` of ``cluster`` is Ready again."""
    from labkit.measure.nodes import ready_condition

    deadline = time.monotonic() + timeout
    while not ready_condition(_core(testbed, cluster).read_node(node))[0]:
        if time.monotonic() > deadline:
            raise StreamError(f"node {node} of {cluster} not Ready again within {timeout:.0f} s")
        time.sleep(1.0)


def wait_single_pod(testbed: Any, chain: Chain, name: str, timeout: float) -> None:
    """Wait until the owner holds exactly one pod of ``name`` (evicted copies finished terminating)."""
    deadline = time.monotonic() + timeout
    while True:
        pods = _core(testbed, chain.owner(name)).list_namespaced_pod(
            chain.namespace(name), label_selector=f"{INSTANCE}={name}").items
        if len(pods) == 1:
            return
        if time.monotonic() > deadline:
            raise StreamError(f"{name}: {len(pods)} pods in {chain.owner(name)} after {timeout:.0f} s")
        time.sleep(1.0)


# --------------------------------------------------------------------------- experiments


def _env(env: Env | str) -> Env:
    """An env model from a model or an env name."""
    return load_env(env) if isinstance(env, str) else env


def kept(env: Env | str, clusters: str) -> Env:
    """``env`` reduced to the comma-separated ``clusters`` (:func:`reduced_env`); all of it when empty."""
    model = _env(env)
    names = [c.strip() for c in clusters.split(",") if c.strip()]
    return reduced_env(model, names) if names else model


def prepare(testbed: Any, chain: Chain, with_db: bool) -> str:
    """Load the runtime image where the chain and its recorders run, deploy the chain, wait until it is ready.

    What a previous experiment left of a chain on this test bed (a shared one) goes first
    (:func:`remove_chain`; on a fresh test bed that finds nothing). ``with_db``: first the PDCs'
    DB domains (:func:`deploy_databases`).
    """
    remove_chain(testbed, chain)
    if with_db:
        deploy_databases(testbed, chain)
    image = load_runtime(testbed, sorted({*grid_clusters(chain), chain.owner(chain.high)}))
    deploy_chain(testbed, chain, image, with_db)
    wait_ready(testbed, chain, [*chain.pmus, chain.low, chain.high])
    return image


def start_recorders(testbed: Any, chain: Chain, image: str, low_cluster: str | None = None,
                    low_target: str | None = None) -> dict[str, RecorderPod]:
    """Recorders of the low PDC (in ``low_cluster``, default its owner) and the high PDC (its owner), streaming.

    ``low_target`` is the address the low recorder connects to (default: the PDC's Service).
    """
    low_cluster = low_cluster or chain.owner(chain.low)
    owner_high = chain.owner(chain.high)
    recorders = {
        "low": start_recorder(testbed, chain.env, "low", low_cluster,
                              low_target or service_host(chain, chain.low, low_cluster), image),
        "high": start_recorder(testbed, chain.env, "high", owner_high,
                               service_host(chain, chain.high, owner_high), image),
    }
    wait_streaming(list(recorders.values()))
    return recorders


def _setup(testbed: Any, chain: Chain, with_db: bool) -> dict[str, RecorderPod]:
    """:func:`prepare` then :func:`start_recorders` with their defaults."""
    return start_recorders(testbed, chain, prepare(testbed, chain, with_db))


def _frames(recorders: Mapping[str, RecorderPod]) -> pd.DataFrame:
    """Every recorder's frames (column ``stream``)."""
    return pd.concat([stop_recorder(r) for r in recorders.values()], ignore_index=True)


def measure_pod_failure(testbed: Any, env: Env, *, repetitions: int, after_s: float, with_db: bool = True,
                        settle_s: float = 5.0, timeout_s: float = 120.0, **keys: str) -> pd.DataFrame:
    """Fig. 7.3 on a running test bed: ``repetitions`` liveness failures of the low PDC; tidy rows.

    ``with_db``: the PDCs fetch their configuration from the DB domain at every start (the
    thesis); otherwise from their ConfigMap file.
    """
    chain = chain_of(env)
    recorders = _setup(testbed, chain, with_db)
    log = FaultLog()
    done: list[tuple[int, float, str, pd.DataFrame]] = []
    try:
        for rep in range(1, repetitions + 1):
            t_fault, cluster = pod_failure_once(testbed, chain, recorders, rep, after_s, timeout_s, log)
            time.sleep(settle_s)
            done.append((rep, t_fault, cluster, restart_logs(testbed, chain, cluster, t_fault)))
    finally:
        frames = _frames(recorders)
    rows: list[dict[str, Any]] = []
    for rep, t_fault, cluster, logs in done:
        rows += repetition_rows(rep=rep, t_fault=t_fault, frames=frames, logs=logs, milestones_before=[],
                                cluster=cluster, detection_before_downtime=True, **keys)
    return _table(rows, frames, log, keys)


def measure_cluster_failure(testbed: Any, env: Env, *, repetitions: int, with_db: bool = True, settle_s: float = 5.0,
                            timeout_s: float = 180.0, **keys: str) -> pd.DataFrame:
    """Fig. 7.4 on a running test bed: ``repetitions`` disconnections of the low PDC's cluster; tidy rows.

    ``with_db`` as in :func:`measure_pod_failure`.
    """
    chain = chain_of(env)
    recorders = _setup(testbed, chain, with_db)
    log = FaultLog()
    done = []
    try:
        for rep in range(1, repetitions + 1):
            t_fault, cluster, nodes, pods = cluster_failure_once(testbed, chain, recorders, rep, timeout_s, log)
            time.sleep(settle_s)
            done.append((rep, t_fault, cluster, nodes, pods, restart_logs(testbed, chain, cluster, t_fault)))
    finally:
        frames = _frames(recorders)
    rows: list[dict[str, Any]] = []
    for rep, t_fault, cluster, nodes, pods, logs in done:
        node_t = nodes.assign(t=_unix(nodes["t"])) if not nodes.empty else nodes
        pod_t = pods.assign(t=_unix(pods["t"])) if not pods.empty else pods
        not_ready = _first(node_t, t_fault, value=0.0) if not node_t.empty else None
        replaced = _first(pod_t, t_fault, new=True) if not pod_t.empty else None
        rows += repetition_rows(rep=rep, t_fault=t_fault, frames=frames, logs=logs,
                                milestones_before=[("detection", not_ready), ("eviction", replaced)],
                                cluster=cluster, detection_before_downtime=False, **keys)
    return _table(rows, frames, log, keys)


def measure_island(testbed: Any, env: Env, *, isolation_s: float, before_s: float, after_s: float,
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
        spec = FaultSpec(name="island", action="cluster-disconnect", selector=Selector(cluster=cluster),
                         duration_s=isolation_s)
        with injected(testbed, chain.env, spec, log):
            pass
        time.sleep(after_s)
    finally:
        frames = _frames(recorders)
    t_cut = log.injected_at("island").timestamp()
    t_back = next(e.t for e in log.events if e.phase == "recover").timestamp()
    rows = island_rows(frames, t_cut, t_back, chain.env.grid.fps, cluster=cluster,
                       colocated=all(c == cluster for c in placed.values()),
                       placement=",".join(f"{n}@{c}" for n, c in sorted(placed.items())), **keys)
    return _table(rows, frames, log, keys)


def running_address(testbed: Any, chain: Chain, name: str) -> tuple[str, str]:
    """The cluster really running ``name`` and its pod's address there."""
    cluster = hosting_cluster(testbed, chain, name)
    ns = pod_namespace(chain, name, cluster)
    pods = [p for p in _core(testbed, cluster).list_namespaced_pod(ns, label_selector=f"{INSTANCE}={name}").items
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


def _table(rows: list[dict[str, Any]], frames: pd.DataFrame, log: FaultLog, keys: Mapping[str, Any]) -> pd.DataFrame:
    """The experiment's tidy table: its rows, the per-second frame rates and the fault log."""
    defaults = {"run_id": "", "scenario": "", "step": "measure", "cluster": "", **keys}
    parts = [tidy(rows, **defaults)] if rows else []
    parts.append(tidy(rate_rows(frames), **defaults))
    parts.append(log.table(**{k: v for k, v in defaults.items() if k != "cluster"}))
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    return tidy(out)


@off_event_loop
def run_pod_failure(env: Env | str, *, repetitions: int, after_s: float, with_db: bool = True,
                    **keys: str) -> pd.DataFrame:
    """Bring ``env`` up, measure :func:`measure_pod_failure`, always tear down."""
    env = _env(env)
    with running(env) as testbed:
        return measure_pod_failure(testbed, env, repetitions=repetitions, after_s=after_s, with_db=with_db, **keys)


@off_event_loop
def run_cluster_failure(env: Env | str, *, repetitions: int, with_db: bool = True, **keys: str) -> pd.DataFrame:
    """Bring ``env`` up (the low PDC movable, :func:`movable_low_env`), measure, always tear down."""
    env = movable_low_env(_env(env))
    with running(env) as testbed:
        return measure_cluster_failure(testbed, env, repetitions=repetitions, with_db=with_db, **keys)


@off_event_loop
def run_island(env: Env | str, *, isolation_s: float, before_s: float, after_s: float, with_db: bool = True,
               **keys: str) -> pd.DataFrame:
    """Bring ``env`` up (PMUs with their low PDC, :func:`colocated_env`), measure Fig. 6.2, always tear down."""
    env = colocated_env(_env(env))
    with running(env) as testbed:
        return measure_island(testbed, env, isolation_s=isolation_s, before_s=before_s, after_s=after_s,
                              with_db=with_db, **keys)


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


def plot_downtime(rows: pd.DataFrame, path: Any, title: str, thesis_median: float | None = None,
                  composition_ref: Mapping[str, float] | None = None) -> Any:
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_island(rows: pd.DataFrame, path: Any) -> Any:
    """Frames/s at the low and the high PDC vs time from the cut, isolation window shaded (Fig. 6.2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lost = rows[rows["metric"] == "frames_lost"]
    t_cut, t_back = float(lost["start"].iloc[0]), float(lost["end"].iloc[0])
    rate = rows[rows["metric"] == "frame_rate"].copy()
    rate["s"] = _unix(rate["t"]) - t_cut
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
