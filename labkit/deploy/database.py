"""DB domains on a test bed: the Galera cluster of a domain, and the PDC configuration in it.

The thesis keeps the PDCs' configuration in a Percona XtraDB Cluster (Galera) run by the
Percona operator, spread over the leaves of a DB domain. Here a DB domain is the
StatefulSet :func:`labkit.workloads.render.database` renders (MariaDB 10.11 + galera-4, the
``galera`` image), applied to the owner of the domain's namespace; with the namespace
offloaded, its members run in the leaves (one per leaf) and find each other through the
headless Service ``<domain>-galera-peers``.

Use::

    tb.up(env)                                      # peers and offloads as planned
    db = deploy_database(tb, tb.plan, "pdc-config") # images, manifests, wait until Synced x replicas
    write_pdc_configs(tb, tb.plan, "pdc-config")    # every PDC whose config names this database
    sql(tb, db.members[0], "SELECT COUNT(*) FROM pdc", database="labkit")

Commands run in a member through the Kubernetes API (exec of ``mariadb`` as root on the
member's unix socket), in the cluster where its container runs: for a member on a virtual
node, the provider's pod of the ShadowPod (:func:`labkit.testbed.pods.twin_pods`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.config import DbDomain
from labkit.grid.pdc_config import PdcConfig, config_sql, from_mapping, reader_sql
from labkit.testbed import Testbed, TestbedError
from labkit.testbed.pods import PodHost, provider_of_node, twin_pods
from labkit.topology import Plan
from labkit.waiting import wait_until
from labkit.workloads.render import (DB_NAME, DB_READER, Images, Manifest, client_service, database, grid_namespace,
                                     pdc_config)

#: Galera status variables :func:`status` reads.
WSREP_STATUS = ("wsrep_cluster_size", "wsrep_cluster_status", "wsrep_local_state_comment", "wsrep_ready",
                "wsrep_cluster_state_uuid", "wsrep_connected", "wsrep_last_committed")

#: The galera image's entrypoint; its ``--state``, ``--position`` and ``--bootstrap`` serve :func:`recover`.
ENTRYPOINT = "labkit-galera"
#: Seconds :func:`wait_complete` waits for an incomplete domain before it looks for a full crash, and between looks.
RECOVER_AFTER = 20.0

#: Seconds the client waits to connect to the client Service's server (:func:`service_answers`).
CONNECT_TIMEOUT = 5
#: Seconds :func:`wait_serving` waits, after the members are Synced, for the client Service to serve everywhere.
SERVING_TIMEOUT = 120.0

#: Log lines of a member's container that :func:`describe` shows when its state cannot be read.
DESCRIBED_LOG_LINES = 6

Log = Callable[[str], None]


class DatabaseError(TestbedError):
    """A DB domain cannot be deployed, reached or queried (the message names the member and the cause)."""


@dataclass(frozen=True)
class Member:
    """One Galera member: its StatefulSet pod and where its container runs.

    Attributes
    ----------
    pod
        The StatefulSet pod's name (in the domain's namespace of the owner cluster).
    cluster
        The cluster running the container (a provider for a member on a virtual node).
    namespace, runtime_pod
        The namespace and name of the pod running the container in ``cluster``.
    ip
        The pod IP (what the other members and the clients reach).
    """

    pod: str
    cluster: str
    namespace: str
    runtime_pod: str
    ip: str


@dataclass
class Deployment:
    """What :func:`deploy_database` did and how long it took.

    Attributes
    ----------
    domain
        The DB domain.
    owner
        The cluster the manifests were applied to.
    members
        The members once the cluster was complete.
    timings
        ``images_s`` (image import into the member clusters), ``ready_s`` (manifests applied
        until every member is Synced in a cluster of ``replicas``), ``schema_s``, ``serving_s``
        (from then until the client Service serves in every member's cluster, :func:`wait_serving`).
    """

    domain: DbDomain
    owner: str
    members: list[Member]
    timings: dict[str, float] = field(default_factory=dict)


def domain_of(plan: Plan, domain: str | DbDomain) -> DbDomain:
    """The :class:`~labkit.config.DbDomain` named ``domain`` in the plan's env."""
    if isinstance(domain, DbDomain):
        return domain
    for d in plan.env.db_domains:
        if d.name == domain:
            return d
    raise DatabaseError(f"env {plan.env.name!r} has no DB domain {domain!r}; "
                        f"db_domains: {[d.name for d in plan.env.db_domains]}")


def statefulset_name(domain: DbDomain) -> str:
    """Name of the domain's StatefulSet (also the prefix of its pods)."""
    return f"{domain.name}-galera"


def manifests(plan: Plan, domain: DbDomain, images: Images | None = None) -> list[Manifest]:
    """The domain's objects with the images the test bed imports (``labkit.images``)."""
    if images is None:
        from labkit import images as imagelib
        images = Images(runtime=imagelib.image_ref("runtime"), galera=imagelib.image_ref("galera"))
    return database(plan, domain, images)


def apply(testbed: Testbed, manifest: Manifest) -> None:
    """Create ``manifest`` in its cluster, or replace it when it exists (ConfigMap, Service, StatefulSet)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = testbed.kube(manifest.cluster)
    ns, body = manifest.namespace, dict(manifest.obj)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    create, replace = {
        "ConfigMap": (core.create_namespaced_config_map, core.replace_namespaced_config_map),
        "Service": (core.create_namespaced_service, core.patch_namespaced_service),
        "StatefulSet": (apps.create_namespaced_stateful_set, apps.patch_namespaced_stateful_set),
    }.get(manifest.kind, (None, None))
    if create is None:
        raise DatabaseError(f"cannot apply {manifest.kind} {manifest.name}: only ConfigMap, Service, StatefulSet")
    try:
        create(ns, body)
    except ApiException as exc:
        if exc.status != 409:
            raise DatabaseError(f"creating {manifest.kind} {ns}/{manifest.name} in {manifest.cluster}: "
                                f"{exc.status} {exc.reason}: {exc.body}") from None
        replace(manifest.name, ns, body)


def load_images(testbed: Testbed, clusters: Sequence[str], log: Log = print) -> float:
    """Import the galera image into ``clusters`` (:func:`labkit.testbed.load_image`); return the seconds it took."""
    from labkit.testbed import load_image

    start = time.monotonic()
    load_image(testbed, list(clusters), "galera")
    return time.monotonic() - start


def members(testbed: Testbed, plan: Plan, domain: str | DbDomain) -> list[Member]:
    """The domain's members that run now (pod IP known), in ordinal order."""
    from kubernetes import client

    dom = domain_of(plan, domain)
    owner = _owner(plan, dom)
    core = client.CoreV1Api(testbed.kube(owner))
    selector = f"app.kubernetes.io/instance={statefulset_name(dom)}"
    out = []
    for pod in sorted(core.list_namespaced_pod(dom.namespace, label_selector=selector).items,
                      key=lambda p: _ordinal(p.metadata.name)):
        if pod.metadata.deletion_timestamp is not None or not pod.status.pod_ip or not pod.spec.node_name:
            continue
        located = _locate(testbed, core, owner, dom.namespace, pod.metadata.name, pod.spec.node_name)
        if located is not None:
            out.append(Member(pod.metadata.name, located[0], located[1], located[2], pod.status.pod_ip))
    return out


def _ordinal(pod: str) -> int:
    tail = pod.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _owner(plan: Plan, domain: DbDomain) -> str:
    from labkit.workloads.render import owner
    return owner(plan, domain.namespace)


def _locate(testbed: Testbed, core: Any, owner: str, namespace: str, pod: str,
            node: str) -> tuple[str, str, str] | None:
    """``(cluster, namespace, pod)`` where home pod ``pod`` bound to ``node`` runs its container."""
    from kubernetes import client

    provider = provider_of_node(core.read_node(node).metadata.labels or {})
    if provider is None:
        return owner, namespace, pod
    if provider not in testbed.clusters():
        raise DatabaseError(f"member {pod} runs on virtual node {node} of cluster {provider!r}, "
                            f"which this test bed does not know ({testbed.clusters()})")
    remote = twin_pods(client.CoreV1Api(testbed.kube(provider)), pod)
    running = [p for p in remote if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]
    if not running:
        return None
    best = max(running, key=lambda p: p.metadata.creation_timestamp)
    return provider, best.metadata.namespace, best.metadata.name


def host(testbed: Testbed, member: Member) -> PodHost:
    """The member's container as a :class:`~labkit.testbed.pods.PodHost` (exec through its cluster's API)."""
    from kubernetes import client

    return PodHost(client.CoreV1Api(testbed.kube(member.cluster)), member.namespace, member.runtime_pod, member.ip,
                   container="galera")


def sql(testbed: Testbed, member: Member, statements: str, database: str | None = None,
        timeout: float = 30.0) -> list[list[str]]:
    """Run ``statements`` with ``mariadb`` as root in ``member``; return the rows (tab-separated fields).

    Raises
    ------
    DatabaseError
        When the client exits non-zero (the message names the member and has its error).
    """
    argv = ["mariadb", "-N", "-B", *(["-D", database] if database else []), "-e", statements]
    result = host(testbed, member).run(argv, timeout=timeout)
    if result.returncode != 0:
        raise DatabaseError(f"SQL in {member.pod} ({member.cluster}/{member.namespace}/{member.runtime_pod}) "
                            f"exited {result.returncode}: {(result.stderr or result.stdout).strip()[-500:]}")
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def status(testbed: Testbed, member: Member) -> dict[str, str]:
    """The member's Galera status (:data:`WSREP_STATUS`)."""
    names = ",".join(f"'{n}'" for n in WSREP_STATUS)
    rows = sql(testbed, member, f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})", timeout=15)
    return {row[0].lower(): row[1] for row in rows if len(row) == 2}


