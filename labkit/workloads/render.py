"""Kubernetes objects of the synchrophasor chain, rendered from a topology plan.

For every offloaded namespace: the Namespace and Liqo's NamespaceOffloading, in its consumer.
For the grid (``env.grid``): per PMU and per PDC a ConfigMap (the component's config, read by
``python -m labkit.grid.<component> --config /etc/labkit/config.yaml``), a Deployment with
nodeAffinity from the topology, a liveness probe (fails when ``/tmp/labkit-unhealthy`` exists) and a
TCP readiness probe timed by a timer profile (:mod:`labkit.workloads.timers`), and a Service on the
C37.118 port; a
state estimator (GSE) reading the high-level PDCs. For every DB domain: a Galera StatefulSet
spread over the domain's clusters, its headless Service (peer discovery), a client Service
and a ConfigMap. The same objects serve both backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

import labkit
from labkit.config import DbDomain, Env, PdcSpec, Placement, PmuSpec
from labkit.topology import Plan
from labkit.topology.labels import CLUSTER, db_key
from labkit.workloads.timers import FAST, Timers

C37118_PORT = 4712
MYSQL_PORT = 3306
GALERA_PORTS = {"mysql": MYSQL_PORT, "galera": 4567, "ist": 4568, "sst": 4444}
CONFIG_DIR = "/etc/labkit"
CONFIG_FILE = "config.yaml"
RUNTIME_IMAGE = "labkit/runtime"
GALERA_IMAGE = "labkit/galera"
#: Database holding the PDC configuration and the read-only account PDCs fetch it with
#: (no password: it can read only that database, and is reachable only inside the kit's networks).
DB_NAME = "labkit"
DB_READER = "pdc"
#: Galera write-set cache and InnoDB buffer pool of a member (small: the PDC configuration is tiny).
GALERA_GCACHE = "32M"
GALERA_BUFFER_POOL = "64M"
#: Readiness of a Galera member: its local state is Synced (root through the unix socket).
GALERA_SYNCED = ("mariadb -N -B -e \"SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'\" "
                 "| grep -qw Synced")
#: A file whose presence fails every container's liveness probe (the ``pod-liveness-fail`` fault
#: touches it, as the thesis' pod-failure test makes the liveness probe fail, 7.4.1).
UNHEALTHY_FILE = "/tmp/labkit-unhealthy"
#: Liqo's taint on virtual nodes; pods of offloaded namespaces tolerate it.
VIRTUAL_NODE_TAINT = "virtual-node.liqo.io/not-allowed"


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and the cluster it is applied to (the owner of its namespace)."""

    cluster: str
    obj: Mapping[str, Any]

    @property
    def kind(self) -> str:
        """The object's ``kind``."""
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        """The object's ``metadata.name``."""
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        """The object's namespace (``None`` for cluster-scoped objects)."""
        return self.obj["metadata"].get("namespace")


@dataclass(frozen=True)
class Images:
    """Container images (``imagePullPolicy: IfNotPresent``: archives are imported into every node)."""

    runtime: str
    galera: str

    @classmethod
    def for_version(cls, version: str = labkit.__version__) -> Images:
        """``labkit/runtime:<version>`` and ``labkit/galera:<version>`` (images pushed to a registry)."""
        return cls(runtime=f"{RUNTIME_IMAGE}:{version}", galera=f"{GALERA_IMAGE}:{version}")

    @classmethod
    def kit(cls) -> Images:
        """The images ``labkit.images`` builds and the test beds import (``labkit.local/...``)."""
        from labkit import images

        return cls(runtime=images.image_ref("runtime"), galera=images.image_ref("galera"))


def render(plan: Plan, images: Images | None = None, timers: Timers = FAST) -> list[Manifest]:
    """Every object of an env's workload, namespaces first.

    Parameters
    ----------
    plan
        The topology plan (``labkit.topology.plan(env)``).
    images
        Images to run; :meth:`Images.kit` (the images the kit builds) by default.
    timers
        The chain's probes, grace period and PDC reconnect (:mod:`labkit.workloads.timers`).

    Returns
    -------
    list of Manifest
        Namespaces and NamespaceOffloadings, then DB domains, then PMUs, PDCs and the GSE.
    """
    images = images or Images.kit()
    out = namespaces(plan)
    for domain in plan.env.db_domains:
        out += database(plan, domain, images)
    out += grid(plan, images, timers=timers)
    return out


