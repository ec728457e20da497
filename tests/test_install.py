"""labkit.install: steps run once, skip when done, and refuse root-only work without root."""

from __future__ import annotations

import pytest

from labkit import install
from labkit.setup_steps import SetupError, Step, missing_apt_packages, run_steps

pytestmark = pytest.mark.unit


def _step(name: str, done: bool, needs_root: bool = False, calls: list[str] | None = None,
          fail: bool = False) -> Step:
    def run(log):  # noqa: ANN001
        if fail:
            raise OSError("disk full")
        (calls if calls is not None else []).append(name)

    return Step(name=name, what=f"the {name} thing", check=lambda: done, run=run, needs_root=needs_root)


def test_runs_pending_and_skips_done() -> None:
    calls: list[str] = []
    lines: list[str] = []
    results = run_steps([_step("a", True, calls=calls), _step("b", False, calls=calls)], lines.append, root=False)
    assert calls == ["b"]
    assert [r.status for r in results] == ["skipped", "done"]
    assert any("a: already there, skipped" in line for line in lines)


def test_root_only_steps_are_listed_before_anything_runs() -> None:
    calls: list[str] = []
    steps = [_step("python", False, calls=calls), _step("apt", False, needs_root=True, calls=calls)]
    with pytest.raises(SetupError, match=r"need root .*\n  - apt: the apt thing"):
        run_steps(steps, lambda _: None, root=False)
    assert calls == []


def test_done_root_steps_do_not_need_root() -> None:
    results = run_steps([_step("apt", True, needs_root=True)], lambda _: None, root=False)
    assert results[0].status == "skipped"


def test_failure_names_the_step() -> None:
    with pytest.raises(SetupError, match="setup step 'b' failed: disk full"):
        run_steps([_step("b", False, fail=True)], lambda _: None, root=True)


def test_a_raising_check_means_not_done() -> None:
    calls: list[str] = []
    step = Step(name="x", what="x", check=lambda: 1 / 0, run=lambda log: calls.append("x"))
    run_steps([step], lambda _: None, root=True)
    assert calls == ["x"]


def test_missing_apt_packages_knows_an_installed_and_an_absent_package() -> None:
    missing = missing_apt_packages(["coreutils", "labkit-no-such-package"])
    assert missing == ["labkit-no-such-package"]


def test_all_steps_cover_the_required_packages() -> None:
    names = [s.name for s in install.all_steps()]
    assert names[:3] == ["apt", "python", "kernel"]
    assert {"kubernetes", "coredns", "virtual-kubelet", "image-runtime"} <= set(names)  # the backends' and images'
    assert names.count("apt") == 1  # one apt step for every part's packages
    for pkg in ("iproute2", "iputils-ping", "nftables", "wireguard-go", "wireguard-tools", "mariadb-server", "galera-4"):
        assert pkg in install.APT_PACKAGES


def test_unmet_pins(tmp_path) -> None:  # noqa: ANN001
    from importlib.metadata import version

    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname='x'\ndependencies=['pyyaml==%s', 'pandas==0.0.1']\n"
        "[project.optional-dependencies]\ndev=['labkit-no-such-dist==1.0']\n" % version("pyyaml"))
    assert install.unmet_pins(tmp_path / "pyproject.toml") == [
        "pandas==0.0.1 (installed: %s)" % version("pandas"), "labkit-no-such-dist==1.0 (installed: None)"]


def test_this_checkout_meets_its_pins() -> None:
    from labkit import paths

    assert install.unmet_pins(paths.repo_root() / "pyproject.toml") == []
