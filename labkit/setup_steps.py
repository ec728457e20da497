"""The setup-step vocabulary: what every part of the kit that installs something speaks.

A :class:`Step` knows whether it is done (``check``) and how to do it (``run``);
:func:`run_steps` runs the steps that are not done, in order, and refuses root-only steps
without root, naming them. :func:`apt_step` is the step that installs Debian packages;
:func:`call` runs a command and fails with its last output lines. This module is a leaf: the
backends, the images and :mod:`labkit.install` (which only collects the steps of every part)
all import it, and it imports nothing of the kit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit import machine_services

Log = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One idempotent setup step.

    Attributes
    ----------
    name
        Short name shown in the log (``apt``, ``python``, ``kernel``, ...).
    what
        One line saying what the step installs and why.
    check
        Returns ``True`` when the step is already done (then it is skipped).
    run
        Does the step; receives a logging function.
    needs_root
        Whether ``run`` needs root (checked before anything runs).
    """

    name: str
    what: str
    check: Callable[[], bool]
    run: Callable[[Log], None]
    needs_root: bool = False


@dataclass
class StepResult:
    """What happened to one step: ``done``, ``skipped`` or ``failed``, and how long it took."""

    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""


class SetupError(RuntimeError):
    """Setup cannot proceed; the message says which step and why."""


def is_root() -> bool:
    """Whether this process runs with effective uid 0."""
    return os.geteuid() == 0


def missing_apt_packages(packages: Sequence[str]) -> list[str]:
    """Return the packages of ``packages`` that dpkg does not report as installed."""
    missing = []
    for pkg in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def apt_step(packages: dict[str, str]) -> Step:
    """A step that installs the missing Debian ``packages`` (``apt-get update`` first).

    The services those packages bring stay stopped and disabled (:func:`labkit.machine_services.held`).
    """

    def run(log: Log) -> None:
        missing = missing_apt_packages(list(packages))
        log(f"apt-get update; apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        lock = ["-o", "DPkg::Lock::Timeout=600"]  # wait for another apt/dpkg instead of failing
        call(["apt-get", *lock, "update", "-q"], env=env)
        with machine_services.held(log):  # the new packages' own daemons stay off: the kit runs its own in its VMs
            call(["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *missing], env=env)

    return Step(
        name="apt",
        what=f"Debian packages: {', '.join(sorted(packages))}",
        check=lambda: not missing_apt_packages(list(packages)),
        run=run,
        needs_root=True,
    )


def run_steps(steps: Sequence[Step], log: Log = print, *, root: bool | None = None) -> list[StepResult]:
    """Run the steps that are not done yet, in order, and return what happened to each.

    Raises
    ------
    SetupError
        Before doing anything, when steps that are not done need root and this process
        is not root (the message lists them); or when a step fails.
    """
    root = is_root() if root is None else root
    pending = [s for s in steps if not _safe_check(s)]
    needs_root = [s for s in pending if s.needs_root]
    if needs_root and not root:
        lines = "\n".join(f"  - {s.name}: {s.what}" for s in needs_root)
        raise SetupError(f"these setup steps need root (run `sudo invoke setup`):\n{lines}")
    results = []
    for step in steps:
        if step not in pending:
            log(f"[setup] {step.name}: already there, skipped ({step.what})")
            results.append(StepResult(step.name, "skipped"))
            continue
        log(f"[setup] {step.name}: installing {step.what}")
        start = time.monotonic()
        try:
            step.run(log)
        except Exception as exc:  # re-raised with the step's name
            raise SetupError(f"setup step '{step.name}' failed: {exc}") from exc
        took = time.monotonic() - start
        log(f"[setup] {step.name}: done in {took:.1f} s")
        results.append(StepResult(step.name, "done", took))
    return results


def _safe_check(step: Step) -> bool:
    """Run a step's check; a check that raises means 'not done'."""
    try:
        return bool(step.check())
    except Exception:
        return False


def call(argv: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run ``argv``; raise with its last output lines when it fails."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        raise SetupError(f"command not found: {argv[0]}")
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SetupError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
