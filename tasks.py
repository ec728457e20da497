"""invoke tasks: the kit's command line (``invoke --list``).

Thin on purpose: every task validates its options, delegates to ``labkit`` and turns the
kit's errors into one clear message and a non-zero exit.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from invoke import Context, Exit, task

ROOT = Path(__file__).resolve().parent


def tiers() -> tuple[str, ...]:
    """The test tiers: the pytest markers of pyproject.toml, the one place that lists them."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return tuple(marker.split(":", 1)[0].strip() for marker in options["markers"])


TIERS = tiers()


@task
def setup(c: Context) -> None:
    """Install everything the kit needs (idempotent): Debian packages, the Python package, the Jupyter kernel."""
    from labkit import install
    from labkit.machine import PrivilegeError, require_embedded
    from labkit.setup_steps import SetupError, run_steps

    try:
        require_embedded("invoke setup")  # before anything is installed: one line naming all that is missing
        results = run_steps(install.all_steps(ROOT))
    except (SetupError, PrivilegeError) as err:
        raise Exit(f"setup: {err}", code=1) from None
    done = [r for r in results if r.status == "done"]
    print(f"[setup] {len(done)} step(s) done, {len(results) - len(done)} already there")


@task(help={"env": "env name in envs/ (default: embedded)", "profile": "quick (CI) or full (thesis counts)",
            "only": "comma-separated notebook prefixes to run, e.g. '00,10' (default: all)",
            "share": "embedded: notebooks share one test bed per env (default); --no-share: one each"})
def lab(c: Context, env: str = "embedded", profile: str = "quick", only: str = "", share: bool = True) -> None:
    """Run the experiment pipeline: notebooks/ in order with papermill into data/<run_id>/."""
    from labkit.config import ConfigError, load_env
    from labkit.machine import PrivilegeError, require_embedded
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
    from labkit.testbed import TestbedError, create, hold

    try:
        model = load_env(env)
        testbed = create(model)
        if dry_run:
            print(testbed.describe(model))
            return
        if testbed.outlives_process:
            testbed.up(model)
            print(f"[up] {env}: clusters {', '.join(testbed.clusters())} are up")
            return
        hold(testbed, model)  # kill, a closed terminal or Ctrl-C: tear down, also mid-way
    except (ConfigError, TestbedError, PermissionError) as err:
        raise Exit(f"up: {err}", code=1) from None
    except KeyboardInterrupt:
        raise Exit("up: interrupted; what was started is torn down", code=130) from None


@task(help={"env": "env name in envs/ (default: embedded)",
            "force": "embedded: sweep even while a running process holds the test bed (stops a run's shared "
                     "test bed first)"})
def down(c: Context, env: str = "embedded", force: bool = False) -> None:
    """Tear a test bed down: embedded removes every leftover of the kit (also after a crash); VMs uninstall."""
    from labkit.config import ConfigError, load_env
    from labkit.testbed import TestbedError, sweep

    try:
        print(f"[down] removed: {sweep(load_env(env), force=force)}")
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
    chosen = [t.strip() for t in tier.split(",") if t.strip()] or list(TIERS)
    bad = [t for t in chosen if t not in TIERS]
    if bad:
        raise Exit(f"test: unknown tier(s) {bad}; choose among {TIERS}", code=2)
    marker = " or ".join(chosen)
    cmd = f'{sys.executable} -m pytest -m "{marker}" {args}'.strip()
    # the hosts tier boots a guest for about an hour: it runs only when named (labkit.guest.fits)
    named = {"LABKIT_HOSTS_TIER": "1"} if "hosts" in [t.strip() for t in tier.split(",")] else {}
    result = c.run(cmd, warn=True, pty=False, env={"PYTHONUNBUFFERED": "1", **os.environ, **named})
    code = result.exited if result is not None else 1
    if code == 5:
        raise Exit(f"test: pytest collected no test for tiers {chosen}", code=1)
    if code != 0:
        raise Exit(f"test: pytest exited {code}", code=code)