def by_cluster(manifests: Iterable[Manifest]) -> dict[str, list[Mapping[str, Any]]]:
    """Objects grouped by the cluster they are applied to, in order."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for manifest in manifests:
        out.setdefault(manifest.cluster, []).append(manifest.obj)
    return out


def to_yaml(manifests: Iterable[Manifest]) -> str:
    """A multi-document YAML stream of the objects (for ``kubectl apply -f -``)."""
    return yaml.safe_dump_all([dict(m.obj) for m in manifests], sort_keys=False)


def owner(plan: Plan, namespace: str) -> str:
    """The cluster that owns (offloads) ``namespace``; the ACC when no offload names it."""
    return next((o.consumer for o in plan.offloads if o.namespace == namespace), plan.env.root.name)


# --------------------------------------------------------------------------- namespaces


def namespaces(plan: Plan) -> list[Manifest]:
    """A Namespace and a Liqo NamespaceOffloading per offloaded namespace, in the consumer."""
    out = []
    for offload in plan.offloads:
        meta = {"name": offload.namespace, "labels": {**_part_of(), "topology.labkit.io/owner": offload.consumer}}
        out.append(Manifest(offload.consumer, {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}))
        spec: dict[str, Any] = {"namespaceMappingStrategy": offload.mapping_strategy,
                                "podOffloadingStrategy": offload.pod_strategy}
        if offload.cluster_selector:
            spec["clusterSelector"] = {"nodeSelectorTerms": [dict(t) for t in offload.cluster_selector]}
        out.append(Manifest(offload.consumer, {
            "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": offload.namespace}, "spec": spec}))
    return out


# --------------------------------------------------------------------------- building blocks


def _part_of() -> dict[str, str]:
    """Labels every labkit object carries."""
    return {"app.kubernetes.io/part-of": "labkit", "app.kubernetes.io/managed-by": "labkit"}


def _labels(component: str, name: str) -> dict[str, str]:
    """Selector labels of one component instance."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": name}


def _meta(name: str, namespace: str, component: str) -> dict[str, Any]:
    """``metadata`` of a namespaced object."""
    return {"name": name, "namespace": namespace, "labels": {**_part_of(), **_labels(component, name)}}


def config_map(name: str, namespace: str, component: str, data: Mapping[str, str]) -> dict[str, Any]:
    """A ConfigMap."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, namespace, component), "data": dict(data)}


def service(name: str, namespace: str, component: str, ports: Mapping[str, int],
            selector: Mapping[str, str], headless: bool = False) -> dict[str, Any]:
    """A ClusterIP Service (headless: ``clusterIP: None``, publishing not-ready pods for peer discovery)."""
    spec: dict[str, Any] = {"selector": dict(selector),
                            "ports": [{"name": k, "port": v, "targetPort": v, "protocol": "TCP"}
                                      for k, v in ports.items()]}
    if headless:
        spec |= {"clusterIP": "None", "publishNotReadyAddresses": True}
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, component), "spec": spec}


def readiness_probe(port: int, timing: Mapping[str, Any]) -> dict[str, Any]:
    """A TCP readiness probe on ``port`` with ``timing`` (:meth:`Timers.readiness`)."""
    return {"tcpSocket": {"port": port}, **timing}


def liveness_probe(initial: int = 5, period: int = 2, failures: int = 3, timeout: int = 1) -> dict[str, Any]:
    """The liveness probe: fails once :data:`UNHEALTHY_FILE` exists in the container (or its exec takes ``timeout`` s)."""
    return {"exec": {"command": ["sh", "-c", f"test ! -e {UNHEALTHY_FILE}"]}, "initialDelaySeconds": initial,
            "periodSeconds": period, "timeoutSeconds": timeout, "failureThreshold": failures}


def timed_liveness_probe(timers: Timers) -> dict[str, Any]:
    """:func:`liveness_probe`'s handler with the timing of ``timers`` (:meth:`Timers.liveness`)."""
    return {"exec": liveness_probe()["exec"], **timers.liveness()}


def pod_spec(plan: Plan, placement: Placement | None, containers: list[dict[str, Any]],
             volumes: list[dict[str, Any]], anti_affinity: Mapping[str, str] | None = None,
             grace_s: int = 5) -> dict[str, Any]:
    """A pod spec placed by the topology: nodeAffinity, Liqo's toleration, optional spreading, ``grace_s``."""
    spec: dict[str, Any] = {"containers": containers, "volumes": volumes, "terminationGracePeriodSeconds": grace_s,
                            "tolerations": [{"key": VIRTUAL_NODE_TAINT, "operator": "Exists", "effect": "NoExecute"}]}
    affinity = dict(plan.affinity(placement) or {}) if placement is not None else {}
    if anti_affinity:
        affinity["podAntiAffinity"] = {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {"topologyKey": CLUSTER,
                                               "labelSelector": {"matchLabels": dict(anti_affinity)}}}]}
    if affinity:
        spec["affinity"] = affinity
    return spec


