"""What the hosts tier does in its guest: the README's two commands, then the checks after them.

:func:`run` copies the checkout into a booted :class:`~.machine.Guest` and mounts the disk
:func:`cache_disk` made of the kit's build cache (``~/.cache/labkit``) and the Go toolchain the
cache was built with (a disk of its own: copying 5 GB over SSH ran at 2 MB/s under TCG), then
runs, as root in the checkout:

1. the README's first command, read from README.md (:func:`readme_commands`), restricted to
   the notebooks :data:`PIPELINE_ONLY` (``--only``: the environment, latency on the peered
   thesis env, a pod failure and a cluster failure);
2. the README's second command, restricted to the tiers and files :data:`GUEST_TESTS` (the
   unit tier and the embedded tests that bring up, peer, fault and tear down);
3. ``invoke down``;

and records around them what the guest's systemd ran and enabled and its cgroup tree, so the
test can check that the kit disturbed none of them (the packages setup installs start no service
of their own: :mod:`labkit.machine_services`). Every command's output goes to a log under ``logs``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labkit.guest.machine import Guest

Log = Callable[[str], None]

#: Notebooks of the README's pipeline run in the guest (``invoke lab --only``).
PIPELINE_ONLY = "00,20,40,50"
#: The README's test command in the guest: these tiers and files (``invoke test --tier --args``).
GUEST_TIERS = "unit,embedded"
GUEST_TESTS = ("tests/test_machine.py tests/test_config.py tests/test_machine_services.py "
               "tests/embedded/test_cgroups_unit.py tests/embedded/test_embedded_unit.py tests/embedded/test_preflight.py "
               "tests/embedded/test_cgroups.py tests/embedded/test_private_dirs.py "
               "tests/embedded/test_cluster.py tests/embedded/test_lifecycle.py "
               "tests/peering/test_galera.py tests/embedded/test_thesis_env.py")
#: Under qemu's emulator (TCG: this host's KVM cannot boot the guest's kernel) Kubernetes' timers
#: (20 s grace periods, 144 s for two nodes to be Ready) do not hold: the tests without a cluster.
GUEST_TESTS_TCG = ("tests/test_machine.py tests/test_config.py tests/embedded/test_cgroups_unit.py "
                   "tests/embedded/test_embedded_unit.py tests/embedded/test_preflight.py "
                   "tests/embedded/test_cgroups.py")
#: Where the checkout goes in the guest.
CHECKOUT = "/root/labkit"
#: Left out of the copied checkout: generated or host-specific.
CHECKOUT_EXCLUDES = (".venv", "./data/*", "./figures/*", "notebooks/out", "__pycache__", ".pytest_cache",
                     ".hypothesis", ".benchmarks", "*.egg-info")
#: Left out of the cache disk: the guest images themselves, logs of failed starts.
CACHE_EXCLUDES = ("guest", "failed-starts")
#: Room left on the cache disk for what setup adds (a runtime image of another checkout, its store).
CACHE_DISK_SPARE_GIB = 6
#: Mounts the cache disk (``/dev/vdb``) and links the cache and Go where the kit looks for them.
MOUNT_CACHE = ("mkdir -p /mnt/lkt-cache /root/.cache && mount /dev/vdb /mnt/lkt-cache && "
               "rm -rf /root/.cache/labkit && ln -sfn /mnt/lkt-cache/labkit /root/.cache/labkit && "
               "if [ -d /mnt/lkt-cache/go ]; then rm -rf /usr/local/go && ln -sfn /mnt/lkt-cache/go /usr/local/go && "
               "ln -sf /usr/local/go/bin/go /usr/local/bin/go; fi")


def cache_disk(dest: Path, cache: Path, go_root: Path | None) -> Path:
    """An ext4 image ``dest`` holding ``labkit/`` (the build ``cache`` less :data:`CACHE_EXCLUDES`)
    and ``go/`` (``go_root``), made with ``mkfs.ext4 -d`` from hard links (no second copy)."""
    staging = dest.with_name(dest.name + ".d")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "labkit").mkdir(parents=True)
    sources = [(e, staging / "labkit" / e.name) for e in cache.iterdir() if e.name not in CACHE_EXCLUDES]
    if go_root is not None:
        sources.append((go_root, staging / "go"))
    for source, target in sources:
        if subprocess.run(["cp", "-al", str(source), str(target)], capture_output=True).returncode != 0:
            subprocess.run(["cp", "-a", str(source), str(target)], check=True)  # another file system
    used = int(subprocess.run(["du", "-sb", str(staging)], capture_output=True, text=True, check=True).stdout.split()[0])
    size_mib = int(used * 1.2 / 2**20) + CACHE_DISK_SPARE_GIB * 1024
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "lkt-cache", "-E", "root_owner=0:0", "-d", str(staging),
                        str(dest), f"{size_mib}M"], check=True, capture_output=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


class ReadmeError(ValueError):
    """README.md does not hold the two commands where the tier looks for them."""


def readme_commands(text: str) -> tuple[str, str]:
    """The two commands of README.md's "Two commands" section: (install and run, test).

    They are the non-comment lines of the first ``bash`` block after that heading, in order.
    """
    section = text.split("## Two commands", 1)
    if len(section) != 2:
        raise ReadmeError("README.md has no '## Two commands' section")
    block = re.search(r"```bash\n(.*?)```", section[1], re.DOTALL)
    if not block:
        raise ReadmeError("README.md's 'Two commands' section has no ```bash block")
    lines = [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) != 2:
        raise ReadmeError(f"expected 2 commands in README.md's bash block, found {len(lines)}: {lines}")
    return lines[0], lines[1]


def guest_commands(readme: str, accel: str = "kvm") -> tuple[str, str]:
    """The README's commands as run in the guest: the pipeline limited to :data:`PIPELINE_ONLY`,
    the tests to :data:`GUEST_TIERS`/:data:`GUEST_TESTS` (options the same tasks take, appended).

    Under TCG (``accel="tcg"``) the first command stops before ``lab`` (it installs: bootstrap
    and ``invoke setup``, as ``.ci/run`` does) and the tests are :data:`GUEST_TESTS_TCG`.
    """
    install, test = readme_commands(readme)
    if " lab " not in f"{install} ":
        raise ReadmeError(f"README's first command runs no `lab`: {install}")
    if accel == "tcg":
        return (install[:install.index(" lab ")] if " lab " in install else install.removesuffix(" lab"),
                f"{test} --tier {GUEST_TIERS} --args {shlex.quote(GUEST_TESTS_TCG + ' -rP')}")
    return (f"{install} --only {PIPELINE_ONLY}",
            f"{test} --tier {GUEST_TIERS} --args {shlex.quote(GUEST_TESTS + ' -rP')}")


@dataclass
class Report:
    """What happened in the guest (the test asserts on it, docs/hosts.md quotes it)."""

    facts: dict[str, str] = field(default_factory=dict)
    units_before: set[str] = field(default_factory=set)
    units_after: set[str] = field(default_factory=set)
    enabled_before: set[str] = field(default_factory=set)
    enabled_after: set[str] = field(default_factory=set)
    failed_units: list[str] = field(default_factory=list)
    cgroup_before: dict[str, str] = field(default_factory=dict)
    cgroup_after: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    leftovers: str = ""
    scope_after: str = ""
    tails: dict[str, str] = field(default_factory=dict)
    thesis_ready_s: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """JSON-able form (sets sorted)."""
        return {k: sorted(v) if isinstance(v, set) else v for k, v in self.__dict__.items()}


#: Shell that prints what the checks compare: the facts of the host, the running units, the cgroup tree.
FACTS = {
    "cgroup_fs": "stat -fc %T /sys/fs/cgroup",
    "init": "cat /proc/1/comm",
    "kernel": "uname -r",
    "os": ". /etc/os-release && echo $PRETTY_NAME",
    "python": "python3 -V",
    "externally_managed": "ls /usr/lib/python3*/EXTERNALLY-MANAGED",
    "venv_module": "python3 -c 'import ensurepip, venv' 2>&1 | tail -1 || true",
    "system_state": "systemctl is-system-running || true",
}
RUNNING_UNITS = "systemctl list-units --state=running --no-legend --plain | awk '{print $1}'"
ENABLED_UNITS = "systemctl list-unit-files --state=enabled --no-legend --no-pager | awk '{print $1}'"
FAILED_UNITS = "systemctl list-units --state=failed --no-legend --plain | awk '{print $1}'"
CGROUP_FILES = ("cgroup.subtree_control", "system.slice/cgroup.subtree_control")


def _cgroup_state(guest: Guest) -> dict[str, str]:
    """The systemd-owned cgroup files the kit must not change, and the top level's directories."""
    state = {f: guest.run(f"cat /sys/fs/cgroup/{f}").stdout.strip() for f in CGROUP_FILES}
    state["top"] = " ".join(sorted(guest.run("ls -d /sys/fs/cgroup/*/ | xargs -n1 basename").stdout.split()))
    return state


