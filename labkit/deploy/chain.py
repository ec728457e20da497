"""The grid chain of an env on a running test bed: :class:`Chain` (its plan, low and high PDC,
PMUs), deploying it (runtime image, DB domains, PMUs and PDCs), waiting for it, finding where
its pods really run, and removing it (with the recorder pods) for the next experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from labkit.config import Env
from labkit.deploy import INSTANCE, RECORDER_NAMESPACE, DeployError
from labkit.testbed import Testbed, load_image
from labkit.testbed.pods import provider_of_node
from labkit.topology import Plan, plan as make_plan
from labkit.waiting import wait_until
from labkit.workloads.render import Images, Manifest, grid, owner as namespace_owner
from labkit.workloads.timers import FAST, Timers


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
        raise DeployError(f"env {env.name!r} has no low-level PDC in its grid")
    low = lows[0]
    high = next((p for p in env.grid.pdcs if p.level == "high" and low.name in p.inputs), None)
    if high is None:
        raise DeployError(f"env {env.name!r}: no high-level PDC reads {low.name!r}")
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


def load_runtime(testbed: Testbed, clusters: Iterable[str]) -> str:
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
        raise DeployError(f"cannot apply a {kind} ({obj['metadata']['name']}): not a kind of the grid chain")
    create[kind](ns, dict(obj))


def chain_domains(chain: Chain) -> list[str]:
    """The DB domains keeping the configuration of the chain's PDCs (those of their namespaces)."""
    namespaces = {chain.namespace(chain.low), chain.namespace(chain.high)}
    return [d.name for d in chain.env.db_domains if d.namespace in namespaces]


def deploy_databases(testbed: Testbed, chain: Chain, log: Callable[[str], None] = print,
                     images_loaded: Callable[[], object] = lambda: None) -> list[str]:
    """Run the DB domains of the chain's PDCs and store the PDCs' configuration in them (thesis 3.2, 7.4).

    Uses :mod:`labkit.deploy.database` (Galera, as the thesis' Percona XtraDB Cluster). A
    domain a previous experiment on this test bed left running is reused once every member is
    Synced again. The missing ones form side by side (the multi-level chain has two): the galera
    image is first imported into all their clusters at once, so no cluster imports it twice.
    ``images_loaded`` is called once that import is done (at once if none is needed), before
    any domain forms: :func:`prepare` starts the runtime image's import there.
    """
    from labkit.deploy import database

    domains = chain_domains(chain)
    if not domains:
        raise DeployError(f"env {chain.env.name!r}: no DB domain holds the namespaces of {chain.low}/{chain.high}")
    missing = [name for name in domains if not _reuse_database(testbed, chain, name)]
    if missing:
        clusters = sorted({c for name in missing for c in database.domain_of(chain.plan, name).members})
        database.load_images(testbed, clusters, log)
    images_loaded()
    if missing:
        with ThreadPoolExecutor(max_workers=len(missing), thread_name_prefix="db-domain") as pool:
            list(pool.map(lambda name: database.deploy_database(testbed, chain.plan, name, log=log), missing))
    for name in domains:
        database.write_pdc_configs(testbed, chain.plan, name)
    return domains


def wait_databases(testbed: Testbed, chain: Chain, timeout: float = 300.0) -> None:
    """Wait until every member of the chain's DB domains is Synced again (after a fault cut one off),
    and their client Services serve in every member's cluster (:func:`labkit.deploy.database.wait_ready`).

    A member on a disconnected cluster rejoins (a state transfer) some time after its cluster
    comes back; a next fault that cuts another member off before that leaves one of three, a
    non-Primary component, and the PDCs could not fetch their configuration.
    """
    from labkit.deploy import database

    for name in chain_domains(chain):
        database.wait_ready(testbed, chain.plan, name, timeout)


