"""VMs testbed: the thesis' system on real Ubuntu VMs over SSH (k3s + Liqo + Percona XtraDB).

:class:`VmsTestbed` implements :class:`labkit.testbed.base.Testbed` for envs with
``backend: kind: vms`` (``envs/crownlabs.yaml``): an inventory of VMs, one per node, reached
over SSH with asyncssh. ``up(env)`` builds the runbook (:mod:`.runbook`) from the env and
its topology plan and runs it (:mod:`.execute`): k3s with the Table 7.1 timers, Liqo with the
plan's peerings and offloads, the labkit images, the Percona operator. ``dry_run(env)`` prints
the same plan without any VM. See ``docs/vms.md``.

Example
-------
>>> env = load_env("crownlabs")
>>> print(dry_run(env))                       # every command, per host, in order
>>> tb = VmsTestbed()
>>> try:
...     tb.up(env)
...     nodes = kubernetes.client.CoreV1Api(tb.kube("root")).list_node()
... finally:
...     tb.down()
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labkit import paths
from labkit.config import Env
from labkit.setup_steps import Step
from labkit.testbed.base import CommandResult, PingResult, TestbedError, ping_with
from labkit.testbed.vms import k3s
from labkit.testbed.vms.commands import Runbook, Put, as_root, render
from labkit.testbed.vms.execute import Executor
from labkit.testbed.vms.options import VmsOptions
from labkit.testbed.vms.runbook import Inventory, down_runbook, inventory, topology_plan, up_runbook
from labkit.testbed.vms.ssh import HostLog, LoopThread, SshHost, SshPool, SshTarget
from labkit.waiting import wait_until

__all__ = ["APT_PACKAGES", "SshTransport", "VmsHost", "VmsOptions", "VmsTestbed", "dry_run", "setup_steps"]

Log = Callable[[str], None]

#: Debian packages of the control machine for this backend, with the reason for each.
APT_PACKAGES: dict[str, str] = {
    "openssh-server": "a real sshd for the VMs backend's SSH tests (run in a kit network namespace)",
}


def setup_steps() -> list[Step]:
    """Setup steps of this backend besides its Debian packages (:data:`APT_PACKAGES`): none."""
    return []


def dry_run(env: Env, options: VmsOptions | None = None, down: bool = False) -> str:
    """Every command ``up`` (or ``down``) would run on each VM, in order, without connecting."""
    topo = topology_plan(env)
    plan = down_runbook(env, topo, options) if down else up_runbook(env, topo, options)
    inv = inventory(env)
    head = (f"# labkit vms {'down' if down else 'up'} --dry-run: env {env.name}, {len(inv.hosts)} VM(s) as "
            f"{inv.user}; stages run in order, hosts in parallel inside a stage\n")
    return head + render(plan, {n: h.address for n, h in inv.hosts.items()})


class SshTransport:
    """The executor's :class:`~.execute.Transport` over an :class:`~.ssh.SshPool`."""

    def __init__(self, pool: SshPool) -> None:
        self.pool = pool

    async def run(self, host: str, argv: list[str], timeout: float, secret: bool) -> CommandResult:
        """Run ``argv`` on ``host``."""
        return await self.pool[host].run(argv, timeout=timeout, secret=secret)

    async def put(self, host: str, command: Put) -> None:
        """Copy the file of ``command`` to ``host``."""
        await self.pool[host].put(command.remote, content=command.content, local=command.local, mode=command.mode,
                                  timeout=command.timeout)

    def log_path(self, host: str) -> Path | None:
        """The host's log file."""
        return self.pool[host].log.path


