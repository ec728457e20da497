"""Faults: one vocabulary for every fault the thesis injected, and a record of each.

A :class:`FaultSpec` names a fault, says *what* and *where* with a typed action (one model per
action, with exactly the parameters it takes) and *how long* (``duration_s``). :func:`inject`
resolves the action's targets on a test bed, applies it and returns a :class:`Fault` that
remembers them; :meth:`Fault.recover` undoes it. :func:`injected` is the context manager that
always recovers, also when the block fails. Every injection and recovery is stamped (UTC) in a
:class:`FaultLog`, which becomes a tidy table (metric ``fault``: 1 at injection, 0 at recovery).

Faults only act on a test bed through the ``Testbed``/``Host`` protocols of
``labkit.testbed.base``; they never measure.

Actions
-------
:class:`ClusterDisconnect`  the lab interface of every VM of ``cluster`` goes down
:class:`Island`             the root cluster (Area Control Center) is cut off from the lab network
:class:`LinkDown`           traffic between ``cluster`` and ``peer`` is dropped (nftables in both)
:class:`PodKill`            the selected pods are deleted with no grace period
:class:`LivenessFail`       the selected pods' liveness probe starts failing once they have run
                            ``after_s`` seconds; the kubelet then restarts the container
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from labkit.config import Env
from labkit.results import tidy
from labkit.testbed import Testbed
from labkit.workloads.render import UNHEALTHY_FILE  # the file the workloads' liveness probe checks

#: nftables table the link-down fault owns in a VM (removed whole on recovery).
NFT_TABLE = "labkit_faults"

#: What an action returns: the targets it touched and how to undo it.
Targets = tuple[list[str], Callable[[], None]]


class FaultError(RuntimeError):
    """A fault cannot be injected or recovered; the message names the fault and the target."""


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def clusters(self) -> list[str]:
        """The clusters the action names (checked against the env before it is applied)."""
        return [c for c in (getattr(self, "cluster", None), getattr(self, "peer", None)) if c]

    def apply(self, testbed: Testbed, env: Env, fault: str, rng: random.Random) -> Targets:
        """Apply the action (as fault ``fault``) on ``testbed`` running ``env``: its targets and how to undo it."""
        raise NotImplementedError


class ClusterDisconnect(_Action):
    """Every VM of ``cluster`` loses its lab interface (a cluster failure, thesis 7.3 and 7.4.2)."""

    kind: Literal["cluster-disconnect"] = "cluster-disconnect"
    cluster: str

    def apply(self, testbed: Testbed, env: Env, fault: str, rng: random.Random) -> Targets:
        return _disconnect(testbed, cluster_vms(env, self.cluster))


class Island(_Action):
    """The root cluster (Area Control Center) is cut off from the lab network (thesis ch. 8)."""

    kind: Literal["island"] = "island"

    def apply(self, testbed: Testbed, env: Env, fault: str, rng: random.Random) -> Targets:
        return _disconnect(testbed, cluster_vms(env, env.root.name))


class LinkDown(_Action):
    """The traffic between the VMs of ``cluster`` and those of ``peer`` is dropped, both ways."""

    kind: Literal["link-down"] = "link-down"
    cluster: str
    peer: str

    def apply(self, testbed: Testbed, env: Env, fault: str, rng: random.Random) -> Targets:
        return _link_down(testbed, cluster_vms(env, self.cluster), cluster_vms(env, self.peer))


class _PodAction(_Action):
    """Pods selected by ``labels`` in ``namespace`` of ``cluster``: ``one``, ``all`` or a ``fixed`` ``count``."""

    cluster: str
    namespace: str
    labels: dict[str, str] = Field(default_factory=dict)
    mode: Literal["one", "all", "fixed"] = "one"
    count: int = Field(default=1, ge=1)

    def label_selector(self) -> str:
        """The labels as a Kubernetes label selector string."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


class PodKill(_PodAction):
    """The selected pods are deleted with no grace period."""

    kind: Literal["pod-kill"] = "pod-kill"

    def apply(self, testbed: Testbed, env: Env, fault: str, rng: random.Random) -> Targets:
        core = _core(testbed, self)
        targets = choose(_running_pods(core, self), self, fault, rng)
        for pod in targets:
            core.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=0)
        return targets, lambda: None  # the controller recreates the pods: nothing to undo