def complete(testbed: Testbed, plan: Plan, domain: str | DbDomain, replicas: int | None = None) -> list[Member] | None:
    """The members when ``replicas`` (default: the domain's) are Synced in one Primary cluster of that size."""
    dom = domain_of(plan, domain)
    want = dom.replicas if replicas is None else replicas
    found = members(testbed, plan, dom)
    if len(found) != want:
        return None
    uuids = set()
    for member in found:
        try:
            st = status(testbed, member)
        except Exception:  # not started yet, exec refused while the container starts: not complete
            return None
        if (st.get("wsrep_cluster_size") != str(want) or st.get("wsrep_local_state_comment") != "Synced"
                or st.get("wsrep_cluster_status") != "Primary"):
            return None
        uuids.add(st.get("wsrep_cluster_state_uuid"))
    return found if len(uuids) == 1 else None


def wait_complete(testbed: Testbed, plan: Plan, domain: str | DbDomain, timeout: float = 300.0,
                  replicas: int | None = None, interval: float = 1.0, log: Log = print) -> list[Member]:
    """Wait until :func:`complete`; raise :class:`DatabaseError` with every member's state on timeout.

    Every :data:`RECOVER_AFTER` seconds without a complete domain it calls :func:`recover`,
    which restarts a domain that every member waits for after a full crash.
    """
    dom = domain_of(plan, domain)
    next_look = time.monotonic() + RECOVER_AFTER

    def formed() -> list[Member] | None:
        nonlocal next_look
        found = complete(testbed, plan, dom, replicas)
        if found is None and time.monotonic() >= next_look:
            recover(testbed, plan, dom, log)
            next_look = time.monotonic() + RECOVER_AFTER
        return found

    return wait_until(formed, timeout=timeout, interval=interval, error=DatabaseError,
                      message=lambda: f"DB domain {dom.name}: not {replicas or dom.replicas} Synced members after "
                                      f"{timeout:.0f} s; members now: {describe(testbed, plan, dom)}")