class VmsHost:
    """A VM as a :class:`labkit.testbed.base.Host`; commands run as root (``sudo -n`` unless root).

    A link fault (:meth:`iface_down`) first starts a detached timer on the VM that brings the
    interface back after ``bring_up_after_s`` seconds, so the VM is never lost, even when SSH
    itself goes over that interface.
    """

    def __init__(self, ssh: SshHost, loop: LoopThread, user: str, interface: str, bring_up_after_s: float) -> None:
        self._ssh = ssh
        self._loop = loop
        self._user = user
        self.name = ssh.target.name
        self.address = ssh.target.address
        self.interface = interface
        self.bring_up_after_s = bring_up_after_s
        self._timer_pid: str | None = None
        self._down_at: float | None = None

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> CommandResult:
        """Run ``argv`` on the VM as root and wait for it."""
        return self._loop.call(self._ssh.run([str(a) for a in as_root(self._user, *argv)], timeout=timeout))

    def ping(self, target: str, count: int = 1, interval: float = 0.2, timeout: float = 5.0) -> PingResult:
        """Ping ``target`` from the VM (``ping -n``; intervals below 0.2 s need root, which we have)."""
        return ping_with(self.run, target, count, interval, timeout)

    def iface_down(self) -> None:
        """Start the bring-up timer, then take the lab interface down (both detached on the VM).

        Raises
        ------
        TestbedError
            When the timer could not be started (the link is then left up).
        """
        timer = self.run(["sh", "-c", detached(f"sleep {self.bring_up_after_s:g}; ip link set dev "
                                               f"{shlex.quote(self.interface)} up", echo_pid=True)])
        pid = timer.stdout.strip()
        if not timer.ok or not pid.isdigit():
            raise TestbedError(f"{self.name}: could not start the bring-up timer, link left up: {timer.stderr.strip()}")
        self._timer_pid = pid
        down = self.run(["sh", "-c", detached(f"sleep 0.2; ip link set dev {shlex.quote(self.interface)} down")])
        if not down.ok:
            raise TestbedError(f"{self.name}: could not take {self.interface} down: {down.stderr.strip()}")
        self._down_at = time.monotonic()
        time.sleep(0.3)  # the detached command has run

    def iface_up(self) -> None:
        """Bring the interface back: directly when the VM is reachable, else by waiting for the timer.

        Raises
        ------
        TestbedError
            When the VM is still unreachable after the timer's deadline (plus a margin).
        """
        self._loop.call(self._ssh.close())
        direct = self._loop.call(self._try_up(connect_timeout=3.0))
        if not direct:
            left = (self._down_at or time.monotonic()) + self.bring_up_after_s + 30.0 - time.monotonic()
            wait_until(lambda: self._loop.call(self._try_up(connect_timeout=5.0)), timeout=max(0.0, left),
                       interval=1.0, error=TestbedError,
                       message=f"{self.name} ({self.address}) unreachable {self.bring_up_after_s:g} s after its link "
                               f"went down; see {self._ssh.log.path}")
        self._down_at = None

    async def _try_up(self, connect_timeout: float) -> bool:
        """One attempt: connect, set the link up, stop the timer. ``False`` when unreachable."""
        try:
            await self._ssh.reconnect(timeout=connect_timeout)
        except TestbedError:
            return False
        result = await self._ssh.run([str(a) for a in as_root(self._user, "ip", "link", "set", "dev", self.interface,
                                                               "up")], timeout=20)
        if result.ok and self._timer_pid:
            mark = f"ip link set dev {shlex.quote(self.interface)} up"
            pid = self._timer_pid  # a session leader (setsid): its group is the timer's shell and its sleep
            stop = f"grep -qF -- {shlex.quote(mark)} /proc/{pid}/cmdline 2>/dev/null && kill -- -{pid}"
            await self._ssh.run([str(a) for a in as_root(self._user, "sh", "-c", f"{stop}; true")], timeout=10)
            self._timer_pid = None
        return result.ok


def phase_timings(durations: dict[str, float]) -> dict[str, float]:
    """The embedded backend's ``timings`` keys from the runbook's stage durations.

    ``ready_s``: every stage up to ``k3s.ready``; ``peering_s``: ``liqo.peer*`` and
    ``liqo.virtual-nodes``; ``offloading_s``: ``liqo.offload``.
    """
    names = list(durations)
    ready = names[: names.index("k3s.ready") + 1] if "k3s.ready" in names else []
    return {"ready_s": sum(durations[n] for n in ready),
            "peering_s": sum(v for n, v in durations.items() if n.startswith("liqo.peer") or n == "liqo.virtual-nodes"),
            "offloading_s": durations.get("liqo.offload", 0.0)}


def detached(script: str, echo_pid: bool = False) -> str:
    """A shell line starting ``script`` in its own session, surviving the SSH session and the link."""
    line = f"nohup setsid sh -c {shlex.quote(script)} </dev/null >/dev/null 2>&1 &"
    return line + (" echo $!" if echo_pid else "")


