"""invoke tasks: the kit's command line (``invoke --list``).

Thin on purpose: every task validates its options, delegates to ``labkit`` and turns the
kit's errors into one clear message and a non-zero exit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Context, Exit, task

if TYPE_CHECKING:
    from labkit.config import Env

ROOT = Path(__file__).resolve().parent
TIERS = ("unit", "notebook", "embedded", "vms", "hosts")


@task
def setup(c: Context) -> None:
    """Install everything the kit needs (idempotent): Debian packages, the Python package, the Jupyter kernel."""
    from labkit import install
    from labkit.host import PrivilegeError, require_embedded

    try:
        require_embedded("invoke setup")  # before anything is installed: one line naming all that is missing
        results = install.run_steps(install.all_steps(ROOT))
    except (install.SetupError, PrivilegeError) as err:
        raise Exit(f"setup: {err}", code=1) from None
    done = [r for r in results if r.status == "done"]
    print(f"[setup] {len(done)} step(s) done, {len(results) - len(done)} already there")


@task(help={"env": "env name in envs/ (default: embedded)", "profile": "quick (CI) or full (thesis counts)",
            "only": "comma-separated notebook prefixes to run, e.g. '00,10' (default: all)",
            "share": "embedded: notebooks share one test bed per env (default); --no-share: one each"})
def lab(c: Context, env: str = "embedded", profile: str = "quick", only: str = "", share: bool = True) -> None:
    """Run the experiment pipeline: notebooks/ in order with papermill into data/<run_id>/."""
    from labkit.config import ConfigError, load_env
    from labkit.host import PrivilegeError, require_embedded
    from labkit.runner import PipelineError, run_pipeline

    if profile not in ("quick", "full"):
        raise Exit(f"lab: --profile must be 'quick' or 'full', got {profile!r}", code=2)
    prefixes = [p.strip() for p in only.split(",") if p.strip()]
    try:
        if load_env(env).backend.kind == "embedded":  # before a run directory or a test bed exists
            require_embedded(f"invoke lab --env {env}")
        manifest = run_pipeline(env, profile, only=prefixes, share=share)  # type: ignore[arg-type]
    except (ConfigError, PipelineError, PrivilegeError) as err:
        raise Exit(f"lab: {err}", code=1) from None
    print(f"[lab] {len(manifest.notebooks)} notebook(s) ok; data in data/{manifest.run_id}/, figures in figures/")


@task(help={"run": "run id in data/ to draw from (default: the newest completed run)"})
def figures(c: Context, run: str = "") -> None:
    """Rebuild figures/ from the tables in data/ alone (no test bed needed)."""
    from labkit import paths
    from labkit.config import ConfigError
    from labkit.runner import PipelineError, rebuild_figures

    run_dir = paths.data_dir() / run if run else None
    if run_dir is not None and not run_dir.is_dir():
        raise Exit(f"figures: no run {run!r} in {paths.data_dir()}", code=2)
    try:
        written = rebuild_figures(run_dir)
    except (ConfigError, PipelineError, FileNotFoundError) as err:
        raise Exit(f"figures: {err}", code=1) from None
    print(f"[figures] {len(written)} figure file(s) written to figures/")


@task(help={"env": "env name in envs/ (default: embedded)",
            "dry_run": "print what would be created or run, per host, and touch nothing"})
def up(c: Context, env: str = "embedded", dry_run: bool = False) -> None:
    """Bring a test bed up. Embedded: runs until Ctrl-C, then tears down. VMs: installs and returns."""
    from labkit.config import ConfigError, load_env
    from labkit.testbed import TestbedError, create

    try:
        model = load_env(env)
        if dry_run:
            print(_plan_text(model))
            return
        testbed = create(model)
        if model.backend.kind == "embedded":
            from labkit.testbed.embedded.shared import unwind_on_terminate

            unwind_on_terminate()  # kill, a closed terminal or Ctrl-C: tear down, also mid-way
        testbed.up(model)
    except (ConfigError, TestbedError, PermissionError) as err:
        raise Exit(f"up: {err}", code=1) from None
    except KeyboardInterrupt:
        raise Exit("up: interrupted; what was started is torn down", code=130) from None
    print(f"[up] {env}: clusters {', '.join(testbed.clusters())} are up")
    if model.backend.kind == "embedded":
        _hold(testbed)


def _plan_text(model: Env) -> str:
    """What ``up --dry-run`` prints: the per-host command plan (vms) or the VMs and CIDRs (embedded)."""
    if model.backend.kind == "vms":
        from labkit.testbed.vms import dry_run

        return dry_run(model)
    from labkit.testbed.embedded.spec import from_env

    spec = from_env(model)
    lines = [f"embedded test bed {model.name}: {len(spec.clusters)} clusters (Kubernetes v1.24.17)"]
    for cl in spec.clusters:
        lines.append(f"  cluster {cl.name}: pods {cl.pod_cidr}, services {cl.service_cidr}")
        lines += [f"    VM {vm.name} (network namespace lkt-vm-{vm.name}): labels {vm.labels}" for vm in cl.vms]
    return "\n".join(lines)


def _hold(testbed: object) -> None:
    """Keep an embedded test bed up until Ctrl-C (or SIGTERM, SIGHUP), then tear it down."""
    import time

    from labkit.testbed.embedded.shared import ignore_terminate

    try:  # the message inside: a signal right after it (a script waiting for the line) still tears down
        print(f"[up] embedded test bed runs in this process (pid {os.getpid()}); Ctrl-C or kill tears it down")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("[up] tearing down")
    finally:
        ignore_terminate()
        testbed.down()  # type: ignore[attr-defined]


@task(help={"env": "env name in envs/ (default: embedded)",
            "force": "embedded: sweep even while a running process holds the test bed (stops a run's shared "
                     "test bed first)"})
def down(c: Context, env: str = "embedded", force: bool = False) -> None:
    """Tear a test bed down: embedded removes every leftover of the kit (also after a crash); VMs uninstall."""
    from labkit.config import ConfigError, load_env
    from labkit.testbed import TestbedError

    try:
        model = load_env(env)
        if model.backend.kind == "embedded":
            from labkit.host import require_root
            from labkit.testbed.embedded import MachineLock, shared, sweep

            require_root("removing the embedded test bed")
            holder = MachineLock().holder()
            if holder and not force:
                raise Exit(f"down: the embedded test bed of {holder} is running; stop that process "
                           "(it tears down) or pass --force", code=1)
            if force:
                shared.stop_all()  # a killed `invoke lab` leaves its server holding the test bed
            found = sweep()
            print(f"[down] removed: {found}")
        else:
            from labkit.testbed.vms import VmsTestbed

            VmsTestbed().teardown(model)
    except (ConfigError, TestbedError, PermissionError) as err:
        raise Exit(f"down: {err}", code=1) from None


@task(help={"env": "env name in envs/ to validate (default: every env file)"})
def validate(c: Context, env: str = "") -> None:
    """Validate env files and print a one-line summary of each."""
    from labkit import paths
    from labkit.config import ConfigError, load_env

    names = [env] if env else sorted(p.stem for p in paths.envs_dir().glob("*.yaml"))
    failed = 0
    for name in names:
        try:
            model = load_env(name)
        except ConfigError as err:
            failed += 1
            print(err, file=sys.stderr)
            continue
        nodes = sum(len(cl.nodes) for cl in model.clusters)
        print(f"{name}: ok ({model.backend.kind}, {len(model.clusters)} clusters, {nodes} nodes, "
              f"{len(model.db_domains)} DB domain(s))")
    if failed:
        raise Exit(f"validate: {failed} env file(s) invalid", code=1)


@task(help={"tier": f"comma-separated tiers among {', '.join(TIERS)} (default: every tier; "
                    "tiers this machine cannot run skip with a reason; hosts runs only when named)",
            "args": "extra pytest arguments"})
def test(c: Context, tier: str = "", args: str = "") -> None:
    """Run the test suite by tier (pytest markers); embedded needs root, vms needs an inventory."""
    tiers = [t.strip() for t in tier.split(",") if t.strip()] or list(TIERS)
    bad = [t for t in tiers if t not in TIERS]
    if bad:
        raise Exit(f"test: unknown tier(s) {bad}; choose among {TIERS}", code=2)
    marker = " or ".join(tiers)
    cmd = f'{sys.executable} -m pytest -m "{marker}" {args}'.strip()
    # the hosts tier boots a guest for about an hour: it runs only when named (labkit.guest.fits)
    named = {"LABKIT_HOSTS_TIER": "1"} if "hosts" in [t.strip() for t in tier.split(",")] else {}
    result = c.run(cmd, warn=True, pty=False, env={"PYTHONUNBUFFERED": "1", **os.environ, **named})
    code = result.exited if result is not None else 1
    if code == 5:
        raise Exit(f"test: pytest collected no test for tiers {tiers}", code=1)
    if code != 0:
        raise Exit(f"test: pytest exited {code}", code=code)