def ready_in(slices: Sequence[Any]) -> set[str]:
    """Addresses of the ready endpoints in ``slices`` (``V1EndpointSlice``), as kube-proxy reads them.

    An endpoint without a ``ready`` condition counts as ready (the API's "unknown").
    """
    return {address for piece in slices for endpoint in piece.endpoints or []
            if endpoint.conditions is None or endpoint.conditions.ready is not False
            for address in endpoint.addresses}


def ready_addresses(testbed: Testbed, cluster: str, namespace: str, service: str) -> set[str]:
    """Addresses of the ready endpoints of ``service`` in ``cluster``'s ``namespace`` (its EndpointSlices).

    In a member's provider cluster these are the reflected slices of the owner's Service.
    """
    from kubernetes import client

    slices = client.DiscoveryV1Api(testbed.kube(cluster)).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}").items
    return ready_in(slices)


def service_answers(testbed: Testbed, member: Member, service: str) -> str | None:
    """``None`` when the domain's database answers at ``service`` from ``member``'s container, else why not.

    A query as the PDCs' read-only account (:data:`~labkit.workloads.render.DB_READER`, which
    :func:`deploy_database` creates) by the Service's DNS name, as a PDC beside the member
    reads its configuration: the name resolves in the member's cluster, kube-proxy sends the
    connection to a ready endpoint and that server lets the account read the database.
    """
    argv = ["mariadb", "-N", "-B", f"--connect-timeout={CONNECT_TIMEOUT}", "-h", f"{service}.{member.namespace}.svc",
            "-u", DB_READER, "-D", DB_NAME, "-e", "SELECT 1"]
    try:
        result = host(testbed, member).run(argv, timeout=CONNECT_TIMEOUT + 10)
    except Exception as exc:  # the exec refused (the container restarts): not serving from there
        return f"exec failed: {str(exc)[-200:]}"
    if result.returncode == 0 and result.stdout.split() == ["1"]:
        return None
    return f"mariadb exited {result.returncode}: {(result.stderr or result.stdout).strip()[-200:]}"