def _config_args() -> list[str]:
    """The default arguments of a runtime container: its config file."""
    return ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]


def runtime_container(name: str, module: str, image: str, port: int | None,
                      args: Sequence[str] | None = None, timers: Timers = FAST) -> dict[str, Any]:
    """A container running ``python -m <module>`` with ``args`` (default ``--config /etc/labkit/config.yaml``).

    ``port`` is the C37.118 port it serves (TCP readiness probe on it, when ``timers`` has one);
    ``None`` for a pure client (the state estimator), which gets no port and no readiness probe.
    """
    container: dict[str, Any] = {
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": ["python", "-m", module],
        "args": list(args) if args is not None else _config_args(),
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "livenessProbe": timed_liveness_probe(timers), "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]}
    if port is not None:
        container["ports"] = [{"name": "c37118", "containerPort": port, "protocol": "TCP"}]
        readiness = timers.readiness()
        if readiness is not None:
            container["readinessProbe"] = readiness_probe(port, readiness)
    return container


def deployment(plan: Plan, name: str, namespace: str, component: str, module: str, image: str,
               placement: Placement, config: Mapping[str, Any], args: Sequence[str] | None = None,
               serves: bool = True, timers: Timers = FAST) -> list[dict[str, Any]]:
    """ConfigMap + Deployment (one replica, recreated elsewhere by Kubernetes) + Service of a component.

    ``args`` replace the default ``--config`` arguments; a component that ``serves`` nothing
    (a pure client) gets no Service and no readiness probe. ``timers``: its probes and grace period.
    """
    volume = {"name": "config", "configMap": {"name": f"{name}-config"}}
    container = runtime_container(component, module, image, C37118_PORT if serves else None, args, timers)
    template = {"metadata": {"labels": {**_part_of(), **_labels(component, name)}},
                "spec": pod_spec(plan, placement, [container], [volume], grace_s=timers.termination_grace_s)}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, namespace, component),
            "spec": {"replicas": 1, "selector": {"matchLabels": _labels(component, name)},
                     "strategy": {"type": "Recreate"}, "template": template}}
    data = {CONFIG_FILE: yaml.safe_dump(dict(config), sort_keys=False)}
    objects = [config_map(f"{name}-config", namespace, component, data), body]
    if serves:
        objects.append(service(name, namespace, component, {"c37118": C37118_PORT}, _labels(component, name)))
    return objects


# --------------------------------------------------------------------------- grid


def grid_namespace(env: Env, item: PmuSpec | PdcSpec) -> str:
    """The namespace a PMU or PDC runs in."""
    return item.namespace or env.grid.namespace


def _address(env: Env, name: str) -> dict[str, Any]:
    """Where a PMU/PDC serves C37.118 (its Service's DNS name)."""
    items = {i.name: i for i in [*env.grid.pmus, *env.grid.pdcs]}
    item = items[name]
    return {"name": name, "idcode": item.idcode, "host": f"{name}.{grid_namespace(env, item)}.svc",
            "port": C37118_PORT}


def _db_for(env: Env, namespace: str) -> dict[str, Any] | None:
    """The database a PDC in ``namespace`` reads its configuration from, if the namespace has one."""
    domain = next((d for d in env.db_domains if d.namespace == namespace), None)
    if domain is None:
        return None
    return {"host": f"{client_service(domain)}.{namespace}.svc", "port": MYSQL_PORT, "database": DB_NAME,
            "user": DB_READER}


def pmu_config(env: Env, pmu: PmuSpec) -> dict[str, Any]:
    """Configuration of ``python -m labkit.grid.pmu`` (passed as its arguments, see :func:`pmu_args`)."""
    return {"name": pmu.name, "idcode": pmu.idcode, "bus": pmu.bus, "network": env.grid.network,
            "fps": env.grid.fps, "port": C37118_PORT, "seed": env.seed + pmu.idcode}


def pmu_args(config: Mapping[str, Any]) -> list[str]:
    """Command-line arguments of ``python -m labkit.grid.pmu`` for a :func:`pmu_config` (all addresses)."""
    return ["--host", "0.0.0.0", "--port", str(config["port"]), "--idcode", str(config["idcode"]),
            "--network", str(config["network"]), "--bus", str(config["bus"]), "--rate", str(config["fps"]),
            "--seed", str(config["seed"])]


