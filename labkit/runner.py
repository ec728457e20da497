"""The pipeline runner behind ``invoke lab`` and ``invoke figures``.

``notebooks/pipeline.yaml`` lists the notebooks in order, each with its parameters and
per-profile overrides (``quick`` for CI, ``full`` for the thesis' repetition counts).
:func:`run_pipeline` executes them with papermill into ``data/<run_id>/notebooks/``,
writing ``data/<run_id>/manifest.json`` before the first notebook and completing it after
the last; a failing notebook stops the run, and the manifest records which and why.
:func:`rebuild_figures` re-executes the figure notebooks with ``replot=True``, so they
redraw ``figures/`` from a run's tables alone, with no test bed.

Notebook contract: one cell tagged ``parameters`` holding typed, commented literals. The
runner passes the standard parameters (:data:`STANDARD_PARAMETERS`) a notebook declares,
plus the pipeline's own; passing a parameter the notebook does not declare is an error. An
experiment's notebook (:data:`labkit.experiments.EXPERIMENTS`) gets its pipeline parameters as
one ``params`` mapping, checked against the experiment's model before anything runs; the
manifest records the resolved values (defaults included).
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labkit import bounds, experiments, paths, testbed
from labkit.config import ConfigError, Env, Problem, load_env
from labkit.install import KERNEL_NAME
from labkit.manifest import Manifest, NotebookRecord, new_run_id, utcnow
from labkit.testbed.liqoctl import peering_of

Profile = Literal["quick", "full"]
PIPELINE_FILE = "pipeline.yaml"
#: The shared test bed's server log, kept next to the executed notebooks.
SHARED_LOG = "shared-testbed.log"

#: Parameters the runner provides to every notebook that declares them (``session``: the run's shared
#: test bed, :func:`labkit.testbed.session`; ``""`` when each experiment brings up its own).
STANDARD_PARAMETERS: tuple[str, ...] = ("env", "profile", "run_id", "run_dir", "figures_dir", "replot", "session")
#: The parameter of an experiment's notebook that holds the experiment's own parameters.
EXPERIMENT_PARAMETERS = "params"


class PipelineError(RuntimeError):
    """The pipeline cannot run or a notebook failed; the message names the notebook."""


class Entry(BaseModel):
    """One notebook of the pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notebook: str = Field(pattern=r"^\d\d-[a-z0-9\-]+\.ipynb$")
    parameters: dict[str, Any] = Field(default_factory=dict)
    profiles: dict[Profile, dict[str, Any]] = Field(default_factory=dict)
    figures: bool = True
    report: bool = False
    backends: list[Literal["embedded", "vms"]] = Field(default_factory=list)

    def resolve(self, profile: str) -> dict[str, Any]:
        """The notebook's own parameters for ``profile`` (profile values win)."""
        return {**self.parameters, **self.profiles.get(profile, {})}  # type: ignore[call-overload]

    def own_parameters(self, profile: str) -> dict[str, Any]:
        """What the runner passes besides the standard parameters: an experiment's notebook gets its
        parameters checked against the experiment's model, with every default, as ``params``.

        Raises
        ------
        labkit.config.ConfigError
            Naming the notebook and every bad or unknown parameter.
        """
        experiment = experiments.by_notebook(self.notebook)
        if experiment is None:
            return self.resolve(profile)
        checked = experiment.parameters(self.resolve(profile))
        return {EXPERIMENT_PARAMETERS: checked.model_dump(mode="json")}

    def runs_on(self, backend: str) -> bool:
        """Whether this notebook applies to ``backend`` (empty ``backends`` = all)."""
        return not self.backends or backend in self.backends


class Pipeline(BaseModel):
    """The ordered notebooks of ``notebooks/pipeline.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notebooks: list[Entry] = Field(min_length=1)


def load_pipeline(path: Path | None = None) -> Pipeline:
    """Load and validate the pipeline file; every problem in one :class:`ConfigError`."""
    path = path or paths.notebooks_dir() / PIPELINE_FILE
    try:
        raw = yaml.safe_load(path.read_text())
        pipeline = Pipeline.model_validate(raw)
    except FileNotFoundError:
        raise ConfigError([Problem("", "pipeline file not found")], path) from None
    except (yaml.YAMLError, ValidationError) as err:
        raise ConfigError([Problem("", str(err))], path) from None
    missing = [e.notebook for e in pipeline.notebooks if not (path.parent / e.notebook).exists()]
    if missing:
        raise ConfigError([Problem("notebooks", f"notebook file(s) not found next to it: {missing}")], path)
    return pipeline


def declared_parameters(notebook: Path) -> dict[str, str]:
    """Names and declared types of the notebook's ``parameters`` cell (papermill inspection)."""
    import papermill as pm

    return {name: info.get("inferred_type_name", "None") for name, info in pm.inspect_notebook(str(notebook)).items()}