def _reuse_database(testbed: Testbed, chain: Chain, name: str) -> bool:
    """Whether DB domain ``name`` already runs (then wait until it serves again; a member may rejoin)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from labkit.deploy import database

    domain = database.domain_of(chain.plan, name)
    apps = client.AppsV1Api(testbed.kube(namespace_owner(chain.plan, domain.namespace)))
    try:
        apps.read_namespaced_stateful_set(database.statefulset_name(domain), domain.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    database.wait_ready(testbed, chain.plan, domain, 300.0)
    return True


def deploy_chain(testbed: Testbed, chain: Chain, image: str, with_db: bool, estimator: bool = False,
                 timers: Timers = FAST) -> list[Manifest]:
    """Apply the env's PMUs and PDCs (and the state estimator if ``estimator``) to their owners.

    ``with_db``: the PDCs fetch their configuration from their DB domain (deployed first by
    :func:`deploy_databases`); otherwise they read their ConfigMap file. ``timers``: the pods'
    probes and grace period, the PDCs' reconnect (:mod:`labkit.workloads.timers`). Returns what was applied.
    """
    images = Images(runtime=image, galera=Images.kit().galera)
    manifests = [m for m in grid(chain.plan, images, with_db=with_db, timers=timers)
                 if estimator or m.obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "se"]
    for m in manifests:
        apply_object(testbed.kube(m.cluster), m.obj)
    return manifests


def remove_chain(testbed: Testbed, chain: Chain, timeout: float = 120.0) -> None:
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
        core = core_api(testbed, cluster)
        try:
            core.delete_collection_namespaced_pod(RECORDER_NAMESPACE, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
    left: list[str] = []

    def gone() -> bool:
        left[:] = [p.metadata.name for name in names for p in core_api(testbed, chain.owner(name)).list_namespaced_pod(
            chain.namespace(name), label_selector=f"{INSTANCE}={name}").items]
        left.extend(p.metadata.name for c in testbed.clusters()
                    for p in core_api(testbed, c).list_namespaced_pod(RECORDER_NAMESPACE).items)
        return not left

    wait_until(gone, timeout=timeout, interval=1.0, error=DeployError,
               message=lambda: f"pods of the chain still there after {timeout:.0f} s: {left}")


def wait_ready(testbed: Testbed, chain: Chain, names: Iterable[str], timeout: float = 240.0) -> None:
    """Wait until the Deployment of each component in ``names`` has a ready replica."""
    from kubernetes import client

    pending = set(names)

    def ready() -> bool:
        for name in sorted(pending):
            dep = client.AppsV1Api(testbed.kube(chain.owner(name))).read_namespaced_deployment(
                name, chain.namespace(name))
            if (dep.status.ready_replicas or 0) >= 1:
                pending.discard(name)
        return not pending

    wait_until(ready, timeout=timeout, interval=1.0, error=DeployError,
               message=lambda: f"components not ready after {timeout:.0f} s: {sorted(pending)} "
                               "(see the pods of their owners and providers)")


def home_pods(testbed: Testbed, chain: Chain, name: str) -> list[Any]:
    """The pods of component ``name`` in its owner (not being deleted), newest first."""
    from kubernetes import client

    pods = client.CoreV1Api(testbed.kube(chain.owner(name))).list_namespaced_pod(
        chain.namespace(name), label_selector=f"{INSTANCE}={name}").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    return sorted(live, key=lambda p: p.metadata.creation_timestamp, reverse=True)


def hosting_cluster(testbed: Testbed, chain: Chain, name: str) -> str:
    """The cluster that really runs component ``name`` (the provider behind a virtual node, or the owner)."""
    from kubernetes import client

    owner = chain.owner(name)
    pods = [p for p in home_pods(testbed, chain, name) if p.spec.node_name]
    if not pods:
        raise DeployError(f"{name}: no scheduled pod in {owner}/{chain.namespace(name)}")
    node = client.CoreV1Api(testbed.kube(owner)).read_node(pods[0].spec.node_name)
    return provider_of_node(node.metadata.labels or {}) or owner


def pod_namespace(chain: Chain, name: str, cluster: str) -> str:
    """Namespace of ``name``'s real pod in ``cluster`` (home namespace in the owner, else the remote one)."""
    return chain.namespace(name) if cluster == chain.owner(name) else chain.remote_namespace(name)


def core_api(testbed: Testbed, cluster: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(testbed.kube(cluster))


def prepare(testbed: Testbed, chain: Chain, with_db: bool, timers: Timers = FAST) -> str:
    """Load the runtime image where the chain and its recorders run, deploy the chain, wait until it is ready.

    What a previous experiment left of a chain on this test bed (a shared one) goes first
    (:func:`remove_chain`; on a fresh test bed that finds nothing). ``with_db``: first the PDCs'
    DB domains (:func:`deploy_databases`); the runtime image is imported while they form (they
    mostly wait: for their pods, for the state transfers), not after. ``timers``: as :func:`deploy_chain`.
    """
    remove_chain(testbed, chain)
    clusters = sorted({*grid_clusters(chain), chain.owner(chain.high)})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime-image") as pool:
        runtime: list[Future[str]] = []

        def load() -> None:
            runtime.append(pool.submit(load_runtime, testbed, clusters))

        if with_db:
            deploy_databases(testbed, chain, images_loaded=load)
        else:
            load()
        image = runtime[0].result()
    deploy_chain(testbed, chain, image, with_db, timers=timers)
    wait_ready(testbed, chain, [*chain.pmus, chain.low, chain.high])
    return image