def unserved(testbed: Testbed, domain: DbDomain, found: Sequence[Member]) -> dict[str, str]:
    """Why the domain's client Service does not serve yet, per cluster running a member (``{}``: it serves in all).

    It serves in a cluster when its EndpointSlices there hold one ready endpoint per member of
    ``found`` (kube-proxy then balances over every Synced member, none missing, none stale)
    and :func:`service_answers` from that cluster's member.
    """
    service, want = client_service(domain), len(found)
    where = {(m.cluster, m.namespace): m for m in reversed(found)}  # the lowest ordinal of each cluster
    problems: dict[str, str] = {}
    for (cluster, namespace), member in sorted(where.items()):
        ready = ready_addresses(testbed, cluster, namespace, service)
        if len(ready) != want:
            problems[cluster] = f"{len(ready)} ready endpoint(s) of {want} {sorted(ready)}"
        elif (why := service_answers(testbed, member, service)) is not None:
            problems[cluster] = why
    return problems


def wait_serving(testbed: Testbed, plan: Plan, domain: str | DbDomain, found: Sequence[Member],
                 timeout: float = SERVING_TIMEOUT, interval: float = 1.0, log: Log = print) -> None:
    """Wait until the client Service serves in every cluster running one of ``found`` (:func:`unserved`).

    A member is Synced (what :func:`complete` reads) before Kubernetes sends clients to it: its
    readiness probe passes, a virtual kubelet copies the provider pod's Ready condition to the
    home pod, the owner's EndpointSlice controller adds it, the reflection copies the endpoint
    into each provider (Liqo: those of the other providers' members) and that cluster's
    kube-proxy programs it. Until then a client's connect to the Service is refused there
    (kube-proxy rejects a Service without ready endpoints) or lands on fewer members.

    What keeps it from serving at the first look is logged (that is the lag a client sees).

    Raises
    ------
    DatabaseError
        When it does not serve everywhere within ``timeout`` (the message says why, per cluster).
    """
    dom = domain_of(plan, domain)
    last: dict[str, str] | None = None

    def served() -> bool:
        nonlocal last
        first, last = last is None, unserved(testbed, dom, found)
        if first and last:
            log(f"[database] {dom.name}: waiting for client Service {client_service(dom)}: {last}")
        return not last

    wait_until(served, timeout=timeout, interval=interval, error=DatabaseError,
               message=lambda: f"DB domain {dom.name}: client Service {client_service(dom)} not serving after "
                               f"{timeout:.0f} s in {last}")


