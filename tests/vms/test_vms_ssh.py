"""The SSH layer against a real OpenSSH server (Debian openssh-server) in a kit network namespace.

The fixture creates network namespace ``lkt-ssh<pid>`` joined to this host by a veth pair
(``lkt-sh<n>`` here, ``lkt-sv<n>`` inside, a /30 of 10.253.0.0/16), starts ``sshd`` inside it
with host and client keys generated for the test, and always removes everything (try/finally).
Traffic goes only to that namespace.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from labkit.testbed.vms import SshTransport, VmsHost
from labkit.testbed.vms.commands import STAGING, Runbook, Put, Run, Stage
from labkit.testbed.vms.execute import Executor
from labkit.testbed.vms.ssh import TIMEOUT_STATUS, HostLog, LoopThread, SshError, SshHost, SshPool, SshTarget

pytestmark = pytest.mark.embedded

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    """The test's "VM": a lab link (``vm_if``) and a management link (``mgmt_if``), sshd on both."""

    namespace: str
    host_if: str
    vm_if: str
    host_ip: str
    vm_ip: str
    mgmt_host_if: str
    mgmt_if: str
    mgmt_host_ip: str
    mgmt_ip: str
    key: Path
    logs: Path

    def target(self, name: str = "vm", port: int = 22, mgmt: bool = False) -> SshTarget:
        return SshTarget(name, self.mgmt_ip if mgmt else self.vm_ip, "root", self.key, port=port)

    def host(self, name: str = "vm", retries: int = 1, connect_timeout: float = 5.0, mgmt: bool = False) -> SshHost:
        return SshHost(self.target(name, mgmt=mgmt), HostLog(self.logs / f"{name}.log"),
                       connect_timeout=connect_timeout, retries=retries, retry_delay=0.2)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _wait_port(address: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on {address}:{port} within {timeout} s")


def _write_keys(directory: Path) -> Path:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(str(directory / "host_key"))
    client_key.write_private_key(str(directory / "client_key"))
    (directory / "authorized_keys").write_bytes(client_key.export_public_key())
    for name in ("host_key", "client_key"):
        os.chmod(directory / name, 0o600)
    return directory / "client_key"


def _sshd_config(directory: Path, addresses: list[str]) -> Path:
    config = directory / "sshd_config"
    config.write_text("\n".join([
        "Port 22", *(f"ListenAddress {a}" for a in addresses), f"HostKey {directory / 'host_key'}", f"PidFile {directory / 'sshd.pid'}",
        f"AuthorizedKeysFile {directory / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "Subsystem sftp internal-sftp", "LogLevel VERBOSE", ""]))
    return config


def _pids_in(inode: int) -> list[int]:
    """Processes inside the network namespace with ``inode`` (sshd sessions, detached timers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino == inode:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_pids_in(inode: int) -> None:
    """End every process the tests started inside the namespace, by pid, until none is left.

    Found by the namespace's inode recorded at creation, so this works even when the name was
    removed meanwhile (another process sweeping ``lkt-*`` names); the fixture holds the
    namespace open, so its inode cannot be reused by another namespace meanwhile.
    """
    for _ in range(50):
        pids = _pids_in(inode)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not Path(SSHD).exists():
        pytest.skip("openssh-server is not installed (labkit.testbed.vms.APT_PACKAGES; `invoke setup`)")
    directory = tmp_path_factory.mktemp("sshd")
    n = os.getpid() % 250 + 1
    server = Sshd(f"lkt-ssh{os.getpid()}", f"lkt-sh{n}", f"lkt-sv{n}", f"10.253.{n}.1", f"10.253.{n}.2",
                  f"lkt-mh{n}", f"lkt-mv{n}", f"10.253.{n}.5", f"10.253.{n}.6", _write_keys(directory),
                  directory / "logs")
    made_privsep = not Path("/run/sshd").exists()
    proc: subprocess.Popen[bytes] | None = None
    holder: int | None = None  # an open fd on the namespace: it lives (and keeps its inode) until we close it
    try:
        if made_privsep:
            Path("/run/sshd").mkdir(mode=0o755)
        _ip("netns", "add", server.namespace)
        holder = os.open(f"/run/netns/{server.namespace}", os.O_RDONLY)
        for outside, inside, out_ip, in_ip in ((server.host_if, server.vm_if, server.host_ip, server.vm_ip),
                                               (server.mgmt_host_if, server.mgmt_if, server.mgmt_host_ip, server.mgmt_ip)):
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", server.namespace)
            _ip("addr", "add", f"{out_ip}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", server.namespace, "addr", "add", f"{in_ip}/30", "dev", inside)
            _ip("-n", server.namespace, "link", "set", inside, "up")
        _ip("-n", server.namespace, "link", "set", "lo", "up")
        config = _sshd_config(directory, [server.vm_ip, server.mgmt_ip])
        with (directory / "sshd.log").open("wb") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", server.namespace, SSHD, "-D", "-e", "-f", str(config)],
                                    stdout=log, stderr=subprocess.STDOUT)
        _wait_port(server.vm_ip, 22)
        _wait_port(server.mgmt_ip, 22)
        yield server
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if holder is not None:
            _kill_pids_in(os.fstat(holder).st_ino)
        subprocess.run(["ip", "netns", "del", server.namespace], capture_output=True)
        for link in (server.host_if, server.mgmt_host_if):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        if holder is not None:
            os.close(holder)
        if made_privsep:
            shutil.rmtree("/run/sshd", ignore_errors=True)


@pytest.fixture(autouse=True)
def namespace_intact(sshd: Sshd) -> Iterator[None]:
    """Name the cause when another process removed the test's namespace or link during a test."""
    yield
    gone = [what for what, path in (("namespace", f"/run/netns/{sshd.namespace}"),
                                    ("link", f"/sys/class/net/{sshd.host_if}"),
                                    ("management link", f"/sys/class/net/{sshd.mgmt_host_if}"))
            if not Path(path).exists()]
    if gone:
        pytest.fail(f"the test's {' and '.join(gone)} ({sshd.namespace}, {sshd.host_if}) was removed by another "
                    "process during the test (a concurrent run sweeping every lkt-* name?)")


async def _with_host(host: SshHost, coro_fn):  # type: ignore[no-untyped-def]
    try:
        return await coro_fn(host)
    finally:
        await host.close()


def test_run_returns_status_and_outputs_and_logs_them(sshd: Sshd) -> None:
    host = sshd.host()
    result = asyncio.run(_with_host(host, lambda h: h.run(["sh", "-c", "echo out; echo err >&2; exit 3"])))
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    log = host.log.path.read_text()
    assert "connected to root@" in log and "$ sh -c 'echo out; echo err >&2; exit 3'" in log and "exit 3" in log


def test_secret_output_is_not_logged(sshd: Sshd) -> None:
    host = sshd.host("secret")
    result = asyncio.run(_with_host(host, lambda h: h.run(["echo", "t0ken-value"], secret=True)))
    assert result.stdout == "t0ken-value\n"
    assert "t0ken-value\n" not in host.log.path.read_text().split("$ echo t0ken-value", 1)[1]
    assert "<withheld: secret>" in host.log.path.read_text()


def test_a_command_past_its_timeout_is_reported_not_waited_for(sshd: Sshd) -> None:
    start = time.monotonic()
    result = asyncio.run(_with_host(sshd.host(), lambda h: h.run(["sleep", "20"], timeout=1.0)))
    assert result.returncode == TIMEOUT_STATUS and "timed out after 1.0 s" in result.stderr
    assert time.monotonic() - start < 10


def test_put_copies_content_and_files_with_mode_and_parents(sshd: Sshd, tmp_path: Path) -> None:
    local = tmp_path / "blob.bin"
    local.write_bytes(os.urandom(300_000))
    remote_dir = f"{STAGING}-test-{os.getpid()}"

    async def work(h: SshHost) -> tuple[str, str]:
        await h.put(f"{remote_dir}/a/config.yaml", content="key: value\n", mode=0o600)
        await h.put(f"{remote_dir}/b/blob.bin", local=local, mode=0o755)
        stat = await h.run(["stat", "-c", "%a %s", f"{remote_dir}/a/config.yaml", f"{remote_dir}/b/blob.bin"])
        text = await h.run(["cat", f"{remote_dir}/a/config.yaml"])
        digest = await h.run(["sha256sum", f"{remote_dir}/b/blob.bin"])
        await h.run(["rm", "-rf", remote_dir])
        return stat.stdout + text.stdout, digest.stdout.split()[0]

    listing, digest = asyncio.run(_with_host(sshd.host(), work))
    assert listing == "600 11\n755 300000\nkey: value\n"
    import hashlib
    assert digest == hashlib.sha256(local.read_bytes()).hexdigest()
    with pytest.raises(SshError, match="no such local file"):
        asyncio.run(_with_host(sshd.host(), lambda h: h.put(f"{remote_dir}/x", local=tmp_path / "missing")))


def test_connection_failures_are_retried_then_reported(sshd: Sshd) -> None:
    host = SshHost(sshd.target("closed", port=2222), HostLog(sshd.logs / "closed.log"), connect_timeout=2,
                   retries=2, retry_delay=0.1)
    with pytest.raises(SshError, match=r"cannot ssh to root@10\.253\.\d+\.2:2222 after 3 attempt\(s\)"):
        asyncio.run(host.run(["true"]))
    assert host.log.path.read_text().count("failed (attempt") == 3


def test_pool_runs_hosts_in_parallel(sshd: Sshd) -> None:
    names = ["p1", "p2", "p3"]
    pool = SshPool([sshd.host(n) for n in names], parallel=3)

    async def work() -> tuple[dict[str, object], float]:
        try:
            await pool.each(names, lambda h: h.run(["true"]))  # log in first
            start = time.monotonic()
            results = await pool.each(names, lambda h: h.run(["sleep", "2"]))
            return results, time.monotonic() - start
        finally:
            await pool.close()

    results, took = asyncio.run(work())
    assert all(getattr(r, "returncode", None) == 0 for r in results.values())
    assert took < 4.5  # three 2 s commands at once; one after another would take 6 s


def test_executor_runs_a_plan_over_ssh_with_captures(sshd: Sshd) -> None:
    plan = Runbook((
        Stage("put", (Put("vm", "t.put", f"{STAGING}/plan-{os.getpid()}.txt", content="hello\n"),)),
        Stage("read", (Run("vm", "t.read", ("cat", f"{STAGING}/plan-{os.getpid()}.txt"), capture="c", parser="text"),
                       Run("vm", "t.clean", ("rm", "-f", f"{STAGING}/plan-{os.getpid()}.txt")))),
    ))
    pool = SshPool([sshd.host("vm")])

    async def work() -> dict[str, dict[str, str]]:
        try:
            return await Executor(SshTransport(pool), retry_delay=0, log=lambda _: None).run_runbook(plan)
        finally:
            await pool.close()

    assert asyncio.run(work())["c"] == {"value": "hello"}


def test_host_pings_and_survives_its_link_going_down(sshd: Sshd) -> None:
    loop = LoopThread()
    ssh = sshd.host("vmhost", retries=0, connect_timeout=3)
    host = VmsHost(ssh, loop, "root", sshd.vm_if, bring_up_after_s=4)
    try:
        ping = host.ping(sshd.host_ip, count=2)
        assert ping.received == 2 and len(ping.rtt_ms) == 2
        assert host.run(["cat", f"/sys/class/net/{sshd.vm_if}/operstate"]).stdout.strip() in ("up", "unknown")
        went_down = time.monotonic()
        host.iface_down()
        time.sleep(1.0)
        state = subprocess.run(["ip", "-n", sshd.namespace, "-o", "link", "show", sshd.vm_if],
                               capture_output=True, text=True).stdout
        assert "UP" not in state.split("<", 1)[1].split(">", 1)[0].split(",")
        host.iface_up()  # SSH goes over that link: only the timer started before can bring it back
        assert 3.5 <= time.monotonic() - went_down < 4 + 30
        assert host.run(["true"]).ok
        assert host.ping(sshd.host_ip).received == 1
    finally:
        loop.call(ssh.close())
        loop.stop()


def _timer_pids(sshd: Sshd) -> list[int]:
    """Processes in the test's namespace that belong to a bring-up timer (its shell or its sleep)."""
    pids = subprocess.run(["ip", "netns", "pids", sshd.namespace], capture_output=True, text=True).stdout.split()
    out = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"ip link set dev {sshd.vm_if} up" in cmdline or cmdline.strip() == "sleep 300":
            out.append(int(pid))
    return out


def _link_up(sshd: Sshd) -> bool:
    out = subprocess.run(["ip", "-n", sshd.namespace, "-o", "link", "show", sshd.vm_if], capture_output=True, text=True)
    return "UP" in out.stdout.split("<", 1)[1].split(">", 1)[0].split(",")


def test_with_a_management_link_the_lab_link_comes_back_at_once_and_the_timer_is_stopped(sshd: Sshd) -> None:
    loop = LoopThread()
    ssh = sshd.host("mgmt", retries=0, connect_timeout=3, mgmt=True)
    host = VmsHost(ssh, loop, "root", sshd.vm_if, bring_up_after_s=300)
    try:
        host.iface_down()
        time.sleep(0.5)
        assert not _link_up(sshd)
        assert host.ping(sshd.host_ip, timeout=1).received == 0  # the lab network is gone ...
        assert host.ping(sshd.mgmt_host_ip).received == 1         # ... the management network is not
        started = time.monotonic()
        host.iface_up()
        assert time.monotonic() - started < 20 and _link_up(sshd)
        assert _timer_pids(sshd) == [], "the bring-up timer (or its sleep) is still running"
        assert host.ping(sshd.host_ip).received == 1
    finally:
        loop.call(ssh.close())
        loop.stop()