class VmsTestbed:
    """The thesis' test bed on real VMs (see the module docstring).

    Parameters
    ----------
    options
        Backend settings (air-gap, images, Percona, SSH timeouts and retries).
    run_dir
        Where host logs, kubeconfigs and image digests go (``<run_dir>/vms/``); default
        ``data/<new run id>``.
    log
        Progress lines.
    known_hosts
        known_hosts file to verify the VMs with (``None``: no host key check).
    """

    def __init__(self, options: VmsOptions | None = None, run_dir: Path | None = None, log: Log = print,
                 known_hosts: Path | None = None) -> None:
        self.options = options or VmsOptions()
        self.run_dir = run_dir or paths.data_dir() / paths.new_run_id()
        self.log = log
        self.known_hosts = known_hosts
        self.image_digests: dict[str, str] = {}
        self._env: Env | None = None  # the env up() was called with (what down() tears down)
        self._connected: Env | None = None  # the env whose inventory the SSH pool serves
        self._loop: LoopThread | None = None
        self._pool: SshPool | None = None
        self._inv: Inventory | None = None
        self._kubeconfigs: dict[str, Path] = {}
        self._apis: dict[str, Any] = {}
        self._hosts: dict[str, VmsHost] = {}
        #: Seconds per phase of the last ``up()`` (``ready_s``, ``peering_s``, ``offloading_s``), as on embedded.
        self.timings: dict[str, float] = {}
        self._durations: dict[str, float] = {}

    @property
    def state_dir(self) -> Path:
        """``<run_dir>/vms``: host logs, kubeconfigs, image digests."""
        return self.run_dir / "vms"

    #: The VMs keep the test bed after this process ends (``invoke down`` uninstalls it).
    outlives_process = True

    # --- Testbed protocol ----------------------------------------------------------------------

    def up(self, env: Env) -> None:
        """Install and connect every cluster of ``env``; return when every check of the plan passed.

        Raises
        ------
        TestbedError
            Naming the stage, host, command and log of the first failure.
        """
        topo = topology_plan(env)
        self._connect(env)
        self._env = env
        archives = self._build_images()
        plan = up_runbook(env, topo, self.options, archives)
        start = time.monotonic()
        captures = self._run(plan)
        self.timings = phase_timings(self._durations)
        self._write_kubeconfigs(env, captures)
        vms = len(inventory(env).hosts)
        self.log(f"[vms] up: {len(env.clusters)} cluster(s) on {vms} VM(s) in {time.monotonic() - start:.0f} s; "
                 f"logs in {self.state_dir}")

    def down(self) -> None:
        """Tear down what ``up`` installed (safe twice; a no-op when ``up`` never ran)."""
        if self._env is not None:
            self.teardown(self._env)
        self._close()

    def teardown(self, env: Env) -> None:
        """Uninstall Liqo and k3s from every VM of ``env`` (also for a run this process did not start)."""
        self._connect(env)
        try:
            self._run(down_runbook(env, topology_plan(env), self.options), keep_going=True)
        finally:
            self._apis.clear()
            self._kubeconfigs.clear()
            self._env = None

    def kube(self, cluster: str) -> Any:
        """A ``kubernetes.client.ApiClient`` for ``cluster`` (from its rewritten kubeconfig)."""
        from labkit.testbed.kubeapi import api_client_from_kubeconfig

        if cluster not in self._kubeconfigs:
            raise TestbedError(f"no kubeconfig for cluster {cluster!r} (clusters up: {self.clusters()})")
        if cluster not in self._apis:
            self._apis[cluster] = api_client_from_kubeconfig(str(self._kubeconfigs[cluster]), context=cluster)
        return self._apis[cluster]

    def host(self, vm: str) -> VmsHost:
        """The VM playing node ``vm`` (the same object on every call, so a link fault's timer is remembered)."""
        if self._pool is None or self._inv is None or self._loop is None:
            raise TestbedError("the VMs testbed is not connected: call up(env) first")
        if vm not in self._inv.hosts:
            raise TestbedError(f"no VM {vm!r} (VMs: {sorted(self._inv.hosts)})")
        if vm not in self._hosts:
            self._hosts[vm] = VmsHost(self._pool[vm], self._loop, self._inv.user, self._inv.host(vm).interface,
                                      self.options.bring_up_after_s)
        return self._hosts[vm]

    def clusters(self) -> list[str]:
        """Clusters whose kubeconfig was fetched."""
        return list(self._kubeconfigs)

    def load_image(self, cluster: str, name: str) -> str:
        """The reference of image ``name``: ``up()`` imports every image of the options on every VM."""
        from labkit import images

        ref = images.image_ref(name)
        if ref not in self.image_digests:
            raise TestbedError(f"image {name!r} is not among the images up() imported ({sorted(self.image_digests)}); "
                               "add it to VmsOptions.images")
        return ref

    def describe(self, env: Env) -> str:
        """Every command ``up(env)`` would run on each VM, in order (:func:`dry_run`)."""
        return dry_run(env, self.options)

    def sweep(self, env: Env | None = None, force: bool = False) -> str:
        """Uninstall Liqo and k3s from every VM of ``env`` (also after a run this process did not start)."""
        if env is None:
            raise TestbedError("the VMs test bed needs the env whose VMs to clean up")
        self.teardown(env)
        return f"Liqo and k3s uninstalled from {len(inventory(env).hosts)} VM(s) of {env.name}"

    def processes(self) -> set[int]:
        """Never on this machine: the test bed's processes run on the lab VMs."""
        raise TestbedError("the VMs test bed's processes run on the lab VMs, not on this machine")

    # --- internals -----------------------------------------------------------------------------

    def _connect(self, env: Env) -> None:
        """Open the SSH pool for ``env``'s inventory (once)."""
        if self._pool is not None and self._connected is env:
            return
        self._close()
        inv = inventory(env)
        opts = self.options
        hosts = [SshHost(SshTarget(h.node, h.address, inv.user, inv.ssh_key, known_hosts=self.known_hosts),
                         HostLog(self.state_dir / f"{h.node}.log"), opts.connect_timeout_s, opts.retries,
                         opts.retry_delay_s) for h in inv.hosts.values()]
        self._loop = LoopThread()
        self._pool = SshPool(hosts, opts.parallel)
        self._inv = inv
        self._connected = env

    def _run(self, plan: Runbook, keep_going: bool = False) -> dict[str, dict[str, str]]:
        """Run ``plan`` on the pool."""
        assert self._pool is not None and self._loop is not None
        executor = Executor(SshTransport(self._pool), retry_delay=self.options.retry_delay_s, log=self.log,
                            keep_going=keep_going, durations=self._durations)
        return self._loop.call(executor.run_runbook(plan))

    def _build_images(self) -> dict[str, Path]:
        """Build (or reuse) every image archive; record their manifest digests."""
        from labkit import images
        from labkit.images import oci

        archives = {}
        for name in self.options.images:
            archive = images.build(name, self.log)
            manifest = oci.read_index(archive)["manifests"][0]  # type: ignore[index]
            self.image_digests[images.archive_ref(archive)] = str(manifest["digest"])
            archives[name] = archive
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "images.json").write_text(json.dumps(self.image_digests, indent=2, sort_keys=True) + "\n")
        return archives

    def _write_kubeconfigs(self, env: Env, captures: dict[str, dict[str, str]]) -> None:
        """Rewrite each fetched kubeconfig to the VM's address and save it (mode 0600)."""
        assert self._inv is not None
        directory = self.state_dir / "kubeconfig"
        directory.mkdir(parents=True, exist_ok=True)
        for cluster in env.clusters:
            server = self._inv.host(cluster.nodes[0].name)
            text = k3s.rewrite_kubeconfig(captures[f"kubeconfig:{cluster.name}"]["value"], cluster.name,
                                          server.address, self.options.api_port)
            path = directory / f"{cluster.name}.yaml"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            self._kubeconfigs[cluster.name] = path

    def _close(self) -> None:
        """Close SSH connections and stop the loop thread."""
        if self._pool is not None and self._loop is not None:
            try:
                self._loop.call(self._pool.close(), timeout=15)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        if self._loop is not None:
            self._loop.stop()
        self._pool = None
        self._loop = None
        self._connected = None
        self._hosts.clear()