def notebook_parameters(notebook: Path, own: Mapping[str, Any], standard: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters to pass: the declared standard ones plus ``own``.

    Raises
    ------
    PipelineError
        When ``own`` holds a parameter the notebook's ``parameters`` cell does not declare
        (papermill would only warn "Passed unknown parameter").
    """
    declared = declared_parameters(notebook)
    if not declared:
        raise PipelineError(f"{notebook.name} has no cell tagged 'parameters' (notebook contract)")
    unknown = sorted(set(own) - set(declared))
    if unknown:
        raise PipelineError(f"{notebook.name}: unknown parameter(s) {unknown}; it declares {sorted(declared)}")
    return {**{k: v for k, v in standard.items() if k in declared}, **own}


def ensure_kernel(name: str = KERNEL_NAME) -> None:
    """Raise :class:`PipelineError` unless the Jupyter kernel ``name`` is registered."""
    from jupyter_client.kernelspec import KernelSpecManager

    if name not in KernelSpecManager().find_kernel_specs():
        raise PipelineError(f"Jupyter kernel {name!r} is not registered: run `invoke setup` first")


def kernel_config(sockets: Path) -> Any:
    """Kernel manager settings: the local kernel talks to the runner over IPC sockets under ``sockets``.

    Over TCP (Jupyter's default) every kernel warns that its traffic is not encrypted, once per
    notebook, and its ports are open to every local user; IPC sockets are files in a private
    directory. The kernel runs on this machine, so nothing needs TCP.
    """
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}})


def execute(notebook: Path, output: Path, parameters: Mapping[str, Any], kernel: str = KERNEL_NAME) -> None:
    """Execute one notebook with papermill; raise :class:`PipelineError` naming the failing cell."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="labkit-kernel-") as sockets:
        try:
            pm.execute_notebook(str(notebook), str(output), parameters=dict(parameters), kernel_name=kernel,
                                progress_bar=False, cwd=str(paths.repo_root()), config=kernel_config(Path(sockets)))
        except pm.PapermillExecutionError as err:
            raise PipelineError(f"{notebook.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
                                f"(executed copy: {output})") from None


def run_pipeline(env: str, profile: Profile = "quick", *, run_id: str | None = None,
                 only: Sequence[str] = (), data_root: Path | None = None, figures_root: Path | None = None,
                 pipeline_file: Path | None = None, progress: bool = True, share: bool = True,
                 log: Callable[[str], None] = print) -> Manifest:
    """Run the pipeline for ``env`` and ``profile``; return the completed manifest.

    Parameters
    ----------
    env
        Env name in ``envs/`` (validated before anything runs).
    profile
        ``quick`` (few repetitions, for CI) or ``full`` (the thesis' counts).
    only
        Run only notebooks whose file name starts with one of these prefixes (``"00"``).
    share
        Embedded backend: the notebooks share one test bed per env, kept up from one
        notebook to the next (a session, :func:`labkit.testbed.session`, passed to them as
        the parameter ``session``) and torn down when the run ends; ``False``: each
        experiment brings up and tears down its own.

    Raises
    ------
    labkit.config.ConfigError
        Before anything runs, when the env or a notebook's parameters are invalid.
    PipelineError
        When a notebook fails; the manifest is completed first and records the failure.
    """
    env_model = load_env(env)
    pipeline = load_pipeline(pipeline_file)
    ensure_kernel()
    nb_dir = (pipeline_file.parent if pipeline_file else paths.notebooks_dir())
    run_id = run_id or new_run_id()
    run_dir = (data_root or paths.data_dir()) / run_id
    figures = figures_root or paths.figures_dir()
    standard: dict[str, Any] = {"env": env, "profile": profile, "run_id": run_id, "run_dir": str(run_dir),
                                "figures_dir": str(figures), "replot": False}
    entries = [e for e in pipeline.notebooks
               if e.runs_on(env_model.backend.kind) and (not only or e.notebook.startswith(tuple(only)))]
    own = _own_parameters(entries, profile)
    shared = testbed.session(env_model, run_id) if share else testbed.Session("")
    standard["session"] = shared.name
    manifest = Manifest(run_id=run_id, env=env, profile=profile, seed=env_model.seed, parameters=standard,
                        peering=peering_of(env_model))
    manifest.notebooks = [
        NotebookRecord(notebook=e.notebook, output=str(run_dir / "notebooks" / e.notebook),
                       parameters=notebook_parameters(nb_dir / e.notebook, own[e.notebook], standard))
        for e in entries
    ]
    manifest.write(run_dir)
    log(f"[lab] run {run_id}: env={env} ({env_model.backend.kind}) profile={profile}, "
        f"{len(entries)} notebook(s) -> {run_dir}")
    try:
        try:
            _run_records(manifest, nb_dir, run_dir, progress, log)
        finally:
            shared.close(keep_log=run_dir / "notebooks" / SHARED_LOG, log=log)
        _write_reports(entries, run_dir / "notebooks", figures, log)
        _check_bounds(manifest, env_model, run_dir, log)
        manifest.status = "ok"
    except PipelineError as err:
        manifest.status, manifest.error = "failed", str(err)
        raise
    except KeyboardInterrupt:
        manifest.status, manifest.error = "interrupted", "interrupted by the user"
        raise
    except Exception as err:
        manifest.status, manifest.error = "failed", "".join(traceback.format_exception_only(err)).strip()
        raise
    finally:
        for record in manifest.notebooks:
            if record.status in ("pending", "running"):
                record.status = "skipped" if record.status == "pending" else "failed"
        manifest.ended_utc = utcnow()
        manifest.write(run_dir)
        log(f"[lab] run {run_id}: {manifest.status}; manifest {run_dir / 'manifest.json'}")
    return manifest


def _own_parameters(entries: Sequence[Entry], profile: str) -> dict[str, dict[str, Any]]:
    """Each notebook's own parameters for ``profile`` (:meth:`Entry.own_parameters`).

    Raises
    ------
    labkit.config.ConfigError
        With every bad parameter of every notebook, before anything runs.
    """
    own, problems = {}, []
    for entry in entries:
        try:
            own[entry.notebook] = entry.own_parameters(profile)
        except ConfigError as err:
            problems += [Problem(f"{entry.notebook}: {p.path}" if p.path else entry.notebook, p.message)
                         for p in err.problems]
    if problems:
        raise ConfigError(problems, f"{PIPELINE_FILE}, profile {profile}")
    return own


def _run_records(manifest: Manifest, nb_dir: Path, run_dir: Path, progress: bool,
                 log: Callable[[str], None]) -> None:
    """Execute each pending notebook of ``manifest`` in order, updating the manifest."""
    from tqdm.auto import tqdm

    bar = tqdm(manifest.notebooks, desc="pipeline", unit="nb", disable=not progress)
    for record in bar:
        bar.set_postfix_str(record.notebook)
        record.status, record.started_utc = "running", utcnow()
        manifest.write(run_dir)
        start = time.monotonic()
        try:
            execute(nb_dir / record.notebook, Path(record.output), record.parameters)
        except PipelineError as err:
            record.status, record.error = "failed", str(err)
            raise
        finally:
            record.seconds = round(time.monotonic() - start, 3)
            record.ended_utc = utcnow()
        record.status = "ok"
        log(f"[lab] {record.notebook}: ok in {record.seconds:.1f} s")
        manifest.write(run_dir)


def _check_bounds(manifest: Manifest, env: Env, run_dir: Path, log: Callable[[str], None]) -> None:
    """Check the env's bounds against the run's metrics; record the verdicts; fail on a broken bound."""
    verdicts = bounds.check(env.bounds, run_dir)
    manifest.thresholds = [v.as_dict() for v in verdicts]
    for verdict in verdicts:
        log(f"[lab] bound {verdict}")
    broken = bounds.failed(verdicts)
    if broken:
        raise PipelineError(f"{len(broken)} bound(s) of env {env.name!r} failed: " + "; ".join(map(str, broken)))


def _write_reports(entries: Sequence[Entry], executed_dir: Path, figures: Path, log: Callable[[str], None]) -> None:
    """Turn each executed ``report: true`` notebook into ``figures/report.html`` (nbconvert)."""
    from labkit import report

    for entry in entries:
        if entry.report:
            out = report.to_html(executed_dir / entry.notebook, figures / report.REPORT_HTML)
            log(f"[lab] report: {out}")


def latest_run(data_root: Path | None = None) -> Path:
    """The newest run folder under ``data/`` whose manifest says ``ok``."""
    root = data_root or paths.data_dir()
    runs = sorted((p for p in root.glob("*/manifest.json")), reverse=True)
    for path in runs:
        if Manifest.read(path.parent).status == "ok":
            return path.parent
    raise PipelineError(f"no completed run under {root}: run `invoke lab` first")


def rebuild_figures(run_dir: Path | None = None, *, figures_root: Path | None = None,
                    pipeline_file: Path | None = None, progress: bool = True,
                    log: Callable[[str], None] = print) -> list[Path]:
    """Redraw ``figures/`` from one run's tables alone (``replot=True``); return the figures written."""
    run_dir = run_dir or latest_run()
    manifest = Manifest.read(run_dir)
    pipeline = load_pipeline(pipeline_file)
    ensure_kernel()
    nb_dir = pipeline_file.parent if pipeline_file else paths.notebooks_dir()
    figures = figures_root or paths.figures_dir()
    ran = {r.notebook: r for r in manifest.notebooks if r.status == "ok"}
    entries = [e for e in pipeline.notebooks if e.figures and e.notebook in ran]
    before = {p: p.stat().st_mtime for p in figures.glob("*")} if figures.exists() else {}
    from tqdm.auto import tqdm

    for entry in tqdm(entries, desc="figures", unit="nb", disable=not progress):
        # the run folder given, not the one recorded: a run copied or moved elsewhere redraws from its tables
        params = {**ran[entry.notebook].parameters, "run_dir": str(run_dir), "replot": True,
                  "figures_dir": str(figures)}
        params = {k: v for k, v in params.items() if k in declared_parameters(nb_dir / entry.notebook)}
        execute(nb_dir / entry.notebook, run_dir / "notebooks" / "replot" / entry.notebook, params)
        log(f"[figures] {entry.notebook}: redrawn from {run_dir.name}")
    _write_reports(entries, run_dir / "notebooks" / "replot", figures, log)
    return sorted(p for p in figures.glob("*") if before.get(p) != p.stat().st_mtime)
