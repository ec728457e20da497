"""Embedded testbed: real Kubernetes v1.24.17 clusters in network-namespace VMs on one machine.

:class:`EmbeddedTestbed` implements :class:`labkit.testbed.base.Testbed`. See
``docs/embedded.md`` for what is real, the versions, and the measured numbers.

Example
-------
>>> env = EmbeddedEnv(clusters=(ClusterSpec("c1", (VmSpec("c1-a"), VmSpec("c1-b"))),))
>>> tb = EmbeddedTestbed()
>>> try:
...     tb.up(env)
...     nodes = kubernetes.client.CoreV1Api(tb.kube("c1")).list_node()
... finally:
...     tb.down()
"""

from __future__ import annotations

import atexit
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from labkit import timescale
from labkit.machine import require_embedded, require_root
from labkit.paths import cache_dir
from labkit.setup_steps import Step
from labkit.testbed.base import CommandResult, MachineBusy, PingResult, TestbedError, ping_with
from labkit.testbed.embedded import binaries
from labkit.images.liqo import source as liqo_source
from labkit.testbed.embedded import vm as vmlib
from labkit.testbed.embedded.binaries import Binaries, find_binaries
from labkit.testbed.embedded.cluster import RESTARTED, Cluster, ImageSource, Node, NodeStore
from labkit.config import Env
from labkit.testbed.embedded.spec import ClusterSpec, EmbeddedEnv, OffloadSpec, Tuning, VmSpec, from_env, from_plan
from labkit.testbed.embedded.supervisor import Supervisor

if TYPE_CHECKING:
    from labkit.testbed.embedded.liqo import LiqoCtl, LookAlike
    from labkit.images.liqo.source import LiqoPrograms
    from labkit.topology import Plan

__all__ = ["APT_PACKAGES", "ClusterSpec", "EmbeddedEnv", "EmbeddedHost", "EmbeddedTestbed", "LabkitImages",
           "MachineLock", "OffloadSpec", "Tuning", "VmSpec", "leftovers", "setup_steps", "sweep"]

Log = Callable[[str], None]
leftovers = vmlib.leftovers
sweep = vmlib.sweep

#: Debian packages of this backend, with the reason for each.
APT_PACKAGES = {**binaries.APT_PACKAGES, **liqo_source.APT_PACKAGES}


def setup_steps() -> list[Step]:
    """Setup steps of this backend besides its Debian packages: Kubernetes, CoreDNS, the look-alike's
    virtual kubelet, Liqo (its source, then its programs built from it)."""
    from labkit.testbed.embedded.liqo.build import vk_step

    return [*binaries.setup_steps(include_apt=False), vk_step(), liqo_source.setup_step()]


#: One embedded testbed per machine (names, the lab bridge and /var/lib/lkt are shared): this lock says whose it is.
LOCK_FILE = Path("/run/labkit-embedded.lock")
#: Seconds ``up()`` waits for another testbed to finish before giving up (default 0: fail at once).
WAIT_ENV = "LABKIT_EMBEDDED_WAIT"