def pdc_config(env: Env, pdc: PdcSpec, with_db: bool = True, timers: Timers = FAST) -> dict[str, Any]:
    """Configuration file of ``python -m labkit.grid.pdc`` (low and high level are the same program).

    The keys are :class:`labkit.grid.pdc_config.PdcConfig`'s, plus ``level`` and ``db`` (the
    database of the PDC's namespace, where it fetches this configuration from; ``None``
    without ``with_db``: the PDC then reads this file alone). Its inputs reconnect as ``timers``
    says (``backoff_min``/``backoff_max``: the file's, not the database's).
    """
    return {"name": pdc.name, "idcode": pdc.idcode, "level": pdc.level, "rate": env.grid.fps,
            "wait_window_ms": pdc.wait_window_ms, "output_host": "0.0.0.0", "output_port": C37118_PORT,
            "backoff_min": timers.pdc_reconnect_s, "backoff_max": timers.pdc_reconnect_max_s,
            "inputs": [_address(env, i) for i in pdc.inputs],
            "db": _db_for(env, grid_namespace(env, pdc)) if with_db else None}


def grid(plan: Plan, images: Images, with_db: bool = True, timers: Timers = FAST) -> list[Manifest]:
    """PMUs, PDCs and the state estimator, each in its namespace's owner cluster.

    ``with_db=False``: the PDCs read their ConfigMap file instead of their DB domain. ``timers``:
    every pod's probes and grace period, and the PDCs' reconnect (:mod:`labkit.workloads.timers`).
    """
    env = plan.env
    out: list[Manifest] = []
    for pmu in env.grid.pmus:
        ns = grid_namespace(env, pmu)
        config = pmu_config(env, pmu)
        out += _owned(plan, ns, deployment(plan, pmu.name, ns, "pmu", "labkit.grid.pmu", images.runtime,
                                           pmu.placement, config, args=pmu_args(config), timers=timers))
    delay = ["--start-delay", f"{timers.pdc_start_delay_s:g}"] if timers.pdc_start_delay_s else []
    for pdc in env.grid.pdcs:
        ns = grid_namespace(env, pdc)
        out += _owned(plan, ns, deployment(plan, pdc.name, ns, "pdc", "labkit.grid.pdc", images.runtime,
                                           pdc.placement, pdc_config(env, pdc, with_db, timers),
                                           args=[*_config_args(), *delay] if delay else None, timers=timers))
    out += estimators(plan, images, timers)
    return out


def estimators(plan: Plan, images: Images, timers: Timers = FAST) -> list[Manifest]:
    """One GSE per namespace holding high-level PDCs, reading them, placed like the first of them."""
    env = plan.env
    highs: dict[str, list[PdcSpec]] = {}
    for pdc in env.grid.pdcs:
        if pdc.level == "high":
            highs.setdefault(grid_namespace(env, pdc), []).append(pdc)
    out: list[Manifest] = []
    for ns, pdcs in highs.items():
        config = {"name": "se", "network": env.grid.network, "fps": env.grid.fps, "port": C37118_PORT,
                  "inputs": [_address(env, p.name) for p in pdcs],
                  "pmu_buses": {p.name: p.bus for p in env.grid.pmus}}
        source = config["inputs"][0]  # the estimator reads one stream: the first high-level PDC
        args = ["--host", source["host"], "--port", str(source["port"]), "--idcode", str(source["idcode"]),
                "--network", env.grid.network]
        out += _owned(plan, ns, deployment(plan, "se", ns, "se", "labkit.grid.se", images.runtime,
                                           pdcs[0].placement, config, args=args, serves=False, timers=timers))
    return out


def _owned(plan: Plan, namespace: str, objects: Sequence[Mapping[str, Any]]) -> list[Manifest]:
    """``objects`` as manifests of the owner of ``namespace``."""
    cluster = owner(plan, namespace)
    return [Manifest(cluster, obj) for obj in objects]


# --------------------------------------------------------------------------- database


def galera_peers(domain: DbDomain) -> list[str]:
    """DNS names of a DB domain's members through its headless Service (``<pod>.<svc>.<ns>.svc``)."""
    return [f"{domain.name}-galera-{i}.{domain.name}-galera-peers.{domain.namespace}.svc"
            for i in range(domain.replicas)]


