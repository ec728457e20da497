"""Env files: ``envs/<name>.yaml`` loaded into validated, frozen models.

An env file declares a test bed: its clusters (with their nodes, labels and CIDRs), the
logical groups and database domains of the thesis' chapters 5-6, namespace offloading,
optional explicit peerings, the synchrophasor workload, the Kubernetes/Liqo timers and
the backend that runs it (``embedded`` on this machine, ``vms`` over SSH).

A file may ``extends:`` another env (looked up next to it, then in the kit's ``envs/``);
mappings merge key by key and lists replace. Every problem in a file is reported at once in one :class:`ConfigError`
that names the file, the field path (``clusters[2] (leaf-2).pod_cidr``) and what was
expected.

This module is pure data: it knows nothing of drivers or plans (see ``labkit.topology``).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labkit import paths

# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One problem in an env file: where (field path) and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """An env file is invalid. ``problems`` lists every problem; ``source`` names the file."""

    def __init__(self, problems: Iterable[Problem], source: str | Path | None = None) -> None:
        self.problems = list(problems)
        self.source = str(source) if source is not None else None
        super().__init__(self._render())

    def with_source(self, source: str | Path) -> ConfigError:
        """The same error, naming ``source`` as the file."""
        return ConfigError(self.problems, source)

    def _render(self) -> str:
        where = self.source or "<env>"
        count = len(self.problems)
        head = f"{where}: {count} problem{'s' if count != 1 else ''}"
        return head + "".join(f"\n  - {p}" for p in self.problems)


# --------------------------------------------------------------------------- field types

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")

#: A Kubernetes-style name (DNS-1123 label): lower-case letters, digits and '-'.
Name = Annotated[str, Field(pattern=_DNS_LABEL, min_length=1, max_length=63)]
#: A duration in seconds, strictly positive.
Seconds = Annotated[float, Field(gt=0)]
Role = Literal["acc", "primary", "secondary"]


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Validate Kubernetes label keys and values."""
    for key, value in labels.items():
        if len(key.rsplit("/", 1)[-1]) > 63 or not _LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key ([prefix/]name)")
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ValueError(f"label value {value!r} of {key!r} is not a valid Kubernetes label value")
    return labels