def wait_ready(testbed: Testbed, plan: Plan, domain: str | DbDomain, timeout: float = 300.0,
               log: Log = print) -> list[Member]:
    """:func:`wait_complete`, then :func:`wait_serving`: the domain serves its clients everywhere; its members.

    For a domain :func:`deploy_database` made (:func:`service_answers` needs its read-only account).
    """
    found = wait_complete(testbed, plan, domain, timeout, log=log)
    wait_serving(testbed, plan, domain, found, log=log)
    return found


def needs_recovery(states: Mapping[str, str]) -> bool:
    """Whether a domain waits for a full-crash recovery, from its members' entrypoint states.

    ``states`` maps each member (in ordinal order) to what the entrypoint's ``--state`` (or
    ``--position``) printed. True when every member waits, none will bootstrap by itself (no
    ``waiting-safe`` member; member 0 not ``waiting-fresh``, as it bootstraps a fresh data
    dir) and at least one waits on the data of a crashed member (``waiting-unsafe``).
    """
    kinds = [state.split(" ", 1)[0] for state in states.values()]
    return (bool(kinds) and all(k.startswith("waiting-") for k in kinds) and "waiting-safe" not in kinds
            and kinds[0] != "waiting-fresh" and "waiting-unsafe" in kinds)


def bootstrap_choice(positions: Mapping[str, str]) -> str | None:
    """The member to bootstrap a fully crashed domain from, or ``None`` when it needs none.

    ``positions`` maps each member (in ordinal order) to what the entrypoint's ``--position``
    printed (``waiting-unsafe <uuid>:<seqno>`` for a crashed member). The choice is Galera's
    manual recovery rule: the member with the highest recovered seqno (ties: the lowest ordinal).

    Raises
    ------
    DatabaseError
        When the members recovered positions of different cluster histories (uuids): no
        member's data contains the others', so a person must choose.
    """
    if not needs_recovery(positions):
        return None
    recovered: dict[str, tuple[str, int]] = {}
    for name, state in positions.items():
        kind, _, position = state.partition(" ")
        if kind == "waiting-unsafe":
            uuid, _, seqno = position.rpartition(":")
            if not uuid or not seqno.lstrip("-").isdigit():
                raise DatabaseError(f"member {name}: no recovered position in {state!r}")
            recovered[name] = (uuid, int(seqno))
    if len({uuid for uuid, _ in recovered.values()}) > 1:
        raise DatabaseError(f"full crash with members of different cluster histories, not recovered: {recovered}")
    best = max(seqno for _, seqno in recovered.values())
    return next(name for name, (_, seqno) in recovered.items() if seqno == best)


def quorum_choice(statuses: Mapping[str, Mapping[str, str] | None], replicas: int) -> str | None:
    """The member to reset a domain's quorum on, or ``None`` when that would not be safe or needed.

    ``statuses`` maps each member (in ordinal order) to its :func:`status` (``None``: not
    readable, a joiner without its socket yet). Galera's "resetting the quorum"
    (``pc.bootstrap=YES``) is safe when no member is Primary and one non-Primary component
    holds every one of the ``replicas`` members: then no other component anywhere can be
    Primary. That is what a two-member domain is left with when one member crashes (the
    survivor alone is half, not a majority) and comes back. The choice is the member of that
    component with the most committed transactions (ties: the lowest ordinal).
    """
    readable = {name: st for name, st in statuses.items() if st}
    if any(st.get("wsrep_cluster_status") == "Primary" for st in readable.values()):
        return None
    whole = {name: st for name, st in readable.items()
             if st.get("wsrep_cluster_status") == "non-Primary" and st.get("wsrep_cluster_size") == str(replicas)}
    if not whole:
        return None
    best = max(int(st.get("wsrep_last_committed") or -1) for st in whole.values())
    return next(name for name, st in whole.items() if int(st.get("wsrep_last_committed") or -1) == best)