class MachineLock:
    """An exclusive ``flock`` on :data:`LOCK_FILE`; the kernel drops it when its holder exits."""

    def __init__(self, path: Path = LOCK_FILE) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait_s: float, log: Log) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds for its holder.

        Raises
        ------
        TestbedError
            When another process holds it longer (the message names that process).
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline, told = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder_text()
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise MachineBusy(f"another embedded testbed is running on this machine ({holder}); "
                                       f"stop it (`invoke down`) or wait: set {WAIT_ENV}=<seconds>") from None
                if not told:
                    log(f"[embedded] waiting up to {wait_s:.0f} s for the testbed of {holder}")
                    told = True
                time.sleep(2.0)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode())
        self._fd = fd

    def _holder_text(self) -> str:
        """What the holder wrote into the lock file (its pid and command line)."""
        return self.path.read_text().strip() or "unknown process"

    def holder(self) -> str | None:
        """Who holds the lock now (``None``: nobody, an embedded testbed may be started)."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            return self._holder_text()
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def wait_seconds() -> float:
    """How long ``up()`` waits for the machine lock (:data:`WAIT_ENV`, default 0)."""
    raw = os.environ.get(WAIT_ENV, "0")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise TestbedError(f"{WAIT_ENV}={raw!r}: expected a number of seconds") from None


class LabkitImages:
    """:class:`~.cluster.ImageSource` backed by :mod:`labkit.images` (pause image, ``ctr`` import)."""

    def pause(self) -> tuple[Path, str]:
        """Build (or reuse) the pause image archive; return it with its reference."""
        from labkit import images
        return images.build("pause"), images.image_ref("pause")

    def import_archive(self, archive: Path, socket: Path) -> None:
        """Import ``archive`` into the containerd at ``socket`` (namespace ``k8s.io``)."""
        from labkit import images
        images.import_archive(archive, socket)

    def node_store(self) -> NodeStore | None:
        """The node image store of the current archives when ``invoke setup`` built it (never builds)."""
        from labkit.images import store
        return store.cached()


class _ResolvedImages:
    """Resolves the pause image and the node image store once (clusters start in parallel threads)."""

    def __init__(self, images: ImageSource, log: Log) -> None:
        self._images = images
        self._pause = images.pause()
        self._store = images.node_store()
        if self._store is None:
            log("[embedded] no node image store for the current images (`invoke setup` builds it): "
                "each node unpacks the images it is given")

    def pause(self) -> tuple[Path, str]:
        return self._pause

    def import_archive(self, archive: Path, socket: Path) -> None:
        self._images.import_archive(archive, socket)

    def node_store(self) -> NodeStore | None:
        return self._store


class EmbeddedHost:
    """A network-namespace VM as a :class:`labkit.testbed.base.Host`."""

    def __init__(self, vm: vmlib.Vm, pod_network: Callable[[], None]) -> None:
        self._vm = vm
        self._pod_network = pod_network
        self.name = vm.name
        self.address = vm.address

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> CommandResult:
        """Run ``argv`` inside the VM (its network and mount namespaces, its cgroup)."""
        name = self.name
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              preexec_fn=lambda: vmlib.enter(name))
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def ping(self, target: str, count: int = 1, interval: float = 0.2, timeout: float = 5.0) -> PingResult:
        """Ping ``target`` from the VM with ``ping -n``."""
        return ping_with(self.run, target, count, interval, timeout)

    def iface_down(self) -> None:
        """Unplug the VM from the lab network (its eth0 loses carrier)."""
        vmlib.set_link(self._vm, up=False)

    def iface_up(self) -> None:
        """Plug the VM back in and make sure its part of the pod network (flannel's entries) is there."""
        vmlib.set_link(self._vm, up=True)
        self._pod_network()


class EmbeddedTestbed:
    """Real Kubernetes v1.24.17 clusters on network-namespace VMs (needs root).

    Parameters
    ----------
    images
        Source of the pause image and archive import (default: :class:`LabkitImages`).
    binaries
        Programs to run (default: :func:`~.binaries.find_binaries`).
    log
        Where progress lines go.
    liqo
        The Liqo to peer with (default: :func:`labkit.images.liqo.source.find` of the env's version).
    liqo_teardown
        ``down()`` first undoes Liqo with liqoctl (unoffload, unpeer, uninstall: a minute for
        the thesis' bed on 2 cores). ``False`` deletes the clusters with Liqo still in them:
        everything Liqo made lives in their API servers, pods and VM namespaces, which go
        with them, and ``down()`` still checks that nothing is left. The pipeline's shared test
        bed does that (:mod:`.server`); a test of Liqo's own teardown keeps the default.
    """

    def __init__(self, images: ImageSource | None = None, binaries: Binaries | None = None,
                 log: Log = print, liqo: LiqoPrograms | None = None, liqo_teardown: bool = True) -> None:
        self._images = images or LabkitImages()
        self._binaries = binaries
        self._liqo_programs_given = liqo
        self.liqo_teardown = liqo_teardown
        self._log = log
        self._clusters: dict[str, Cluster] = {}
        self._vms: dict[str, vmlib.Vm] = {}
        self._sup: Supervisor | None = None
        self._apis: dict[str, object] = {}
        self.timings: dict[str, float] = {}
        #: Where the VMs' state lives: ``"image"`` (their own file system) or ``"host"`` (:mod:`.disk`).
        self.vm_disk: str | None = None
        self._atexit = False
        self._lock = MachineLock()
        self._attached = False
        self._torn_down = False  # down() completed and nothing was brought up since
        #: The peering: Liqo driven with liqoctl, or the kit's look-alike (``None`` until ``up()`` peers something).
        self.liqo: LiqoCtl | LookAlike | None = None
        #: Which peering ``up()`` runs (or an attached view's holder ran): :func:`labkit.testbed.liqoctl.peering_label`.
        self.peering: str = ""
        #: The topology plan when ``up()`` was given an env file's model.
        self.plan: Plan | None = None

    #: The test bed lives in this process (its supervisor is a child subreaper): it ends with it.
    outlives_process = False

    # --- Testbed protocol ----------------------------------------------------------------------

    def up(self, env: Env | EmbeddedEnv, timeout: float | None = None) -> None:
        """Create the VMs, start every cluster in parallel, wait until every node is Ready.

        ``env`` is an env file's model (converted with :func:`~.spec.from_env`: the
        topology's CIDRs, labels, peerings and offloads) or a hand-made
        :class:`~.spec.EmbeddedEnv`. Then peers the env's pairs and offloads its namespaces.
        Only one embedded testbed runs per machine: ``up()`` waits ``$LABKIT_EMBEDDED_WAIT``
        seconds (default 0) for another one to finish. ``timeout`` bounds the wait for every
        node Ready (default: 120 s + 12 s per VM), times ``$LABKIT_TIME_SCALE`` (:mod:`labkit.timescale`).
        A driver brought down may be brought up again.

        Raises
        ------
        labkit.machine.PrivilegeError
            When not root, or the host lacks what the test bed needs (:func:`labkit.machine.require_embedded`).
        TestbedError
            When another testbed holds the machine, or a component does not start (the
            message names it and its log).
        """
        require_embedded("bringing up the embedded testbed")
        if isinstance(env, Env):
            from labkit.topology import plan
            self.plan = plan(env)
            env = from_plan(self.plan)
        binaries = self._binaries or find_binaries()
        liqo_programs = self._liqo_programs(env)  # before anything starts: a missing Liqo fails at once
        if timeout is None:  # 2 cores start ~1 VM every 8-10 s once a few clusters compete
            timeout = 120.0 + 12.0 * sum(len(c.vms) for c in env.clusters)
        timeout = timescale.scaled(timeout)
        self.timings.clear()
        self._torn_down = False
        self._lock.acquire(wait_seconds(), self._log)
        if not self._atexit:
            atexit.register(self._down_at_exit)
            self._atexit = True
        try:
            self._up(env, binaries, timeout)
            self._peer(env, liqo_programs)
        except BaseException:
            self._log("[embedded] up() failed: tearing down what was started")
            self._quietly(self._keep_logs)
            self._quietly(self.down)
            raise

    def _up(self, env: EmbeddedEnv, binaries: Binaries, timeout: float) -> None:
        start = time.monotonic()
        vmlib.sweep()  # leftovers of a crashed run would collide with our names
        vmlib.ensure_host_limits(log=self._log)
        self.vm_disk = vmlib.ensure_disk(self._log)  # before anything writes to the VMs' state
        self._sup = Supervisor(vmlib.STATE_ROOT / "supervisor.log")
        self._model(env, binaries, _ResolvedImages(self._images, self._log), self._sup, create=True)
        self.timings["vms_s"] = time.monotonic() - start
        self._log(f"[embedded] {len(self._vms)} VMs in {self.timings['vms_s']:.1f} s")
        with ThreadPoolExecutor(max_workers=len(self._clusters)) as pool:
            for future in [pool.submit(c.start, timeout) for c in self._clusters.values()]:
                future.result()
        self.timings["processes_s"] = time.monotonic() - start
        self._wait_ready(start + timeout)
        self.timings["ready_s"] = time.monotonic() - start
        self._log(f"[embedded] {len(self._vms)} nodes Ready in {self.timings['ready_s']:.1f} s")
        if env.dns:
            self._deploy_dns(binaries)

    def _model(self, env: EmbeddedEnv, binaries: Binaries, images: ImageSource, sup: Supervisor | None,
               create: bool) -> None:
        """Fill ``_vms`` and ``_clusters`` from ``env`` (VM indices in env order); ``create``: make the VMs."""
        index = 0
        for spec in env.clusters:
            nodes = []
            subnets = spec.pod_subnets()
            for vm_spec in spec.vms:
                vm = vmlib.Vm(vm_spec.name, index)
                index += 1
                if create:
                    vmlib.create(vm)
                self._vms[vm.name] = vm
                nodes.append(Node(vm, dict(vm_spec.labels), subnets[vm.name]))
            self._clusters[spec.name] = Cluster(spec, nodes, env.tuning, binaries, images, sup, self._log)

    @classmethod
    def attach(cls, env: Env | EmbeddedEnv, timings: dict[str, float] | None = None,
               log: Log = print) -> EmbeddedTestbed:
        """A view of the running test bed of ``env`` that another process brought up and holds.

        The view reaches the clusters (``kube``), VMs (``host``, faults) and containerds
        (``load_image``) as the holder does, but owns no process: its ``down()`` leaves the
        test bed to the holder, and ``liqo`` is ``None`` (the peering is the holder's). Used by
        :mod:`.server`, which checks first that the holder runs exactly this ``env``.
        """
        require_root("attaching to the embedded testbed")
        view = cls(log=log)
        if isinstance(env, Env):
            from labkit.topology import plan
            view.plan = plan(env)
            env = from_plan(view.plan)
        view._model(env, view._binaries or find_binaries(), view._images, None, create=False)
        if env.peerings:
            from labkit.testbed.liqoctl import peering_label
            view.peering = peering_label(env.peering, env.liqo_version)
        view._attached = True
        view.timings.update(timings or {})
        return view

    def _liqo_programs(self, env: EmbeddedEnv) -> LiqoPrograms | None:
        """The built Liqo when ``env`` peers with it (raises when it is not built), else ``None``."""
        if not env.peerings or env.peering != "liqo":
            return None
        if self._liqo_programs_given is not None:
            return self._liqo_programs_given
        from labkit.images.liqo import source
        return source.find(env.liqo_version)

    def _peer(self, env: EmbeddedEnv, liqo_programs: LiqoPrograms | None = None) -> None:
        """Peer ``env.peerings`` and offload ``env.offloads``: with Liqo's liqoctl, or the kit's look-alike."""
        from labkit.testbed.liqoctl import peering_label
        self.peering = peering_label(env.peering, env.liqo_version)
        if not env.peerings:
            return
        start = time.monotonic()
        if env.peering == "liqo":
            self._peer_liqo(env, liqo_programs)
        else:
            self._peer_look_alike(env)
        self.timings["offloading_s"] = time.monotonic() - start - self.timings["peering_s"]
        self._log(f"[embedded] {len(env.peerings)} peerings ({self.peering}) in {self.timings['peering_s']:.1f} s, "
                  f"{len(env.offloads)} namespaces offloaded")

    def _peer_liqo(self, env: EmbeddedEnv, programs: LiqoPrograms) -> None:
        """``liqoctl install`` every peered cluster, ``peer out-of-band`` every pair, ``offload`` every namespace."""
        from labkit.testbed.embedded.liqo import LiqoCtl, liqo_images

        start = time.monotonic()
        clusters = sorted({c for pair in env.peerings for c in pair} | {o.consumer for o in env.offloads})
        archives = liqo_images(self._log)
        with ThreadPoolExecutor(max_workers=len(clusters)) as pool:  # a no-op where the node image store has them
            list(pool.map(lambda c: [self._clusters[c].import_image(a) for a in archives], clusters))
        self.liqo = liqo = LiqoCtl(self, programs, env.cluster_labels, env.tuning.liqo, log=self._log)
        liqo.install_all(clusters, timeout=300.0 + 20.0 * len(clusters))  # 2 cores install ~3 at once in 50 s
        self.timings["liqo_install_s"] = time.monotonic() - start
        liqo.peer_all(env.peerings, timeout=180.0 + 6.0 * len(env.clusters))
        self.timings["peering_s"] = time.monotonic() - start
        for off in env.offloads:
            liqo.offload(off.consumer, off.namespace, off.strategy, off.mapping, off.cluster_selector)

    def _peer_look_alike(self, env: EmbeddedEnv) -> None:
        """The kit's Liqo look-alike (:class:`.liqo.LookAlike`): the fallback without Liqo's source."""
        from labkit.testbed.embedded.liqo import LookAlike, offload
        from labkit.testbed.embedded.liqo.peering import timers

        start = time.monotonic()
        vk_timers, gw_timers = timers(env.tuning.liqo)
        self.liqo = LookAlike(self, cluster_labels=env.cluster_labels, vk_timers=vk_timers, gateway_timers=gw_timers,
                              log=self._log)
        # a virtual node is Ready 5-15 s after its peering starts alone, up to 180 s among 20 clusters on 2 cores
        self.liqo.peer_all(env.peerings, timeout=120.0 + 12.0 * len(env.clusters))
        self.timings["peering_s"] = time.monotonic() - start
        for off in env.offloads:
            providers = {p: env.cluster_labels.get(p, {}) for c, p in env.peerings if c == off.consumer}
            offload(self, off.consumer, off.namespace, providers, strategy=off.strategy, mapping=off.mapping,
                    cluster_selector=[dict(t) for t in off.cluster_selector])

    def down(self) -> None:
        """Stop everything and remove every trace (also of a crashed or killed run).

        Order: stop the kubelets and kube-proxies (no restarts), kill the pods' tasks through containerd,
        SIGKILL what is left in each VM's cgroup tree while the supervisor (a subreaper)
        reaps, stop the supervisor, then remove mount namespaces, netns, links, cgroups and
        state; finally sweep everything named ``lkt-*``.

        A testbed object that does not hold the machine lock (its ``up()`` failed waiting for
        it, or it never ran) touches nothing while another process holds the lock: that
        process's testbed is not ours to remove. With the lock free it cleans up after a
        crashed run.
        """
        require_root("tearing down the embedded testbed")
        if self._torn_down:  # nothing of ours left since the last down(): another's test bed may run now
            return
        if self._attached:  # a view of another process's test bed (attach()): forget it, touch nothing
            self._close_apis()
            self._vms.clear()
            self._clusters.clear()
            return
        if not self._lock.held:
            holder = self._lock.holder()
            if holder is not None:
                self._log(f"[embedded] down: the machine's testbed belongs to {holder}; leaving it alone")
                return
            self._lock.acquire(0, self._log)
        start = time.monotonic()
        steps: dict[str, object] = {}

        def mark(step: str) -> None:
            steps[step] = round(time.monotonic() - start, 1)

        if self.liqo is not None:
            self._quietly(self._down_peering)
            mark("peering")

        if self._sup is not None:
            for cluster in self._clusters.values():
                for node in cluster.nodes:
                    for daemon in RESTARTED:  # killed for good: the supervisor must not start them again
                        self._quietly(lambda n=node, d=daemon: self._sup.request(op="signal", name=f"{n.vm.name}/{d}",
                                                                                 restart=False))
            mark("kubelets")
            with ThreadPoolExecutor(max_workers=max(1, len(self._clusters))) as pool:
                list(pool.map(lambda c: self._quietly(c.kill_pods), self._clusters.values()))
            mark("pods")
        for name in list(self._vms):
            self._quietly(lambda n=name: vmlib.kill_cgroup(vmlib.cgroup_name(n)))
        mark("cgroups killed")
        if self._sup is not None:
            self._sup.close()
            self._sup = None
        mark("supervisor")
        # in parallel: deleting unpacked image layers dominates on a disk mounted with `discard`
        with ThreadPoolExecutor(max_workers=max(1, len(self._vms))) as pool:
            list(pool.map(lambda v: self._quietly(lambda: steps.update({v.name: vmlib.destroy(v.name, v.index)})),
                          self._vms.values()))
        mark("VMs removed")
        self._vms.clear()
        self._clusters.clear()
        self._close_apis()
        vmlib.sweep()
        mark("swept")
        self.timings["down_s"] = time.monotonic() - start
        self._log(f"[embedded] down in {self.timings['down_s']:.1f} s ({steps})")
        rest = vmlib.leftovers()
        self._lock.release()
        if not rest.empty():
            raise TestbedError(f"down() left {rest}")
        self._torn_down = True

    def _down_peering(self) -> None:
        """Undo the peering before the clusters go (``down()``), or only what outlives them (``discard()``)."""
        liqo, self.liqo = self.liqo, None
        if liqo is not None:
            liqo.down() if self.liqo_teardown else liqo.discard()

    def _keep_logs(self) -> None:
        """Keep the VMs' logs of a failed start (``down()`` deletes them) and say where."""
        kept = vmlib.keep_logs(cache_dir() / "failed-starts")
        if kept:
            self._log(f"[embedded] the VMs' logs of this failed start: {kept}")

    def _quietly(self, action: Callable[[], object]) -> None:
        """Run a teardown action; log and continue when it fails (down() must complete)."""
        try:
            action()
        except Exception as exc:
            self._log(f"[embedded] down: {type(exc).__name__}: {exc}")

    def _close_apis(self) -> None:
        for api in self._apis.values():
            self._quietly(api.close)  # type: ignore[attr-defined]
        self._apis.clear()

    def _down_at_exit(self) -> None:
        if self._vms or self._sup is not None:
            self.down()

    def kube(self, cluster: str):  # noqa: ANN201 (kubernetes.client.ApiClient)
        """A ``kubernetes.client.ApiClient`` authenticated as the cluster's admin."""
        if cluster not in self._clusters:
            raise TestbedError(f"no cluster {cluster!r}; clusters: {sorted(self._clusters)}")
        if cluster not in self._apis:
            from kubernetes import client

            from labkit.testbed.kubeapi import api_client
            ca, crt, key = self._clusters[cluster].admin_files()
            conf = client.Configuration()
            conf.host = self._clusters[cluster].server
            conf.ssl_ca_cert, conf.cert_file, conf.key_file = str(ca), str(crt), str(key)
            self._apis[cluster] = api_client(conf)
        return self._apis[cluster]

    def host(self, vm: str) -> EmbeddedHost:
        """The VM ``vm`` as a :class:`~labkit.testbed.base.Host`."""
        if vm not in self._vms:
            raise TestbedError(f"no VM {vm!r}; VMs: {sorted(self._vms)}")
        cluster = next(c for c in self._clusters.values() if any(n.vm.name == vm for n in c.nodes))
        return EmbeddedHost(self._vms[vm], lambda: cluster.program_pod_network(vm))

    def clusters(self) -> list[str]:
        """Names of the clusters that are up."""
        return list(self._clusters)

    def load_image(self, cluster: str, name: str) -> str:
        """Build (or reuse) image ``name`` and import it into every node of ``cluster``."""
        from labkit import images

        if cluster not in self._clusters:
            raise TestbedError(f"no cluster {cluster!r}; clusters: {sorted(self._clusters)}")
        self._clusters[cluster].import_image(images.build(name, self._log))
        return images.image_ref(name)

    def describe(self, env: Env) -> str:
        """What ``up(env)`` would build: the clusters, their VMs (network namespaces), CIDRs and labels."""
        spec = from_env(env)
        lines = [f"embedded test bed {env.name}: {len(spec.clusters)} clusters (Kubernetes v1.24.17)"]
        for cl in spec.clusters:
            lines.append(f"  cluster {cl.name}: pods {cl.pod_cidr}, services {cl.service_cidr}")
            lines += [f"    VM {vm.name} (network namespace lkt-vm-{vm.name}): labels {vm.labels}" for vm in cl.vms]
        lines += [f"  peering {consumer} -> {provider}" for consumer, provider in spec.peerings]
        return "\n".join(lines)

    def sweep(self, env: Env | None = None, force: bool = False) -> str:
        """Remove every leftover of the kit on this machine (also of a crashed run); say what was removed.

        Raises
        ------
        TestbedError
            Unless ``force``, when a running process holds the test bed (the message names it).
        """
        require_root("removing the embedded test bed")
        holder = self._lock.holder()
        if holder and not force:
            raise TestbedError(f"the embedded test bed of {holder} is running; stop that process (it tears down) "
                               "or sweep with force (`invoke down --force`)")
        return str(sweep())

    def processes(self) -> set[int]:
        """Every process of the test bed on this machine: the VMs' cgroup trees."""
        return set().union(*(vmlib.cgroup_pids(vmlib.cgroup_name(vm)) for vm in self._vms))

    def cluster(self, name: str) -> Cluster:
        """The running :class:`~.cluster.Cluster` (for tests and diagnostics)."""
        return self._clusters[name]

    # --- helpers -------------------------------------------------------------------------------

    def _wait_ready(self, deadline: float) -> None:
        from kubernetes import client
        pending = {name: {n.vm.name for n in c.nodes} for name, c in self._clusters.items()}
        while pending:
            for name in list(pending):
                try:
                    nodes = client.CoreV1Api(self.kube(name)).list_node().items
                except Exception:  # apiserver busy
                    continue
                ready = {n.metadata.name for n in nodes
                         if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])}
                pending[name] -= ready
                if not pending[name]:
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise TestbedError(f"nodes not Ready in time: {pending}; see {vmlib.STATE_ROOT}/<vm>/logs/kubelet.log")
            time.sleep(0.5)

    def _deploy_dns(self, binaries: Binaries) -> None:
        from labkit.testbed.embedded.addons import coredns_archive, deploy_coredns
        archive = coredns_archive(binaries.coredns)
        for name, cluster in self._clusters.items():
            cluster.import_image(archive)
            deploy_coredns(self.kube(name), cluster.spec.service_ip(10))