def run(guest: Guest, root: Path, logs: Path, log: Log = print, timeout_s: float = 6 * 3600) -> Report:
    """Copy the kit in, run the README's commands and ``invoke down``, and record the checks' inputs.

    The checkout copied is a clone of ``root``'s committed ``HEAD`` (what a researcher clones).
    """
    logs.mkdir(parents=True, exist_ok=True)
    report = Report()
    report.facts = {k: guest.run(cmd, check=False).stdout.strip() for k, cmd in FACTS.items()}
    report.units_before = set(guest.run(RUNNING_UNITS).stdout.split())
    report.enabled_before = set(guest.run(ENABLED_UNITS).stdout.split())
    report.cgroup_before = _cgroup_state(guest)
    log(f"[guest] {report.facts['os']}, kernel {report.facts['kernel']}, {report.facts['cgroup_fs']}, "
        f"init {report.facts['init']}, {len(report.units_before)} running units")

    with tempfile.TemporaryDirectory(prefix="lkt-guest-checkout-") as tmp:
        clone = Path(tmp) / "labkit"  # a checkout of its own: a worktree's .git points into another repository
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(root), str(clone)], check=True)
        report.facts["commit"] = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
                                                capture_output=True, text=True, check=True).stdout.strip()
        report.seconds["copy_checkout"] = guest.copy_in(clone, CHECKOUT, CHECKOUT_EXCLUDES)
    guest.run(MOUNT_CACHE)
    report.facts["go"] = guest.run("go version || true").stdout.strip()
    log(f"[guest] copied the checkout in {report.seconds['copy_checkout']:.0f} s; cache disk mounted "
        f"({report.facts['go']})")

    install, test = guest_commands((root / "README.md").read_text(), guest.resources.accel)
    for name, command in (("install_and_lab", install), ("test", test), ("down", ".venv/bin/invoke down")):
        log(f"[guest] {name}: {command}")
        start = time.monotonic()
        proc = guest.run(f"cd {CHECKOUT} && {command}", timeout=timeout_s, check=False, log_to=logs / f"{name}.log")
        report.seconds[name] = time.monotonic() - start
        report.exit_codes[name] = proc.returncode
        report.tails[name] = proc.stdout[-4000:]
        log(f"[guest] {name}: exit {proc.returncode} after {report.seconds[name] / 60:.1f} min")
    text = (logs / "test.log").read_text(errors="replace") + (logs / "install_and_lab.log").read_text(errors="replace")
    report.thesis_ready_s = [float(x) for x in re.findall(r"thesis env: Ready in ([0-9.]+) s", text)]
    report.thesis_ready_s += [float(x) for x in re.findall(r"\[embedded\] 5 nodes Ready in ([0-9.]+) s", text)]

    report.leftovers = guest.run(f"cd {CHECKOUT} && .venv/bin/python -c 'from labkit.testbed.embedded import "
                                 "leftovers; print(leftovers())'", check=False).stdout.strip()
    report.scope_after = guest.run("systemctl is-active lkt-embedded.scope || true").stdout.strip()
    report.units_after = set(guest.run(RUNNING_UNITS).stdout.split())
    report.enabled_after = set(guest.run(ENABLED_UNITS).stdout.split())
    report.failed_units = guest.run(FAILED_UNITS).stdout.split()
    report.cgroup_after = _cgroup_state(guest)
    guest.run(f"cd {CHECKOUT} && tar -czf /root/runs.tgz data/*/manifest.json data/*/notebooks/*.log 2>/dev/null "
              "|| true", check=False)
    try:
        guest.copy_out("/root/runs.tgz", logs)
    except Exception as exc:  # diagnostics only
        log(f"[guest] could not copy the run's manifests out: {exc}")
    (logs / "report.json").write_text(json.dumps(report.as_dict(), indent=1))
    return report