def recover(testbed: Testbed, plan: Plan, domain: str | DbDomain, log: Log = print) -> str | None:
    """Restart a DB domain that lost its Primary component; return the member it restarted it from, or ``None``.

    Two cases, each what Galera's manual asks a person to do:

    * **full crash**: every member was killed (an OOM kill, a node or sandbox restart, a
      liveness kill under load), no member's ``grastate.dat`` is safe to bootstrap from and
      every entrypoint waits for a peer (:func:`needs_recovery`). As the Percona operator's
      auto-recovery does: recover each member's last committed position (``mariadbd
      --wsrep-recover``), mark the most recent member safe to bootstrap; its entrypoint then
      bootstraps and the others join it;
    * **lost quorum**: the servers run, but in one non-Primary component (a member of a
      two-member domain crashed and came back): ``pc.bootstrap=YES`` on the most advanced
      member (:func:`quorum_choice`).

    Does nothing unless every member of the domain runs. A member whose entrypoint fails to
    answer is logged and the domain left as it is (the next look tries again).
    """
    dom = domain_of(plan, domain)
    found = members(testbed, plan, dom)
    if len(found) != dom.replicas:
        return None
    states = {m.pod: _entrypoint(testbed, m, "--state", log) for m in found}
    if not needs_recovery(states):  # the cheap look: --position runs mariadbd --wsrep-recover
        return _reset_quorum(testbed, dom, found, log)
    positions = {m.pod: _entrypoint(testbed, m, "--position", log, timeout=120) for m in found}
    choice = bootstrap_choice(positions)
    if choice is None:
        return None
    member = next(m for m in found if m.pod == choice)
    if _entrypoint(testbed, member, "--bootstrap", log) == UNANSWERED:
        return None
    log(f"[database] {dom.name}: full crash (every member waiting on an unsafe data dir); "
        f"bootstrapping from {choice} at {positions[choice].split(' ', 1)[1]}")
    return choice