class Model(BaseModel):
    """Base of every env model: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- topology


class Node(Model):
    """A machine of a cluster (a Crownlabs VM; a network namespace on the embedded backend)."""

    name: Name
    labels: dict[str, str] = Field(default_factory=dict)

    _labels = field_validator("labels")(_check_labels)


class Cluster(Model):
    """One Kubernetes cluster: the Area Control Center (``acc``) or a station.

    ``pod_cidr``/``service_cidr`` may be left out: ``labkit.topology`` then allocates them.
    Without ``nodes`` the cluster has one node named like the cluster (the thesis' case).
    ``parent`` names the primary station whose jurisdiction a secondary station is under: in
    the multi-level implementation (thesis 6.2) it is the centre of that station's second star.
    """

    name: Name
    role: Role
    labels: dict[str, str] = Field(default_factory=dict)
    nodes: list[Node] = Field(default_factory=list)
    pod_cidr: ipaddress.IPv4Network | None = None
    service_cidr: ipaddress.IPv4Network | None = None
    parent: Name | None = None

    _labels = field_validator("labels")(_check_labels)

    @model_validator(mode="after")
    def _default_node(self) -> Cluster:
        if not self.nodes:
            object.__setattr__(self, "nodes", [Node(name=self.name)])
        return self

    @model_validator(mode="after")
    def _cidrs_disjoint(self) -> Cluster:
        if self.pod_cidr and self.service_cidr and self.pod_cidr.overlaps(self.service_cidr):
            raise ValueError(f"pod_cidr {self.pod_cidr} overlaps service_cidr {self.service_cidr}")
        return self


class Group(Model):
    """A logical group of clusters built with labels (thesis 5.2).

    Without ``hierarchy`` it is an independent group (a cluster may be in several, Fig. 5.2);
    with one, it is a dependent group: a cluster is in at most one group per hierarchy (Fig. 5.3).
    ``main`` names the member where workloads go preferably; the other members are its
    backups (the groups of primary stations of thesis 6.2).
    """

    name: Name
    members: list[Name] = Field(min_length=1)
    hierarchy: Name | None = None
    main: Name | None = None

    @model_validator(mode="after")
    def _main_is_member(self) -> Group:
        if self.main is not None and self.main not in self.members:
            raise ValueError(f"main {self.main!r} is not a member of group {self.name!r} (members: {self.members})")
        return self


class DbDomain(Model):
    """Clusters sharing one distributed database (Galera / Percona XtraDB): full mesh inside."""

    name: Name
    members: list[Name] = Field(min_length=1)
    namespace: Name
    replicas: int = Field(default=3, ge=1)


class Offload(Model):
    """A namespace that a consumer offloads to providers (Liqo NamespaceOffloading).

    The target clusters are ``clusters`` plus the members of ``groups``; both empty means
    every cluster the consumer peers with.
    """

    namespace: Name
    consumer: Name
    clusters: list[Name] = Field(default_factory=list)
    groups: list[Name] = Field(default_factory=list)
    pod_strategy: Literal["Local", "Remote", "LocalAndRemote"] = "Remote"


class Peering(Model):
    """A unidirectional out-of-band peering: ``consumer`` may run pods on ``provider``."""

    consumer: Name
    provider: Name

    @model_validator(mode="after")
    def _not_self(self) -> Peering:
        if self.consumer == self.provider:
            raise ValueError(f"a cluster cannot peer with itself ({self.consumer})")
        return self


# --------------------------------------------------------------------------- workload


class Placement(Model):
    """Where a workload may run: required clusters/groups/DB domains, and preferred clusters in order.

    The required parts are alternatives (any of them will do). With no ``prefer`` and a
    required group that has a ``main``, the main is preferred and its backups come next.
    """

    clusters: list[Name] = Field(default_factory=list)
    groups: list[Name] = Field(default_factory=list)
    domains: list[Name] = Field(default_factory=list)
    prefer: list[Name] = Field(default_factory=list)


class PmuSpec(Model):
    """A PMU streaming IEEE C37.118 frames, measuring at ``bus`` of the grid network."""

    name: Name
    idcode: int = Field(ge=1, le=65534)
    bus: int = Field(ge=0)
    namespace: Name | None = None
    placement: Placement = Field(default_factory=Placement)


class PdcSpec(Model):
    """A phasor data concentrator; low-level PDCs read PMUs, high-level PDCs read PDCs."""

    name: Name
    level: Literal["low", "high"]
    idcode: int = Field(ge=1, le=65534)
    inputs: list[Name] = Field(min_length=1)
    wait_window_ms: Seconds = 100.0
    namespace: Name | None = None
    placement: Placement = Field(default_factory=Placement)


class Grid(Model):
    """The monitored grid and its synchrophasor chain (PMU -> low PDC -> high PDC -> SE).

    ``namespace`` is where the chain runs; a PMU or PDC may name its own ``namespace``
    (multi-level domains need one namespace per level, as Liqo does not re-offload).
    """

    network: Literal["case14", "case33bw", "cigre_mv"] = "case14"
    fps: Literal[10, 25, 30, 50, 60] = 30
    namespace: Name = "test"
    pmus: list[PmuSpec] = Field(default_factory=list)
    pdcs: list[PdcSpec] = Field(default_factory=list)


# --------------------------------------------------------------------------- timers


class KubeletTuning(Model):
    """Kubelet timers (Table 7.1: node-status-update-frequency 10 s -> 5 s)."""

    node_status_update_frequency_s: Seconds = 5.0


class ControllerManagerTuning(Model):
    """kube-controller-manager timers (Table 7.1: grace period 40 s -> 20 s, eviction 300 s -> 5 s)."""

    node_monitor_grace_period_s: Seconds = 20.0
    node_monitor_period_s: Seconds = 5.0
    pod_eviction_timeout_s: Seconds = 5.0


class ApiServerTuning(Model):
    """Default tolerations that make the 5 s eviction real on v1.24 (taint-based eviction)."""

    default_not_ready_toleration_s: Seconds = 5.0
    default_unreachable_toleration_s: Seconds = 5.0


class LiqoTuning(Model):
    """Liqo v0.10.2 timers (defaults from shared/reference/liqo-v0.10.2.md)."""

    node_ping_interval_s: Seconds = 10.0
    node_ping_timeout_s: Seconds = 1.0
    node_lease_duration_s: Seconds = 40.0
    gateway_ping_interval_s: Seconds = 2.0
    gateway_ping_loss_threshold: int = Field(default=5, ge=1)
    foreign_cluster_ping_interval_s: Seconds = 15.0
    foreign_cluster_ping_timeout_s: Seconds = 5.0


class Tuning(Model):
    """Every timer both backends apply, so their numbers are comparable."""

    kubelet: KubeletTuning = Field(default_factory=KubeletTuning)
    controller_manager: ControllerManagerTuning = Field(default_factory=ControllerManagerTuning)
    apiserver: ApiServerTuning = Field(default_factory=ApiServerTuning)
    liqo: LiqoTuning = Field(default_factory=LiqoTuning)

    @model_validator(mode="after")
    def _grace_above_update(self) -> Tuning:
        grace = self.controller_manager.node_monitor_grace_period_s
        update = self.kubelet.node_status_update_frequency_s
        if grace <= update:
            raise ValueError(
                f"controller_manager.node_monitor_grace_period_s ({grace}) must exceed "
                f"kubelet.node_status_update_frequency_s ({update}): N status updates fit in the grace period"
            )
        return self


# --------------------------------------------------------------------------- backends


class EmbeddedBackend(Model):
    """Run on this machine: VMs are network namespaces on one bridge (the lab network).

    ``peering`` chooses who peers the clusters: ``liqo``, the thesis' Liqo (``liqo_version``,
    built from its source by ``invoke setup``), or ``kit``, the kit's Liqo look-alike, the
    fallback for a machine without Liqo's source (``$LABKIT_PEERING`` overrides it for a run).
    """

    kind: Literal["embedded"]
    lab_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.250.0.0/24")
    kubernetes_version: str = "v1.24.17"
    peering: Literal["liqo", "kit"] = "liqo"
    liqo_version: str = Field(default="v0.10.2", pattern=r"^v\d+\.\d+\.\d+$")


class VmHost(Model):
    """One real VM of the inventory: the node it plays, its SSH address and lab interface."""

    node: Name
    address: str = Field(min_length=1)
    interface: str = Field(default="ens3", min_length=1)


class VmsBackend(Model):
    """Run on real Ubuntu VMs over SSH (Crownlabs or any cloud): k3s + Liqo + Percona."""

    kind: Literal["vms"]
    user: str = Field(default="ubuntu", min_length=1)
    ssh_key: Path | None = None
    hosts: list[VmHost] = Field(default_factory=list)
    k3s_version: str = "v1.24.17+k3s1"
    liqo_version: str = "v0.10.2"
    percona_operator_version: str = "v1.11.0"
    wireguard_implementation: Literal["kernel", "userspace"] = "kernel"


Backend = Annotated[EmbeddedBackend | VmsBackend, Field(discriminator="kind")]


# --------------------------------------------------------------------------- addressing


class Addressing(Model):
    """Where ``labkit.topology`` allocates the CIDRs an env file leaves out.

    Pod CIDRs are cut from ``pod_pool`` in blocks of ``pod_prefix`` (smaller blocks when the
    pool would not hold them all); every cluster without one gets ``service_cidr``
    (a shared range is fine: Liqo reflects Services as local ClusterIPs).

    The default pool, 100.64.0.0/10, lies outside the pools Liqo v0.10.2's IPAM maps networks
    into (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16). Inside them, distinct pod CIDRs are not
    enough: each cluster's IPAM takes its ExternalCIDR from those pools by best fit, which is a
    /16 hole next to its own pod CIDR, the neighbouring cluster's pod CIDR (10.65.0.0/16 for a
    cluster on 10.64.0.0/16), so that peer's pod CIDR is remapped with NAT and a Galera member
    advertising its own pod address cannot be reached (the thesis: "distinct CIDRs across
    clusters", section 4). A pod CIDR outside the pools is never remapped.
    """

    pod_pool: ipaddress.IPv4Network = ipaddress.IPv4Network("100.64.0.0/10")
    pod_prefix: int = Field(default=16, ge=8, le=24)
    service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.43.0.0/16")

    @model_validator(mode="after")
    def _pool_fits(self) -> Addressing:
        if self.pod_prefix < self.pod_pool.prefixlen:
            raise ValueError(f"pod_prefix /{self.pod_prefix} is larger than pod_pool {self.pod_pool}")
        if self.pod_pool.overlaps(self.service_cidr):
            raise ValueError(f"pod_pool {self.pod_pool} overlaps service_cidr {self.service_cidr}")
        return self


# --------------------------------------------------------------------------- the env


class Bound(Model):
    """A limit a run must respect: a metric an experiment records (``labkit.bounds``) and its range.

    ``metric`` is ``<experiment>.<name>``, e.g. ``pod_failure.downtime_s_median``; at least one of
    ``min``/``max`` is given; ``why`` says where the limit comes from.
    """

    metric: str = Field(pattern=r"^[a-z0-9_-]+\.[A-Za-z0-9_.-]+$")
    min: float | None = None
    max: float | None = None
    why: str = ""

    @model_validator(mode="after")
    def _a_limit(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError(f"bound on {self.metric!r} needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"bound on {self.metric!r}: min {self.min} > max {self.max}")
        return self


class Env(Model):
    """A whole test bed: topology, workload, timers, backend and the bounds its runs must respect."""

    name: Name
    description: str = ""
    implementation: Literal["logical-domains", "multi-level"] = "logical-domains"
    seed: int = 0
    backend: Backend = Field(default_factory=lambda: EmbeddedBackend(kind="embedded"))
    tuning: Tuning = Field(default_factory=Tuning)
    clusters: list[Cluster] = Field(min_length=1)
    groups: list[Group] = Field(default_factory=list)
    db_domains: list[DbDomain] = Field(default_factory=list)
    offloading: list[Offload] = Field(default_factory=list)
    peerings: list[Peering] | None = None
    addressing: Addressing = Field(default_factory=Addressing)
    grid: Grid = Field(default_factory=Grid)
    bounds: list[Bound] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Env:
        problems = reference_problems(self)
        if problems:
            raise ConfigError(problems)
        return self

    # Convenience look-ups used by the topology and the drivers.
    def cluster(self, name: str) -> Cluster:
        """The cluster called ``name`` (``KeyError`` naming it when absent)."""
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(f"no cluster {name!r} in env {self.name!r}")

    @property
    def root(self) -> Cluster:
        """The Area Control Center (the root of the star)."""
        return next(c for c in self.clusters if c.role == "acc")


def _duplicates(path: str, names: list[str], what: str) -> list[Problem]:
    """Problems for every name that appears more than once."""
    return [Problem(path, f"duplicate {what} {n!r}") for n, k in Counter(names).items() if k > 1]


def _unknown(path: str, names: Iterable[str], known: set[str], what: str) -> list[Problem]:
    """Problems for every name not in ``known``."""
    bad = [(i, n) for i, n in enumerate(names) if n not in known]
    if not bad:
        return []
    hint = ", ".join(sorted(known)) or "none defined"
    return [Problem(f"{path}[{i}]", f"unknown {what} {n!r} (expected one of: {hint})") for i, n in bad]


def _unknown_one(path: str, name: str, known: set[str], what: str) -> list[Problem]:
    """A problem when the single reference ``name`` is not in ``known``."""
    return [Problem(path, p.message) for p in _unknown(path, [name], known, what)]


def reference_problems(env: Env) -> list[Problem]:
    """Cross-field problems: duplicate names, unknown references, a missing or second ACC."""
    clusters = {c.name for c in env.clusters}
    groups = {g.name for g in env.groups}
    out: list[Problem] = []
    out += _duplicates("clusters", [c.name for c in env.clusters], "cluster name")
    out += _duplicates("clusters[*].nodes", [n.name for c in env.clusters for n in c.nodes], "node name")
    out += _duplicates("groups", [g.name for g in env.groups], "group name")
    out += _duplicates("db_domains", [d.name for d in env.db_domains], "db domain name")
    accs = [c.name for c in env.clusters if c.role == "acc"]
    if len(accs) != 1:
        out.append(Problem("clusters", f"expected exactly one cluster with role 'acc' (the root), found {accs or 'none'}"))
    for i, c in enumerate(env.clusters):
        if c.parent is not None:
            out += _unknown_one(f"clusters[{i}] ({c.name}).parent", c.parent, clusters, "cluster")
    for i, g in enumerate(env.groups):
        out += _unknown(f"groups[{i}].members", g.members, clusters, "cluster")
    for i, d in enumerate(env.db_domains):
        out += _unknown(f"db_domains[{i}].members", d.members, clusters, "cluster")
    for i, o in enumerate(env.offloading):
        out += _unknown_one(f"offloading[{i}].consumer", o.consumer, clusters, "cluster")
        out += _unknown(f"offloading[{i}].clusters", o.clusters, clusters, "cluster")
        out += _unknown(f"offloading[{i}].groups", o.groups, groups, "group")
    for i, p in enumerate(env.peerings or []):
        out += _unknown_one(f"peerings[{i}].consumer", p.consumer, clusters, "cluster")
        out += _unknown_one(f"peerings[{i}].provider", p.provider, clusters, "cluster")
    out += _grid_problems(env.grid, clusters, groups, {d.name for d in env.db_domains})
    if isinstance(env.backend, VmsBackend):
        nodes = {n.name for c in env.clusters for n in c.nodes}
        out += _unknown("backend.hosts[*].node", [h.node for h in env.backend.hosts], nodes, "node")
    return out


def _grid_problems(grid: Grid, clusters: set[str], groups: set[str], domains: set[str]) -> list[Problem]:
    """Unknown placements, duplicate names/idcodes and dangling PDC inputs of the workload."""
    out: list[Problem] = []
    names = [p.name for p in grid.pmus] + [p.name for p in grid.pdcs]
    out += _duplicates("grid", names, "PMU/PDC name")
    out += _duplicates("grid", [str(p.idcode) for p in [*grid.pmus, *grid.pdcs]], "idcode")
    for kind, items in (("pmus", grid.pmus), ("pdcs", grid.pdcs)):
        for i, item in enumerate(items):
            where = f"grid.{kind}[{i}].placement"
            out += _unknown(f"{where}.clusters", item.placement.clusters, clusters, "cluster")
            out += _unknown(f"{where}.prefer", item.placement.prefer, clusters, "cluster")
            out += _unknown(f"{where}.groups", item.placement.groups, groups, "group")
            out += _unknown(f"{where}.domains", item.placement.domains, domains, "db domain")
    pmus = {p.name for p in grid.pmus}
    pdcs = {p.name for p in grid.pdcs}
    for i, pdc in enumerate(grid.pdcs):
        sources = pmus if pdc.level == "low" else pdcs - {pdc.name}
        what = "PMU" if pdc.level == "low" else "lower PDC"
        out += _unknown(f"grid.pdcs[{i}].inputs", pdc.inputs, sources, what)
    return out


# --------------------------------------------------------------------------- loading


def env_path(name_or_path: str | Path) -> Path:
    """Resolve ``thesis`` or ``envs/thesis.yaml`` or an absolute path to an env file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return paths.envs_dir() / f"{name_or_path}.yaml"


def load_env(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Env:
    """Load and validate an env file.

    Parameters
    ----------
    name_or_path
        An env name in ``envs/`` (``"thesis"``) or a path to a YAML file.
    overrides
        Mappings merged over the file's content (after ``extends``), for per-run changes.

    Raises
    ------
    ConfigError
        Naming the file and listing every problem with its field path.
    """
    path = env_path(name_or_path)
    raw = _merge(load_raw(path), dict(overrides or {}))
    return validate_env(raw, source=path)


def validate_env(raw: Mapping[str, Any], source: str | Path = "<env>") -> Env:
    """Validate an env mapping; every problem is reported in one :class:`ConfigError`."""
    try:
        return Env.model_validate(raw)
    except ConfigError as err:
        raise err.with_source(source) from None
    except ValidationError as err:
        raise ConfigError(_problems_from(err, raw), source) from None


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read an env file as a mapping, resolving ``extends:`` (:func:`extends_path`, no cycles)."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(p.name for p in (*_seen, path))
        raise ConfigError([Problem("extends", f"circular extends: {chain}")], path)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml"))) or "none"
        raise ConfigError([Problem("", f"file not found (envs here: {known})")], path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError([Problem("", f"not valid YAML: {err}")], path) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem("", f"expected a mapping at the top level, got {type(data).__name__}")], path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError([Problem("extends", "expected the name of another env file")], path)
    base = load_raw(extends_path(parent, path), (*_seen, path))
    return _merge(base, data)


def extends_path(parent: str, child: Path) -> Path:
    """The file an ``extends: <parent>`` in ``child`` names.

    A name (``thesis``) is looked up next to ``child`` first, then in the kit's ``envs/``
    (so a copy of ``envs/crownlabs.yaml`` kept elsewhere still extends the kit's ``thesis``);
    a path (``../other.yaml``) is taken as it is.

    Raises
    ------
    ConfigError
        When neither place has the file; the message names both.
    """
    if "/" in parent:
        return env_path(parent)
    places = list(dict.fromkeys([child.parent.resolve(), paths.envs_dir().resolve()]))
    for place in places:
        if (place / f"{parent}.yaml").exists():
            return place / f"{parent}.yaml"
    where = " nor in ".join(str(p) for p in places)
    raise ConfigError([Problem("extends", f"no env {parent!r}: no {parent}.yaml in {where}")], child)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``: mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _problems_from(err: ValidationError, raw: Mapping[str, Any]) -> list[Problem]:
    """Turn pydantic errors into problems with readable paths and expectations."""
    problems = []
    for item in err.errors(include_url=False):
        message = item["msg"]
        if item["type"] not in ("missing", "extra_forbidden") and "input" in item:
            message += f", got {item['input']!r}"
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see labkit.config for the fields)"
        problems.append(Problem(_render_path(item["loc"], raw), message))
    return problems


def _render_path(loc: tuple[Any, ...], raw: Any) -> str:
    """``('clusters', 2, 'pod_cidr')`` -> ``clusters[2] (leaf-2).pod_cidr``, skipping union tags."""
    out = ""
    node = raw
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            name = node.get("name") if isinstance(node, Mapping) else None
            out += f"[{part}]" + (f" ({name})" if isinstance(name, str) else "")
        elif isinstance(node, Mapping) and (part in node or last):
            node = node.get(part)
            out += f".{part}" if out else str(part)
        elif isinstance(part, str) and part in ("embedded", "vms"):
            continue  # discriminator tag of the backend union
        elif isinstance(part, str) and not last and "[" in part:
            continue  # pydantic's function-validator markers
        else:
            out += f".{part}" if out else str(part)
    return out
