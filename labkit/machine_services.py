"""Installing the kit's Debian packages without leaving their services running on the host.

Several packages the kit's setup installs are daemons: ``containerd``, ``etcd-server``,
``mariadb-server``, ``openssh-server`` (and whatever their dependencies bring, e.g. ``cron``).
Their maintainer scripts enable and start each service at once on a systemd host: a database
initialising ``/var/lib/mysql``, an etcd, a containerd whose delegated unit makes systemd turn
on more cgroup controllers, an sshd listening on the researcher's machine. The kit runs its own
containerd, etcd and MariaDB inside its VMs and needs none of them on the host, so
:func:`held` keeps every service that the install *newly* brings stopped and disabled:

1. While ``apt-get install`` runs, ``/usr/sbin/policy-rc.d`` (Debian's policy layer, which
   ``invoke-rc.d`` and ``deb-systemd-invoke`` ask before they start, stop or restart a service
   from a maintainer script) refuses every action on a service the host did not have before
   the install (exit 101) and allows the others (exit 0), so an upgraded dependency's service
   of the researcher's restarts as it would without the kit. The file is written only where no
   ``policy-rc.d`` exists (a container image's own ``exit 101`` stays and decides), and removed
   after the install.
2. After it, on a systemd host, every unit file shipped by a package that was not installed
   before is disabled when the install enabled it (it would start at the next boot), and
   stopped when it runs (a policy of the host's own may have let it start). Units of packages
   the host already had are never touched.

The services stay installed: ``systemctl enable --now <unit>`` runs one for the researcher who
wants it. A host without systemd (the development machine) gets step 1 only. This module uses
the standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

Log = Callable[[str], None]
#: Runs a command and returns its standard output (raises on a missing program only).
Runner = Callable[[Sequence[str]], str]

#: Debian's policy layer for maintainer scripts (invoke-rc.d(8), deb-systemd-invoke(1p)).
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
#: First comment line of the policy the kit writes: the kit removes only a file that carries it.
MARK = "# labkit: held services"
#: Unit files a package ships (Debian installs them under /lib or /usr/lib).
UNIT_FILE = re.compile(r"^/(?:usr/)?lib/systemd/system/([^/]+\.(?:service|socket|timer|path))$")
#: ``systemctl is-active`` answers of a unit that runs (or is about to).
RUNNING = ("active", "activating", "reloading")


def run_output(argv: Sequence[str]) -> str:
    """:data:`Runner` for the real host: the command's standard output, whatever its exit code."""
    return subprocess.run(list(argv), capture_output=True, text=True).stdout


def installed_packages(run: Runner = run_output) -> set[str]:
    """The Debian packages dpkg reports as installed."""
    out = run(["dpkg-query", "-W", "-f=${Package}\\t${Status}\\n"])
    return {name for name, _, status in (line.partition("\t") for line in out.splitlines())
            if status.split()[-1:] == ["installed"]}  # "install ok installed", also "hold ok installed"


def service_name(unit: str) -> str:
    """A unit or init script name as the policy compares it: ``mariadb.service`` -> ``mariadb``."""
    return unit.removesuffix(".service")


def known_services(run: Runner = run_output, init_d: Path = Path("/etc/init.d"), systemd: bool = True) -> set[str]:
    """The services this host knows now: systemd's unit files and the SysV init scripts (:func:`service_name`)."""
    names = {p.name for p in init_d.iterdir()} if init_d.is_dir() else set()
    if systemd:
        out = run(["systemctl", "list-unit-files", "--no-legend", "--no-pager", "--full"])
        names |= {line.split()[0] for line in out.splitlines() if line.split()}
    return {service_name(n) for n in names}


def policy_script(known: Iterable[str]) -> str:
    """The ``policy-rc.d`` that refuses (101) every action on a service not in ``known``, allows (0) the rest.

    Called as ``policy-rc.d [--quiet] <service or unit> <action> [<runlevel>]``.
    """
    names = sorted({service_name(k) for k in known})
    allowed = "|".join(f"'{n}'" for n in names if "'" not in n) or "''"
    return (f"#!/bin/sh\n{MARK}: written by the kit's `invoke setup` for one `apt-get install`, removed after it\n"
            "# (labkit.machine_services). Services the host did not have before that install are not started.\n"
            'while [ "${1#--}" != "$1" ]; do shift; done\n'
            'case "${1%.service}" in\n'
            f"  {allowed}) exit 0 ;;\n"
            "esac\n"
            "exit 101\n")


def unit_files(paths: Iterable[str]) -> list[str]:
    """The systemd unit names among a package's files (templates ``x@.service`` left out: never enabled as such)."""
    units = {m.group(1) for p in paths if (m := UNIT_FILE.match(p))}
    return sorted(u for u in units if "@." not in u)


@dataclass
class Held:
    """What :func:`held` found and did (for the log and the tests)."""

    new_packages: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    policy: str = ""

    def summary(self) -> str:
        """One line for setup's log."""
        if not self.units:
            return f"no service among the {len(self.new_packages)} new packages ({self.policy})"
        done = [f"disabled {', '.join(self.disabled)}" if self.disabled else "",
                f"stopped {', '.join(self.stopped)}" if self.stopped else ""]
        return (f"the new packages' services stay off, the kit runs its own in its VMs ({self.policy}): "
                f"{', '.join(self.units)}; {'; '.join(d for d in done if d) or 'none was enabled or running'} "
                f"(`systemctl enable --now <unit>` to use one yourself)")


@contextmanager
def held(log: Log = print, *, policy: Path = POLICY_RC_D, systemd: bool | None = None,
         run: Runner = run_output, init_d: Path = Path("/etc/init.d")) -> Iterator[Held]:
    """Around an ``apt-get install``: the services of newly installed packages neither start nor stay enabled.

    See the module doc. The cleanup (removing the kit's policy, disabling and stopping the new
    packages' units) runs also when the install fails: a half-configured package may have
    enabled its unit already.
    """
    if systemd is None:
        systemd = Path("/run/systemd/system").is_dir()
    report = Held()
    before = installed_packages(run)
    ours = not policy.exists() or _is_ours(policy)
    if ours:
        _write_policy(policy, policy_script(known_services(run, init_d, systemd)))
        report.policy = f"{policy} refused their start"
    else:
        report.policy = f"the host's own {policy} decided"
        log(f"[setup] apt: {policy} exists and is not the kit's: it decides which services the packages start")
    try:
        yield report
    finally:
        if ours and _is_ours(policy):
            policy.unlink()
        report.new_packages = sorted(installed_packages(run) - before)
        if systemd:
            report.units = sorted({u for pkg in report.new_packages
                                   for u in unit_files(run(["dpkg-query", "-L", pkg]).splitlines())})
            _turn_off(report, run)
        log(f"[setup] apt: {report.summary()}")


def _is_ours(policy: Path) -> bool:
    try:
        return MARK in policy.read_text(errors="replace")
    except OSError:
        return False


def _write_policy(policy: Path, text: str) -> None:
    tmp = policy.with_name(policy.name + ".labkit-tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, policy)


def _turn_off(report: Held, run: Runner) -> None:
    """Disable the enabled and stop the running units of ``report.units`` (systemd)."""
    report.disabled = [u for u in report.units if run(["systemctl", "is-enabled", u]).strip() == "enabled"]
    report.stopped = [u for u in report.units if run(["systemctl", "is-active", u]).strip() in RUNNING]
    if report.disabled:
        run(["systemctl", "disable", "--quiet", *report.disabled])
    if report.stopped:
        run(["systemctl", "stop", *report.stopped])