def _reset_quorum(testbed: Testbed, dom: DbDomain, found: Sequence[Member], log: Log) -> str | None:
    """``pc.bootstrap=YES`` on :func:`quorum_choice`'s member, if any; return it."""
    statuses: dict[str, Mapping[str, str] | None] = {}
    for member in found:
        try:
            statuses[member.pod] = status(testbed, member)
        except Exception:  # no socket yet (a joiner) or exec refused: not readable
            statuses[member.pod] = None
    choice = quorum_choice(statuses, dom.replicas)
    if choice is None:
        return None
    member = next(m for m in found if m.pod == choice)
    sql(testbed, member, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
    log(f"[database] {dom.name}: every member in one non-Primary component; quorum reset on {choice} "
        f"(last committed {statuses[choice].get('wsrep_last_committed')})")  # type: ignore[union-attr]
    return choice


#: What :func:`_entrypoint` returns for a member that did not answer (neither a state nor a position).
UNANSWERED = "unanswered"


def _entrypoint(testbed: Testbed, member: Member, command: str, log: Log, timeout: float = 30.0) -> str:
    """What the member's entrypoint prints for ``command``, or :data:`UNANSWERED` (and a log line) when it fails."""
    try:
        result = host(testbed, member).run([ENTRYPOINT, command], timeout=timeout)
    except Exception as exc:  # the exec refused: the container restarts or its pod goes
        error = str(exc)
    else:
        if result.returncode == 0:
            return result.stdout.strip()
        error = f"exit {result.returncode}: {(result.stderr or result.stdout).strip()[-300:]}"
    log(f"[database] {member.pod}: {ENTRYPOINT} {command} failed ({error[-300:]})")
    return UNANSWERED


def describe(testbed: Testbed, plan: Plan, domain: str | DbDomain) -> dict[str, Any]:
    """Every running member's location and Galera state, for messages.

    A member whose state cannot be read gets the error, its container's restart count and the
    last lines of its log (the entrypoint says there what it waits for, mariadbd why it stopped).
    """
    out: dict[str, Any] = {}
    for member in members(testbed, plan, domain):
        try:
            out[member.pod] = {"cluster": member.cluster, "ip": member.ip, **status(testbed, member)}
        except Exception as exc:  # for diagnostics only
            out[member.pod] = {"cluster": member.cluster, "ip": member.ip, "error": str(exc)[-200:],
                               **container_state(testbed, member)}
    return out


def container_state(testbed: Testbed, member: Member, lines: int = DESCRIBED_LOG_LINES) -> dict[str, Any]:
    """The galera container's restart count and last ``lines`` log lines (``{}`` when unreadable)."""
    from kubernetes import client

    core = client.CoreV1Api(testbed.kube(member.cluster))
    try:
        pod = core.read_namespaced_pod(member.runtime_pod, member.namespace)
        log = core.read_namespaced_pod_log(member.runtime_pod, member.namespace, container="galera",
                                           tail_lines=lines)
    except Exception:  # for diagnostics only: the pod may be gone by now
        return {}
    restarts = sum(s.restart_count for s in pod.status.container_statuses or [])
    return {"restarts": restarts, "log": [line[-300:] for line in log.splitlines()]}


def deploy_database(testbed: Testbed, plan: Plan, domain: str | DbDomain, *, images: Images | None = None,
                    timeout: float = 300.0, log: Log = print) -> Deployment:
    """Run a DB domain's Galera cluster and prepare the PDC configuration schema in it.

    Imports the galera image into the domain's clusters, applies the rendered ConfigMap,
    Services and StatefulSet to the owner of the domain's namespace (which must exist:
    ``up(env)`` offloads it), waits until every member is ``Synced`` in one Primary cluster
    of ``replicas``, creates the database, the read-only account PDCs use and the tables
    (:data:`labkit.grid.pdc_config.SCHEMA_SQL`), then waits until the client Service serves that
    account in every member's cluster (:func:`wait_serving`): PDCs read their configuration
    through it as soon as this returns.

    Returns
    -------
    Deployment
        The members and ``timings`` (``images_s``, ``ready_s``, ``schema_s``, ``serving_s``).

    Raises
    ------
    DatabaseError
        When an object cannot be created or the cluster is not complete within ``timeout``.
    """
    dom = domain_of(plan, domain)
    owner = _owner(plan, dom)
    deployment = Deployment(dom, owner, [])
    deployment.timings["images_s"] = load_images(testbed, list(dom.members), log)
    start = time.monotonic()
    for manifest in manifests(plan, dom, images):
        apply(testbed, manifest)
    deployment.members = wait_complete(testbed, plan, dom, timeout, log=log)
    deployment.timings["ready_s"] = time.monotonic() - start
    log(f"[database] {dom.name}: {dom.replicas} members Synced in {deployment.timings['ready_s']:.1f} s "
        f"({', '.join(f'{m.pod}@{m.cluster}' for m in deployment.members)})")
    start = time.monotonic()
    sql(testbed, deployment.members[0], reader_sql(DB_NAME, DB_READER))
    sql(testbed, deployment.members[0], config_sql([]), database=DB_NAME)  # the tables, no rows
    deployment.timings["schema_s"] = time.monotonic() - start
    start = time.monotonic()
    wait_serving(testbed, plan, dom, deployment.members, log=log)
    deployment.timings["serving_s"] = time.monotonic() - start
    log(f"[database] {dom.name}: client Service {client_service(dom)} serves in every member's cluster "
        f"{deployment.timings['serving_s']:.1f} s after the schema")
    return deployment


def pdc_configs(plan: Plan, domain: str | DbDomain) -> list[PdcConfig]:
    """The configuration of every PDC whose namespace keeps it in ``domain`` (as rendered for it)."""
    dom = domain_of(plan, domain)
    env = plan.env
    out = []
    for pdc in env.grid.pdcs:
        if grid_namespace(env, pdc) != dom.namespace:
            continue
        rendered = pdc_config(env, pdc)
        out.append(from_mapping({k: v for k, v in rendered.items() if k != "db"}, where=f"rendered config of {pdc.name}"))
    return out


def write_pdc_configs(testbed: Testbed, plan: Plan, domain: str | DbDomain,
                      configs: Sequence[PdcConfig] | None = None, member: Member | None = None) -> list[PdcConfig]:
    """Store PDC configurations in the domain's database (one transaction); return them.

    ``configs`` defaults to :func:`pdc_configs`; ``member`` to the first running member.
    """
    dom = domain_of(plan, domain)
    cfgs = list(pdc_configs(plan, dom) if configs is None else configs)
    target = member or next(iter(members(testbed, plan, dom)), None)
    if target is None:
        raise DatabaseError(f"DB domain {dom.name}: no running member to write the PDC configuration to")
    sql(testbed, target, config_sql(cfgs), database=DB_NAME)
    return cfgs
