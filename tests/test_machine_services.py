"""labkit.machine_services: the kit's apt step leaves the services of new packages stopped and disabled.

The policy script runs for real under ``sh`` with the arguments invoke-rc.d and
deb-systemd-invoke pass; dpkg and systemctl are faked (the development machine has no systemd;
the hosts tier's guest checks a real install, docs/hosts.md).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from labkit import machine_services
from labkit.machine_services import MARK, held, policy_script, unit_files

pytestmark = pytest.mark.unit


def _policy_exit(tmp_path: Path, known: set[str], *args: str) -> int:
    script = tmp_path / "policy-rc.d"
    script.write_text(policy_script(known))
    script.chmod(0o755)
    return subprocess.run([str(script), *args]).returncode


@pytest.mark.parametrize(("args", "code"), [
    (("ssh.service", "start"), 0),                 # deb-systemd-invoke: a unit the host had
    (("ssh", "restart"), 0),                       # invoke-rc.d: its init script id
    (("--quiet", "ssh", "restart", "2"), 0),       # invoke-rc.d's options come first
    (("mariadb.service", "start"), 101),           # a service the host did not have
    (("mariadb", "start"), 101),
    (("--quiet", "etcd", "start", "2"), 101),
    (("containerd.service", "restart"), 101),
    (("e2scrub_all.timer", "start"), 0),           # other unit kinds are compared by full name
    (("e2scrub_all", "start"), 101),
])
def test_the_policy_refuses_only_services_the_host_did_not_have(tmp_path: Path, args: tuple[str, ...],
                                                                 code: int) -> None:
    assert _policy_exit(tmp_path, {"ssh.service", "ssh.socket", "e2scrub_all.timer"}, *args) == code


def test_the_policy_with_no_known_service_refuses_everything(tmp_path: Path) -> None:
    assert _policy_exit(tmp_path, set(), "ssh", "start") == 101


def test_unit_files_are_the_packages_systemd_units_without_templates() -> None:
    files = ["/lib/systemd/system/mariadb.service", "/lib/systemd/system/mariadb@.service",
             "/usr/lib/systemd/system/etcd.service", "/lib/systemd/system/ssh.socket",
             "/etc/init.d/mariadb", "/lib/systemd/system/mariadb.service.d/x.conf", "/usr/bin/etcd"]
    assert unit_files(files) == ["etcd.service", "mariadb.service", "ssh.socket"]


class FakeHost:
    """dpkg and systemctl of a host on which ``apt-get install`` adds ``new`` packages."""

    def __init__(self, policy: Path, new: dict[str, list[str]], enabled: set[str], active: set[str]) -> None:
        self.policy = policy
        self.packages = {"coreutils": [], "openssh-server": ["/lib/systemd/system/ssh.service"]}
        self.new = new
        self.enabled = set(enabled)
        self.active = set(active)
        self.calls: list[list[str]] = []
        self.policy_during: str | None = None

    def install(self) -> None:
        """What apt-get does: unpack the new packages (the policy in force is recorded)."""
        self.policy_during = self.policy.read_text() if self.policy.exists() else None
        self.packages.update(self.new)

    def run(self, argv: Sequence[str]) -> str:
        argv = list(argv)
        self.calls.append(argv)
        if argv[0] == "dpkg-query" and argv[1] == "-W":
            return "".join(f"{p}\tinstall ok installed\n" for p in self.packages)
        if argv[0] == "dpkg-query" and argv[1] == "-L":
            return "\n".join(self.packages[argv[2]]) + "\n"
        if argv[:2] == ["systemctl", "list-unit-files"]:
            return "ssh.service enabled enabled\ncron.service enabled enabled\n"
        if argv[:2] == ["systemctl", "is-enabled"]:
            return "enabled\n" if argv[2] in self.enabled else "disabled\n"
        if argv[:2] == ["systemctl", "is-active"]:
            return "active\n" if argv[2] in self.active else "inactive\n"
        if argv[:2] in (["systemctl", "disable"], ["systemctl", "stop"]):
            return ""
        raise AssertionError(f"unexpected command {argv}")


NEW = {"mariadb-server": ["/lib/systemd/system/mariadb.service", "/lib/systemd/system/mariadb@.service"],
       "etcd-server": ["/lib/systemd/system/etcd.service"], "galera-4": ["/usr/lib/galera/libgalera_smm.so"]}


def test_held_writes_the_policy_for_the_install_only_and_turns_off_the_new_units(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    host = FakeHost(policy, NEW, enabled={"ssh.service", "mariadb.service", "etcd.service"},
                    active={"ssh.service", "etcd.service"})
    lines: list[str] = []
    with held(lines.append, policy=policy, systemd=True, run=host.run, init_d=tmp_path / "no-init.d") as report:
        host.install()
    assert host.policy_during is not None and MARK in host.policy_during
    assert "'ssh'" in host.policy_during and "'mariadb'" not in host.policy_during
    assert not policy.exists()
    assert report.new_packages == ["etcd-server", "galera-4", "mariadb-server"]
    assert report.units == ["etcd.service", "mariadb.service"]
    assert report.disabled == ["etcd.service", "mariadb.service"]
    assert report.stopped == ["etcd.service"]   # a foreign policy may have let one start
    assert ["systemctl", "disable", "--quiet", "etcd.service", "mariadb.service"] in host.calls
    assert ["systemctl", "stop", "etcd.service"] in host.calls
    assert not any("ssh.service" in c for c in host.calls if c[:2] in (["systemctl", "disable"], ["systemctl", "stop"]))
    assert "disabled etcd.service, mariadb.service" in lines[-1]


def test_held_leaves_a_foreign_policy_in_place_and_still_turns_off_the_new_units(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    host = FakeHost(policy, NEW, enabled={"mariadb.service"}, active=set())
    lines: list[str] = []
    with held(lines.append, policy=policy, systemd=True, run=host.run, init_d=tmp_path / "no-init.d") as report:
        host.install()
    assert host.policy_during == "#!/bin/sh\nexit 101\n"
    assert policy.read_text() == "#!/bin/sh\nexit 101\n"
    assert report.disabled == ["mariadb.service"] and report.stopped == []
    assert "not the kit's" in lines[0]


def test_held_replaces_a_policy_the_kit_left_behind(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text(policy_script(["x"]))  # a killed setup's
    host = FakeHost(policy, {}, enabled=set(), active=set())
    with held(lambda _: None, policy=policy, systemd=True, run=host.run, init_d=tmp_path / "no-init.d"):
        host.install()
    assert host.policy_during is not None and "'ssh'" in host.policy_during
    assert not policy.exists()


def test_held_cleans_up_when_the_install_fails(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    host = FakeHost(policy, NEW, enabled={"etcd.service"}, active=set())
    with pytest.raises(RuntimeError, match="dpkg failed"):
        with held(lambda _: None, policy=policy, systemd=True, run=host.run, init_d=tmp_path / "no-init.d") as report:
            host.install()
            raise RuntimeError("dpkg failed")
    assert not policy.exists()
    assert report.disabled == ["etcd.service"]


def test_held_without_systemd_only_keeps_the_policy_during_the_install(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    host = FakeHost(policy, NEW, enabled={"etcd.service"}, active={"etcd.service"})
    init_d = tmp_path / "init.d"
    init_d.mkdir()
    (init_d / "cron").touch()
    assert machine_services.known_services(host.run, init_d, systemd=False) == {"cron"}
    with held(lambda _: None, policy=policy, systemd=False, run=host.run, init_d=init_d) as report:
        host.install()
    assert host.policy_during is not None and not policy.exists()
    assert report.units == [] and not any(c[0] == "systemctl" for c in host.calls)


def test_installed_packages_reads_only_installed_ones() -> None:
    out = "a\tinstall ok installed\nb\tdeinstall ok config-files\nc\tinstall ok unpacked\nd\thold ok installed\n"
    assert machine_services.installed_packages(lambda argv: out) == {"a", "d"}


def test_setup_apt_step_installs_inside_held(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit import setup_steps

    events: list[str] = []

    class Probe:
        def __init__(self, log: object) -> None:
            pass

        def __enter__(self) -> None:
            events.append("held")

        def __exit__(self, *exc: object) -> None:
            events.append("released")

    monkeypatch.setattr(setup_steps.machine_services, "held", Probe)
    monkeypatch.setattr(setup_steps, "missing_apt_packages", lambda pkgs: ["etcd-server"])
    monkeypatch.setattr(setup_steps, "call", lambda argv, env=None: events.append(" ".join(argv[3:5])))
    setup_steps.apt_step({"etcd-server": "why"}).run(lambda _: None)
    assert events == ["update -q", "held", "install -y", "released"]
