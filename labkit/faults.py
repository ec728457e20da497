"""Faults: one vocabulary for every fault the thesis injected, and a record of each.

A :class:`FaultSpec` says *what* (``action`` + ``params``), *where* (``selector``: cluster,
namespace, labels), *how many* (``mode``: one | all | fixed with ``count``) and *how long*
(``duration_s``). :func:`inject` resolves the selector on a test bed, applies the action
and returns a :class:`Fault` that remembers its targets; :meth:`Fault.recover` undoes it.
:func:`injected` is the context manager that always recovers, also when the block fails.
Every injection and recovery is stamped (UTC) in a :class:`FaultLog`, which becomes a
tidy table (metric ``fault``: 1 at injection, 0 at recovery).

Faults only act on a test bed through the ``Testbed``/``Host`` protocols of
``labkit.testbed.base``; they never measure.

Actions
-------
``cluster-disconnect``  the lab interface of every VM of the selected cluster goes down
``island``              the root cluster (Area Control Center) is cut off from the lab network
``link-down``           traffic between two clusters is dropped (nftables in both VMs)
``pod-kill``            selected pods are deleted with no grace period
``pod-liveness-fail``   selected pods' liveness probe starts failing after ``after_s`` seconds
                        of running (the thesis: 60 s); the kubelet then restarts the container
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from labkit.config import Env
from labkit.results import tidy
from labkit.workloads.render import UNHEALTHY_FILE  # the file the workloads' liveness probe checks

Action = Literal["cluster-disconnect", "island", "link-down", "pod-kill", "pod-liveness-fail"]

#: nftables table the link-down fault owns in a VM (removed whole on recovery).
NFT_TABLE = "labkit_faults"


class FaultError(RuntimeError):
    """A fault cannot be injected or recovered; the message names the fault and the target."""


class Selector(BaseModel):
    """Where a fault applies: a cluster, and for pod faults a namespace and labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str | None = None
    peer: str | None = None  # the other cluster of a link-down
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    def label_selector(self) -> str:
        """The labels as a Kubernetes label selector string."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


class FaultSpec(BaseModel):
    """One fault in the shared vocabulary (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    action: Action
    selector: Selector = Field(default_factory=Selector)
    mode: Literal["one", "all", "fixed"] = "one"
    count: int = Field(default=1, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _selector_fits_action(self) -> FaultSpec:
        sel = self.selector
        if self.action == "cluster-disconnect" and not sel.cluster:
            raise ValueError(f"{self.action} needs selector.cluster")
        if self.action == "link-down" and not (sel.cluster and sel.peer):
            raise ValueError("link-down needs selector.cluster and selector.peer")
        if self.action in ("pod-kill", "pod-liveness-fail") and not (sel.cluster and sel.namespace):
            raise ValueError(f"{self.action} needs selector.cluster and selector.namespace")
        return self


@dataclass
class FaultEvent:
    """When a fault was injected into or recovered from one target."""

    fault: str
    action: str
    target: str
    phase: Literal["inject", "recover"]
    t: datetime
    detail: str = ""


@dataclass
class FaultLog:
    """Every injection and recovery of a run, in order."""

    events: list[FaultEvent] = field(default_factory=list)

    def add(self, spec: FaultSpec, target: str, phase: Literal["inject", "recover"], detail: str = "") -> None:
        """Stamp one event now (UTC)."""
        self.events.append(FaultEvent(spec.name, spec.action, target, phase, datetime.now(timezone.utc), detail))

    def table(self, **keys: str) -> pd.DataFrame:
        """Tidy rows: metric ``fault``, value 1 at injection and 0 at recovery."""
        rows = [{"t": e.t, "value": 1.0 if e.phase == "inject" else 0.0, "fault": e.fault, "action": e.action,
                 "target": e.target, "phase": e.phase, "detail": e.detail} for e in self.events]
        keys = {"metric": "fault", "unit": "bool", "cluster": "", **keys}
        return tidy(rows, **keys)

    def injected_at(self, fault: str) -> pd.Timestamp:
        """UTC time of the first injection of ``fault`` (``KeyError`` naming it if none)."""
        for e in self.events:
            if e.fault == fault and e.phase == "inject":
                return pd.Timestamp(e.t)
        raise KeyError(f"fault {fault!r} was never injected")


# --------------------------------------------------------------------------- selection

#: What an action returns: the targets it touched and how to undo it.
Targets = tuple[list[str], Callable[[], None]]


def choose(items: list[str], spec: FaultSpec, rng: random.Random) -> list[str]:
    """Apply ``spec.mode`` to the candidate targets (sorted first, so a seed reproduces the choice)."""
    items = sorted(items)
    if not items:
        raise FaultError(f"fault {spec.name!r}: the selector {spec.selector.model_dump()} matches nothing")
    if spec.mode == "all":
        return items
    k = 1 if spec.mode == "one" else spec.count
    if k > len(items):
        raise FaultError(f"fault {spec.name!r}: wants {k} targets, the selector matches {len(items)}")
    return rng.sample(items, k)


def cluster_vms(env: Env, cluster: str) -> list[str]:
    """Names of the VMs of ``cluster`` (its node names in the env)."""
    return [node.name for node in env.cluster(cluster).nodes]


# --------------------------------------------------------------------------- actions


@dataclass
class Fault:
    """An injected fault: its spec, its targets and how to undo it."""

    spec: FaultSpec
    targets: list[str]
    undo: Callable[[], None]
    log: FaultLog
    recovered: bool = False

    def recover(self) -> None:
        """Undo the fault (idempotent) and stamp the recovery."""
        if self.recovered:
            return
        self.undo()
        self.recovered = True
        for target in self.targets:
            self.log.add(self.spec, target, "recover")


def _ifaces(testbed: Any, vms: list[str], up: bool) -> None:
    """Bring the lab interface of each VM up or down."""
    for vm in vms:
        host = testbed.host(vm)
        host.iface_up() if up else host.iface_down()


def _disconnect(testbed: Any, env: Env, spec: FaultSpec, rng: random.Random) -> Targets:
    """Every VM of the cluster (the root for ``island``) loses its lab interface."""
    cluster = env.root.name if spec.action == "island" else str(spec.selector.cluster)
    vms = cluster_vms(env, cluster)
    _ifaces(testbed, vms, up=False)
    return vms, lambda: _ifaces(testbed, vms, up=True)


def nft_drop_script(peer_address: str) -> str:
    """nftables script (for ``nft -f -``) dropping all traffic to and from ``peer_address``."""
    return (f"table inet {NFT_TABLE} {{\n"
            f"  chain out {{ type filter hook output priority 0; ip daddr {peer_address} drop; }}\n"
            f"  chain in {{ type filter hook input priority 0; ip saddr {peer_address} drop; }}\n"
            f"  chain fwd {{ type filter hook forward priority 0; ip daddr {peer_address} drop; "
            f"ip saddr {peer_address} drop; }}\n"
            "}\n")


def _link_down(testbed: Any, env: Env, spec: FaultSpec, rng: random.Random) -> Targets:
    """Both clusters' VMs drop each other's traffic (an nftables table of the kit's own)."""
    a, b = cluster_vms(env, str(spec.selector.cluster)), cluster_vms(env, str(spec.selector.peer))
    pairs = [(x, y) for x in a for y in b] + [(y, x) for x in a for y in b]
    touched: list[str] = []
    for vm, peer in pairs:
        host = testbed.host(vm)
        script = nft_drop_script(testbed.host(peer).address)
        res = host.run(["sh", "-c", f"nft -f - <<'EOF'\n{script}EOF\n"])
        if not res.ok:
            raise FaultError(f"link-down on {vm}: nft failed: {res.stderr.strip()}")
        touched.append(vm)

    def undo() -> None:
        for vm in sorted(set(touched)):
            testbed.host(vm).run(["nft", "delete", "table", "inet", NFT_TABLE])

    return sorted(set(touched)), undo


def _core(testbed: Any, spec: FaultSpec) -> Any:
    """A ``CoreV1Api`` of the selected cluster."""
    from kubernetes import client

    return client.CoreV1Api(testbed.kube(spec.selector.cluster))


def _running_pods(core: Any, spec: FaultSpec) -> list[str]:
    """Names of the running pods the selector matches."""
    pods = core.list_namespaced_pod(spec.selector.namespace, label_selector=spec.selector.label_selector()).items
    return [p.metadata.name for p in pods if p.status and p.status.phase == "Running"]


def _pod_kill(testbed: Any, env: Env, spec: FaultSpec, rng: random.Random) -> Targets:
    """Delete the chosen pods with no grace period."""
    core = _core(testbed, spec)
    targets = choose(_running_pods(core, spec), spec, rng)
    for pod in targets:
        core.delete_namespaced_pod(pod, spec.selector.namespace, grace_period_seconds=0)
    return targets, lambda: None  # the controller recreates the pods: nothing to undo


def _liveness(testbed: Any, env: Env, spec: FaultSpec, rng: random.Random) -> Targets:
    """Once a chosen pod has run ``params.after_s`` seconds, make its liveness probe fail."""
    from labkit.testbed.pods import PodHost

    core = _core(testbed, spec)
    after_s = float(spec.params.get("after_s", 60.0))
    targets = choose(_running_pods(core, spec), spec, rng)
    for pod in targets:
        _wait_running_for(core, pod, spec.selector.namespace, after_s)
        res = PodHost(core, spec.selector.namespace, pod, address="").run(["touch", UNHEALTHY_FILE])
        if not res.ok:
            raise FaultError(f"pod-liveness-fail on {spec.selector.namespace}/{pod}: touch failed: {res.stderr.strip()}")
    return targets, lambda: None  # the restarted container starts healthy


def _wait_running_for(api: Any, pod: str, namespace: str, seconds: float, timeout: float = 600.0) -> None:
    """Block until ``pod``'s containers have been running for ``seconds``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.read_namespaced_pod(pod, namespace).status
        started = [cs.state.running.started_at for cs in (status.container_statuses or [])
                   if cs.state and cs.state.running]
        if started:
            age = (datetime.now(timezone.utc) - min(started)).total_seconds()
            if age >= seconds:
                return
            time.sleep(min(1.0, seconds - age))
        else:
            time.sleep(0.5)
    raise FaultError(f"pod {namespace}/{pod} did not run for {seconds} s within {timeout} s")


ACTIONS: dict[str, Callable[[Any, Env, FaultSpec, random.Random], Targets]] = {
    "cluster-disconnect": _disconnect,
    "island": _disconnect,
    "link-down": _link_down,
    "pod-kill": _pod_kill,
    "pod-liveness-fail": _liveness,
}


def inject(testbed: Any, env: Env, spec: FaultSpec, log: FaultLog, rng: random.Random | None = None) -> Fault:
    """Apply ``spec`` on ``testbed`` (running ``env``) and return the :class:`Fault`, stamped in ``log``."""
    unknown = {c for c in (spec.selector.cluster, spec.selector.peer) if c} - {c.name for c in env.clusters}
    if unknown:
        raise FaultError(f"fault {spec.name!r}: unknown cluster(s) {sorted(unknown)} in env {env.name!r}")
    targets, undo = ACTIONS[spec.action](testbed, env, spec, rng or random.Random(env.seed))
    for target in targets:
        log.add(spec, target, "inject")
    return Fault(spec, targets, undo, log)


@contextmanager
def injected(testbed: Any, env: Env, spec: FaultSpec, log: FaultLog,
             rng: random.Random | None = None) -> Iterator[Fault]:
    """Inject ``spec`` for the block (at least ``spec.duration_s`` seconds); always recover."""
    fault = inject(testbed, env, spec, log, rng)
    started = time.monotonic()
    try:
        yield fault
        if spec.duration_s:
            time.sleep(max(0.0, spec.duration_s - (time.monotonic() - started)))
    finally:
        fault.recover()
