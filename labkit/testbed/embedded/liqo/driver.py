"""The thesis' Liqo v0.10.2 on the embedded clusters, installed, peered and offloaded with its own liqoctl.

:class:`LiqoCtl` runs the ``liqoctl`` built by setup (:mod:`.source`) on this machine, against
each cluster's API server on the lab network, as the thesis ran it against its VMs:

1. ``liqoctl install k3s`` per cluster, all at once: the cluster's name, pod and service CIDRs
   and cluster labels (``labkit.topology``), the API server's lab address, the lab network as
   a reserved subnet, the chart of the checked source (``--local-chart-path``), telemetry off,
   and the values both backends share (:func:`labkit.testbed.liqoctl.values`: Liqo's timers,
   userspace WireGuard here, a derived cluster ID); ``--set`` points the chart at the kit's two
   stand-in images (:mod:`labkit.images.liqo`) and disables the metric agent. Liqo's images are
   in every node's containerd already (the node image store, or an import here);
2. ``liqoctl generate peer-command`` on each provider, then ``liqoctl peer out-of-band`` on the
   consumer, for every planned (consumer, provider) pair; liqoctl waits for authentication,
   network and the virtual node; here the virtual node ``liqo-<provider>`` must then read Ready;
3. ``liqoctl offload namespace`` with the plan's mapping, pod strategy and cluster selector;
4. :meth:`LiqoCtl.down`: ``liqoctl unoffload``, ``unpeer`` and ``uninstall --purge``, each
   bounded in time and never failing the teardown (the test bed then removes every process).

Every liqoctl run is logged to ``logs/liqoctl.log`` of the cluster's root VM (kept with the
other logs of a failed start); the peering token is passed on liqoctl's command line and
never written: the provider's peer command is parsed in memory and the logged command lines
show ``<token>`` instead.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from labkit.config import LiqoTuning
from labkit.testbed import liqoctl
from labkit.testbed.base import TestbedError
from labkit.testbed.embedded import pki
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.embedded.liqo.peering import Peering, wait_node_ready
from labkit.images.liqo.source import LiqoPrograms
from labkit.topology.labels import liqoctl_selectors

Log = Callable[[str], None]

#: The gateway's WireGuard here: the kernel has no WireGuard module (Liqo runs ``wireguard-go``).
WIREGUARD = "userspace"
#: At most this many liqoctl processes peer at once (each is a 60 MB Go program polling its clusters).
PEER_WORKERS = 4
#: The "env name" the embedded clusters' Liqo cluster IDs are derived from.
ID_SCOPE = "embedded"
#: Seconds a teardown step (unoffload, unpeer, uninstall) may take before the test bed removes the rest.
DOWN_STEP_S = 60.0


class LiqoError(TestbedError):
    """A liqoctl step failed; the message names the step, the cluster and its output's last lines."""


