"""Pods as lab hosts: run commands and ping from inside a pod, on either backend.

Works through the Kubernetes API only (exec), so the same code measures pod-to-pod RTT on
the embedded test bed and on real VMs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from labkit.testbed.base import CommandResult, PingResult, TestbedError, ping_with
from labkit.waiting import wait_until


class PodHost:
    """A running pod seen as a :class:`~labkit.testbed.base.Host` (``run`` and ``ping`` only).

    ``core`` is a ``kubernetes.client.CoreV1Api`` of the pod's cluster.
    """

    def __init__(self, api: Any, namespace: str, pod: str, address: str, container: str | None = None) -> None:
        self.api, self.namespace, self.name, self.address, self.container = api, namespace, pod, address, container
        self._exec_api: Any = None

    def _exec_core(self) -> Any:
        """A CoreV1Api on a client of its own: ``kubernetes.stream.stream`` swaps the request method of the
        client it execs through for the length of the call, which breaks watches sharing that client."""
        if self._exec_api is None:
            from kubernetes import client

            self._exec_api = client.CoreV1Api(client.ApiClient(configuration=self.api.api_client.configuration))
        return self._exec_api

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> CommandResult:
        """Exec ``argv`` in the pod and wait for it (exit code from the exec status channel)."""
        from kubernetes.stream import stream

        kwargs = {"container": self.container} if self.container else {}
        resp = stream(self._exec_core().connect_get_namespaced_pod_exec, self.name, self.namespace, command=list(argv),
                      stderr=True, stdout=True, stdin=False, tty=False, _preload_content=False, **kwargs)
        out, err = [], []
        deadline = time.monotonic() + timeout
        while resp.is_open() and time.monotonic() < deadline:
            resp.update(timeout=1)
            out.append(resp.read_stdout() if resp.peek_stdout() else "")
            err.append(resp.read_stderr() if resp.peek_stderr() else "")
        timed_out = resp.is_open()
        resp.close()
        code = resp.returncode if not timed_out else 124
        return CommandResult(tuple(argv), code if code is not None else 1, "".join(out), "".join(err))

    def ping(self, target: str, count: int = 1, interval: float = 0.2, timeout: float = 5.0) -> PingResult:
        """Ping ``target`` from inside the pod (its image must have iputils ``ping``)."""
        return ping_with(self.run, target, count, interval, timeout)


def probe_pod(name: str, image: str, node: str | None = None, affinity: Mapping[str, Any] | None = None,
              labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A pod that idles so commands can be exec'd in it; pinned to ``node`` or placed by ``affinity``."""
    spec: dict[str, Any] = {
        "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Never",
                        "command": ["sleep", "infinity"]}],
        "terminationGracePeriodSeconds": 0,
    }
    if node:
        spec["nodeName"] = node
    if affinity:
        spec["affinity"] = dict(affinity)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "labkit-probe", **(labels or {})}},
            "spec": spec}


def ensure_namespace(api: Any, namespace: str) -> None:
    """Create ``namespace`` unless it exists."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def start_pods(api: Any, namespace: str, pods: Sequence[Mapping[str, Any]], timeout: float = 300.0) -> list[PodHost]:
    """Create ``pods`` in ``namespace`` and wait until each runs with an IP; return them as hosts."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    ensure_namespace(api, namespace)
    for pod in pods:
        core.create_namespaced_pod(namespace, dict(pod))
    names = [p["metadata"]["name"] for p in pods]
    waiting: dict[str, str] = {}

    def hosts() -> list[PodHost] | None:
        states = {n: core.read_namespaced_pod(n, namespace).status for n in names}
        running = {n: s.pod_ip for n, s in states.items() if s.phase == "Running" and s.pod_ip}
        waiting.clear()
        waiting.update({n: s.phase for n, s in states.items() if n not in running})
        return [PodHost(core, namespace, n, running[n]) for n in names] if not waiting else None

    return wait_until(hosts, timeout=timeout, error=TestbedError,
                      message=lambda: f"pods not running after {timeout:.0f} s in {namespace}: {waiting}")


def stop_pods(api: Any, namespace: str, names: Sequence[str], timeout: float = 120.0) -> None:
    """Delete the pods ``names`` of ``namespace`` at once (no grace period) and wait until they are gone."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    for name in names:
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
    left: list[str] = list(names)

    def gone() -> bool:
        present = {p.metadata.name for p in core.list_namespaced_pod(namespace).items}
        left[:] = [n for n in names if n in present]
        return not left

    wait_until(gone, timeout=timeout, error=TestbedError,
               message=lambda: f"pods still in {namespace} after {timeout:.0f} s: {left}")


#: Label of the provider-side pod of an offloaded pod, as the kit's Liqo look-alike sets it.
LOOK_ALIKE_TWIN_LABEL = "virtualkubelet.liqo.io/shadow-pod"
#: Label Liqo v0.10.2's ShadowPod controller puts on the provider-side pod (which keeps the home pod's name).
LIQO_TWIN_SELECTOR = "liqo.io/managed-by=shadowpod"


def twin_pods(core: Any, home_pod: str) -> list[Any]:
    """The provider-side pods of the offloaded pod ``home_pod``, in the provider whose ``core`` is given.

    Liqo v0.10.2 names the provider's pod like the home pod (in the remote namespace) and labels
    it ``liqo.io/managed-by=shadowpod``; the kit's look-alike runs a ReplicaSet of one whose pod
    carries ``virtualkubelet.liqo.io/shadow-pod=<home pod>``. Both are found; the caller picks
    the running one.
    """
    look_alike = core.list_pod_for_all_namespaces(label_selector=f"{LOOK_ALIKE_TWIN_LABEL}={home_pod}").items
    liqo = core.list_pod_for_all_namespaces(label_selector=LIQO_TWIN_SELECTOR,
                                            field_selector=f"metadata.name={home_pod}").items
    return look_alike + liqo


def provider_of_node(labels: Mapping[str, str]) -> str | None:
    """The cluster a virtual node stands for (``None`` for a physical node).

    Its cluster label ``topology.labkit.io/cluster``, which Liqo (``--cluster-labels``) and the
    look-alike copy from the provider onto its virtual nodes; Liqo's own
    ``liqo.io/remote-cluster-id`` is a UUID.
    """
    from labkit.topology.labels import CLUSTER, LIQO_TYPE, LIQO_VIRTUAL_NODE
    return labels.get(CLUSTER) if labels.get(LIQO_TYPE) == LIQO_VIRTUAL_NODE else None