def galera_config(domain: DbDomain) -> str:
    """The Galera settings of a DB domain (``wsrep_cluster_address`` lists the headless Service).

    The image's entrypoint (``labkit/images/galera/entrypoint.sh``) overrides the cluster
    address at start with the members that answer (empty when member 0 bootstraps), and sets
    the node's address and name from the pod's own address and hostname.
    """
    return "\n".join(["[mysqld]", "binlog_format=ROW", "default_storage_engine=InnoDB",
                      "innodb_autoinc_lock_mode=2", "bind-address=0.0.0.0", "wsrep_on=ON",
                      "wsrep_provider=/usr/lib/galera/libgalera_smm.so",
                      f"wsrep_cluster_name={domain.name}",
                      f"wsrep_cluster_address=gcomm://{','.join(galera_peers(domain))}",
                      "wsrep_sst_method=rsync", f"wsrep_provider_options=gcache.size={GALERA_GCACHE}",
                      f"innodb_buffer_pool_size={GALERA_BUFFER_POOL}", "skip_name_resolve=ON", ""])


def _one_member_per_cluster(domain: DbDomain, labels: Mapping[str, str]) -> dict[str, Any]:
    """Pod anti-affinity spreading a domain's members over its clusters.

    Required when the domain has a cluster for every replica (two members on one cluster
    would lose quorum together with it), preferred otherwise (so every replica still runs).
    """
    term = {"topologyKey": CLUSTER, "labelSelector": {"matchLabels": dict(labels)}}
    if domain.replicas <= len(domain.members):
        return {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    return {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]}


def client_service(domain: DbDomain) -> str:
    """Name of a DB domain's client Service: its Synced (Ready) members, where PDCs read their configuration."""
    return f"{domain.name}-db"


def database(plan: Plan, domain: DbDomain, images: Images) -> list[Manifest]:
    """A DB domain's Galera cluster: ConfigMap, headless + client Services and the StatefulSet.

    Replicas are required on the domain's clusters (``db.topology.labkit.io/<domain>``), one
    per cluster (:func:`_one_member_per_cluster`); peers find each other through
    the headless Service, whose DNS answers with pod IPs (hence distinct CIDRs in the domain).
    A member is Ready when its Galera state is ``Synced``, so the client Service
    ``<domain>-db`` only sends clients to members that hold the whole data set.
    """
    name, ns = f"{domain.name}-galera", domain.namespace
    container = {"name": "galera", "image": images.galera, "imagePullPolicy": "IfNotPresent",
                 "ports": [{"name": k, "containerPort": v, "protocol": "TCP"} for k, v in GALERA_PORTS.items()],
                 # no status.podIP fieldRef: a virtual kubelet resolves fieldRefs before the provider
                 # gives the pod an address; the entrypoint reads its own address instead
                 "env": [{"name": "GALERA_PEERS", "value": ",".join(galera_peers(domain))}],
                 # a member killed by a slow exec under load (an image import beside it) restarts on
                 # an unsafe data dir: a generous timeout, as no experiment measures its detection
                 "livenessProbe": liveness_probe(initial=30, period=5, timeout=5),
                 "readinessProbe": {"exec": {"command": ["sh", "-c", GALERA_SYNCED]}, "initialDelaySeconds": 5,
                                    "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 2},
                 "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/mysql/conf.d", "readOnly": True},
                                  {"name": "data", "mountPath": "/var/lib/mysql"}]}
    volumes = [{"name": "config", "configMap": {"name": f"{name}-config"}}, {"name": "data", "emptyDir": {}}]
    placement = Placement(domains=[domain.name])
    spec = pod_spec(plan, placement, [container], volumes)
    spec.setdefault("affinity", {})["podAntiAffinity"] = _one_member_per_cluster(domain, _labels("galera", name))
    statefulset = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(name, ns, "galera"),
                   "spec": {"serviceName": f"{name}-peers", "replicas": domain.replicas,
                            "podManagementPolicy": "Parallel",
                            "selector": {"matchLabels": _labels("galera", name)},
                            "template": {"metadata": {"labels": {**_part_of(), **_labels("galera", name),
                                                                 db_key(domain.name): "member"}},
                                         "spec": spec}}}
    objects = [config_map(f"{name}-config", ns, "galera", {"galera.cnf": galera_config(domain)}),
               service(f"{name}-peers", ns, "galera", GALERA_PORTS, _labels("galera", name), headless=True),
               service(client_service(domain), ns, "galera", {"mysql": MYSQL_PORT}, _labels("galera", name)),
               statefulset]
    return _owned(plan, ns, objects)