class LiqoCtl:
    """Liqo v0.10.2 on the clusters of a running embedded test bed, driven with liqoctl.

    Parameters
    ----------
    testbed
        The running :class:`~labkit.testbed.embedded.EmbeddedTestbed`.
    programs
        The built Liqo (:func:`.source.find`): liqoctl and the chart.
    cluster_labels
        Labels each cluster advertises (its virtual nodes carry them).
    tuning
        Liqo's timers (an env's ``tuning.liqo``).
    log
        Where progress lines go.
    """

    #: Which peering this is (the run manifest and reports name it).
    kind = "liqo"

    def __init__(self, testbed: Any, programs: LiqoPrograms,
                 cluster_labels: Mapping[str, Mapping[str, str]] | None = None,
                 tuning: LiqoTuning = LiqoTuning(), log: Log = print) -> None:
        self.tb = testbed
        self.programs = programs
        self.labels = {k: dict(v) for k, v in (cluster_labels or {}).items()}
        self.tuning = tuning
        self.log = log
        self.installed: dict[str, float] = {}
        self.peerings: dict[tuple[str, str], Peering] = {}
        #: Pairs of clusters joined by a tunnel (one per pair, whichever way they peer).
        self.tunnels: dict[frozenset[str], tuple[str, str]] = {}
        self.offloaded: list[tuple[str, str]] = []
        self._peer_info: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        """The Liqo version running."""
        return self.programs.version

    def cluster_id(self, cluster: str) -> str:
        """Liqo's cluster ID of ``cluster``, derived from its name (one embedded test bed per machine:
        the env variants that share one, e.g. the stream experiments', share the IDs too)."""
        return liqoctl.cluster_id(ID_SCOPE, cluster)

    def cluster_name(self, cluster_id: str) -> str | None:
        """The cluster of a Liqo cluster ID (``None``: not one of this test bed)."""
        return next((c for c in self.tb.clusters() if self.cluster_id(c) == cluster_id), None)

    # --- running liqoctl ---------------------------------------------------------------------

    def kubeconfig(self, cluster: str) -> Path:
        """The cluster admin's kubeconfig for liqoctl (API server at its lab address), written once."""
        c = self.tb.cluster(cluster)
        path = c.root.host_path("/var/lib/labkit") / "liqoctl.kubeconfig"
        if not path.exists():
            ca, crt, key = c.admin_files()
            text = pki.kubeconfig(c.server, ca.read_bytes(), pki.KeyPair(crt.read_bytes(), key.read_bytes()), "admin",
                                  cluster=cluster)
            path.write_text(text)
            path.chmod(0o600)
        return path

    def _env(self) -> dict[str, str]:
        """liqoctl's environment: Helm's caches and configuration in the test bed's state (removed by down())."""
        home = vmlib.STATE_ROOT / "liqoctl-home"
        home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
                "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"), "NO_COLOR": "1"}

    def run(self, cluster: str, args: Sequence[str], timeout: float, *, secrets: Sequence[str] = (),
            quiet_output: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``liqoctl <args>`` against ``cluster``; log it (``secrets`` shown as ``<token>``).

        ``quiet_output``: leave the output out of the log (it holds a token).

        Raises
        ------
        LiqoError
            When liqoctl fails or times out (``check``), naming the step, the cluster and its last lines.
        """
        argv = [str(self.programs.liqoctl), *args, "--kubeconfig", str(self.kubeconfig(cluster)), "--skip-confirm"]
        shown = " ".join("<token>" if a in secrets else a for a in ["liqoctl", *args])
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self._env(),
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = _text(exc.stdout) + _text(exc.stderr)
            proc = subprocess.CompletedProcess(argv, -1, out, "")
        took = time.monotonic() - start
        output = "(output not logged: it holds a token)\n" if quiet_output else _redact(proc.stdout + proc.stderr, secrets)
        log_path = self.tb.cluster(cluster).root.state_dir / "logs" / "liqoctl.log"
        with self._lock, log_path.open("a") as out:
            out.write(f"$ {shown}   # cluster {cluster}, exit {proc.returncode}, {took:.1f} s\n{output}\n")
        if check and proc.returncode != 0:
            tail = "\n".join(_redact(proc.stdout + proc.stderr, secrets).strip().splitlines()[-12:])
            what = "timed out" if proc.returncode == -1 else f"exited {proc.returncode}"
            raise LiqoError(f"`{shown}` on cluster {cluster} {what} after {took:.0f} s:\n{tail}\n(log: {log_path})")
        return proc

    # --- install ---------------------------------------------------------------------------

    def install_all(self, clusters: Iterable[str], timeout: float = 600.0) -> dict[str, float]:
        """``liqoctl install k3s`` on every cluster at once; seconds each took.

        Raises
        ------
        LiqoError
            When an install fails (Helm rolls it back), naming the cluster.
        """
        clusters = list(clusters)
        with ThreadPoolExecutor(max_workers=max(1, len(clusters))) as pool:
            took = list(pool.map(lambda c: self.install(c, timeout), clusters))
        return dict(zip(clusters, took))

    def install(self, cluster: str, timeout: float = 600.0) -> float:
        """``liqoctl install k3s`` on ``cluster`` (Helm waits until every Liqo pod is Ready); seconds taken."""
        c = self.tb.cluster(cluster)
        values = c.root.host_path("/var/lib/labkit") / "liqo-values.yaml"
        values.write_text(liqoctl.render_values(liqoctl.values(self.tuning, WIREGUARD, self.cluster_id(cluster))))
        from labkit.images import liqo as liqo_images
        sets = {**liqo_images.helm_overrides(self.version), "metricAgent.enable": "false"}
        args = liqoctl.install_args(cluster, self.version, self.labels.get(cluster, {}), c.spec.pod_cidr,
                                    c.spec.service_cidr, c.server, str(values), timeout,
                                    chart=str(self.programs.chart), reserved_subnets=[str(vmlib.LAB_NETWORK)],
                                    sets=sets)
        start = time.monotonic()
        self.run(cluster, args, timeout + 30)
        took = time.monotonic() - start
        with self._lock:
            self.installed[cluster] = took
        self.log(f"[liqo] {cluster}: Liqo {self.version} installed in {took:.1f} s")
        return took

    # --- peering ---------------------------------------------------------------------------

    def peer_info(self, provider: str) -> dict[str, str]:
        """The provider's peer command, parsed (auth URL, cluster ID, token); asked once per provider."""
        with self._lock:
            if provider in self._peer_info:
                return self._peer_info[provider]
        proc = self.run(provider, ["generate", "peer-command", "--only-command"], 60, quiet_output=True)
        try:
            info = liqoctl.parse_peer_command(proc.stdout)
        except liqoctl.PeerCommandError as err:
            raise LiqoError(f"cluster {provider}: {err}") from None
        with self._lock:
            self._peer_info[provider] = info
        return info

    def peer(self, consumer: str, provider: str, timeout: float = 180.0) -> Peering:
        """``liqoctl peer out-of-band`` from ``consumer`` to ``provider``; wait for the virtual node Ready.

        Raises
        ------
        LiqoError
            When liqoctl fails, or the virtual node is not Ready within ``timeout``.
        """
        if consumer == provider:
            raise TestbedError(f"a cluster cannot peer with itself ({consumer})")
        start = time.monotonic()
        steps: dict[str, float] = {}
        info = self.peer_info(provider)
        steps["peer command"] = round(time.monotonic() - start, 2)
        args = liqoctl.peer_args(provider, info["auth_url"], info["cluster_id"], info["token"], timeout)
        self.run(consumer, args, timeout + 30, secrets=[info["token"]])
        steps["liqoctl peer"] = round(time.monotonic() - start, 2)
        node = f"liqo-{provider}"
        self._wait_node_ready(consumer, node, start + timeout)
        steps["node ready"] = round(time.monotonic() - start, 2)
        peering = Peering(consumer, provider, node, round(time.monotonic() - start, 2), steps)
        with self._lock:
            self.peerings[(consumer, provider)] = peering
            self.tunnels.setdefault(frozenset((consumer, provider)), (consumer, provider))
        self.log(f"[liqo] {consumer} -> {provider}: {node} Ready in {peering.took_s:.1f} s {steps}")
        return peering

    def peer_all(self, pairs: Iterable[tuple[str, str]], timeout: float = 180.0) -> list[Peering]:
        """Peer every ``(consumer, provider)`` pair, :data:`PEER_WORKERS` at a time; return the peerings."""
        pairs = list(pairs)
        with ThreadPoolExecutor(max_workers=min(PEER_WORKERS, len(pairs) or 1)) as pool:
            return list(pool.map(lambda p: self.peer(p[0], p[1], timeout), pairs))

    def unpeer(self, consumer: str, provider: str, timeout: float = DOWN_STEP_S) -> None:
        """``liqoctl unpeer out-of-band`` from ``consumer`` towards ``provider`` (waits until unpeered)."""
        self.run(consumer, ["unpeer", "out-of-band", provider, "--timeout", liqoctl.go_duration(timeout)], timeout + 30)
        with self._lock:
            self.peerings.pop((consumer, provider), None)
            if not any(frozenset(p) == frozenset((consumer, provider)) for p in self.peerings):
                self.tunnels.pop(frozenset((consumer, provider)), None)

    def _wait_node_ready(self, cluster: str, node: str, deadline: float) -> None:
        wait_node_ready(self.tb.kube(cluster), node, deadline, lambda: LiqoError(
            f"virtual node {node} not Ready in cluster {cluster} (liqoctl peer returned); see "
            "`kubectl get foreignclusters,tunnelendpoints -A` and the liqo pods' logs"))

    # --- offloading ------------------------------------------------------------------------

    def offload(self, consumer: str, namespace: str, strategy: str, mapping: str,
                cluster_selector: Sequence[Mapping[str, Any]] = (), timeout: float = 120.0) -> None:
        """``liqoctl offload namespace`` (the namespace is created first when missing)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        try:
            client.CoreV1Api(self.tb.kube(consumer)).create_namespace({"metadata": {"name": namespace}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        args = liqoctl.offload_args(namespace, mapping, strategy, liqoctl_selectors(list(cluster_selector)), timeout)
        self.run(consumer, args, timeout + 30)
        with self._lock:
            self.offloaded.append((consumer, namespace))

    # --- teardown --------------------------------------------------------------------------

    def down(self) -> dict[str, float]:
        """Unoffload, unpeer and uninstall with liqoctl, each step bounded; seconds each step took.

        Never raises: a step that fails or overruns is logged, and the test bed then removes
        every process and namespace anyway.
        """
        took: dict[str, float] = {}
        start = time.monotonic()

        def parallel(items: list[Any], action: Callable[[Any], object]) -> None:
            if items:
                with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
                    list(pool.map(lambda item: self._quietly(lambda: action(item)), items))

        parallel(list(self.offloaded), lambda off: self.run(off[0], ["unoffload", "namespace", off[1], "--timeout",
                                                                     liqoctl.go_duration(DOWN_STEP_S)],
                                                            DOWN_STEP_S + 15))
        self.offloaded.clear()
        took["unoffload"] = round(time.monotonic() - start, 1)
        parallel(list(self.peerings), lambda pair: self.unpeer(pair[0], pair[1]))
        took["unpeer"] = round(time.monotonic() - start, 1)
        parallel(list(self.installed), lambda c: self.run(c, ["uninstall", "--purge", "--timeout",
                                                               liqoctl.go_duration(DOWN_STEP_S)], DOWN_STEP_S + 15))
        self.installed.clear()
        took["uninstall"] = round(time.monotonic() - start, 1)
        self.log(f"[liqo] unoffloaded, unpeered and uninstalled in {took['uninstall']:.1f} s {took}")
        return took

    def discard(self) -> None:
        """Forget the peering of clusters about to be deleted: Liqo lives only in them, nothing to undo."""
        self.log(f"[liqo] {len(self.peerings)} peerings deleted with the clusters (no liqoctl teardown)")
        self.peerings.clear()
        self.tunnels.clear()
        self.offloaded.clear()
        self.installed.clear()

    def _quietly(self, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:  # teardown goes on; the test bed removes the rest
            self.log(f"[liqo] down: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}")


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<token>")
    return text