class LivenessFail(_PodAction):
    """The selected pods' liveness probe fails once they have run ``after_s`` seconds (thesis 7.4.1)."""

    kind: Literal["pod-liveness-fail"] = "pod-liveness-fail"
    after_s: float = Field(gt=0)

    def apply(self, testbed: Testbed, env: Env, fault: str, rng: random.Random) -> Targets:
        from labkit.testbed.pods import PodHost

        core = _core(testbed, self)
        targets = choose(_running_pods(core, self), self, fault, rng)
        for pod in targets:
            _wait_running_for(core, pod, self.namespace, self.after_s)
            res = PodHost(core, self.namespace, pod, address="").run(["touch", UNHEALTHY_FILE])
            if not res.ok:
                raise FaultError(f"pod-liveness-fail on {self.namespace}/{pod}: touch failed: {res.stderr.strip()}")
        return targets, lambda: None  # the restarted container starts healthy


#: Every action, told apart by its ``kind``.
Action = Annotated[ClusterDisconnect | Island | LinkDown | PodKill | LivenessFail, Field(discriminator="kind")]


class FaultSpec(BaseModel):
    """One fault: a name for the log, a typed action, and how long it lasts (``None``: the block's length).

    ``action`` may be given as its ``kind`` alone (``"island"``) when the action takes no parameter.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    action: Action
    duration_s: float | None = Field(default=None, gt=0)

    @field_validator("action", mode="before")
    @classmethod
    def _kind_alone(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


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
        self.events.append(FaultEvent(spec.name, spec.action.kind, target, phase, datetime.now(timezone.utc), detail))

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

    def recovered_after(self, t: float) -> float | None:
        """UNIX time of the first recovery at or after ``t`` (UNIX s); ``None`` if none came."""
        return min((e.t.timestamp() for e in self.events if e.phase == "recover" and e.t.timestamp() >= t),
                   default=None)


# --------------------------------------------------------------------------- selection

def choose(items: list[str], action: _PodAction, fault: str, rng: random.Random) -> list[str]:
    """Apply the action's ``mode`` to the candidate targets (sorted first, so a seed reproduces the choice)."""
    items = sorted(items)
    if not items:
        raise FaultError(f"fault {fault!r}: the selector {action.model_dump(exclude={'kind'})} matches nothing")
    if action.mode == "all":
        return items
    k = 1 if action.mode == "one" else action.count
    if k > len(items):
        raise FaultError(f"fault {fault!r}: wants {k} targets, the selector matches {len(items)}")
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


def _ifaces(testbed: Testbed, vms: list[str], up: bool) -> None:
    """Bring the lab interface of each VM up or down."""
    for vm in vms:
        host = testbed.host(vm)
        host.iface_up() if up else host.iface_down()


def _disconnect(testbed: Testbed, vms: list[str]) -> Targets:
    """Every VM of ``vms`` loses its lab interface."""
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


def _link_down(testbed: Testbed, a: list[str], b: list[str]) -> Targets:
    """The VMs of ``a`` and of ``b`` drop each other's traffic (an nftables table of the kit's own)."""
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


def _core(testbed: Testbed, action: _PodAction) -> Any:
    """A ``CoreV1Api`` of the action's cluster."""
    from kubernetes import client

    return client.CoreV1Api(testbed.kube(action.cluster))


def _running_pods(core: Any, action: _PodAction) -> list[str]:
    """Names of the running pods the action selects (not those being deleted: a replaced pod lingers)."""
    pods = core.list_namespaced_pod(action.namespace, label_selector=action.label_selector()).items
    return [p.metadata.name for p in pods
            if p.status and p.status.phase == "Running" and p.metadata.deletion_timestamp is None]


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


def inject(testbed: Testbed, env: Env, spec: FaultSpec, log: FaultLog, rng: random.Random | None = None) -> Fault:
    """Apply ``spec`` on ``testbed`` (running ``env``) and return the :class:`Fault`, stamped in ``log``."""
    unknown = set(spec.action.clusters()) - {c.name for c in env.clusters}
    if unknown:
        raise FaultError(f"fault {spec.name!r}: unknown cluster(s) {sorted(unknown)} in env {env.name!r}")
    targets, undo = spec.action.apply(testbed, env, spec.name, rng or random.Random(env.seed))
    for target in targets:
        log.add(spec, target, "inject")
    return Fault(spec, targets, undo, log)


@contextmanager
def injected(testbed: Testbed, env: Env, spec: FaultSpec, log: FaultLog,
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
