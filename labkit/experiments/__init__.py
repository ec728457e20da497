"""Experiments: the thesis' measurements, each a module of one shape (:mod:`labkit.experiments.base`).

:data:`EXPERIMENTS` is the one table that names every experiment, its notebook, its rows'
``scenario`` and the figures it draws. A notebook's measure cell is one call to :func:`record`
(test bed up or attached, measure, tables, comparison with the thesis, headline numbers for the
bounds) and its plot cell one call to :func:`plot` (figures and summaries from the tables alone).

Adding an experiment: copy a module (``reaction.py`` is the smallest with a fault), a notebook
(``30-reaction.ipynb``), add one :class:`Experiment` row here and one entry to
``notebooks/pipeline.yaml`` (docs/architecture.md shows it).
"""

from __future__ import annotations

import base64
import html
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd
from pydantic import ValidationError

from labkit import bounds, fidelity, reference, results
from labkit.config import ConfigError, Env, Problem, load_env
from labkit.experiments.base import ExperimentModule, Parameters, Tables
from labkit.testbed import off_event_loop, own, running, up_first

__all__ = ["EXPERIMENTS", "Experiment", "Plotted", "by_notebook", "plot", "record"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class Experiment:
    """One experiment: its module, notebook, row label and the figures it draws.

    Attributes
    ----------
    name
        Its module is ``labkit/experiments/<name>.py``; its tables, headline metrics
        (``labkit.bounds``) and comparison are filed under it.
    notebook
        The notebook of ``notebooks/`` that runs it.
    scenario
        The ``scenario`` key column of its rows.
    figures
        The ids of the figures it draws (``Fig. 7.3``), in the thesis' numbering where the thesis has one.
    """

    name: str
    notebook: str
    scenario: str
    figures: tuple[str, ...]

    @property
    def module_name(self) -> str:
        """Its module: ``labkit.experiments.<name>``."""
        return f"labkit.experiments.{self.name}"

    @property
    def module(self) -> ExperimentModule:
        """Its module (imported on first use)."""
        return cast(ExperimentModule, importlib.import_module(self.module_name))

    def parameters(self, values: Mapping[str, Any] | Parameters | None = None) -> Parameters:
        """``values`` checked against the experiment's parameters model (defaults for the rest).

        Raises
        ------
        labkit.config.ConfigError
            Naming the notebook and every bad or unknown parameter.
        """
        model = self.module.Parameters
        if isinstance(values, model):
            return values
        try:
            return model.model_validate(dict(values or {}))
        except ValidationError as err:
            problems = [Problem(".".join(str(p) for p in e["loc"]) or "parameters", e["msg"]) for e in err.errors()]
            raise ConfigError(problems, f"parameters of {self.notebook} ({self.module_name}.Parameters)") from None


#: Every experiment, in the pipeline's order.
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("latency", "20-latency.ipynb", "latency", ("Tables 7.2-7.5",)),
    Experiment("reaction", "30-reaction.ipynb", "reaction", ("Fig. 7.2",)),
    Experiment("pod_failure", "40-pod-failure.ipynb", "pod-failure", ("Fig. 7.3", "Fig. 7.3 sweep")),
    Experiment("cluster_failure", "50-cluster-failure.ipynb", "cluster-failure", ("Fig. 7.4",)),
    Experiment("island", "60-island.ipynb", "island", ("Fig. 6.2",)),
    Experiment("scalability", "70-scalability.ipynb", "scalability", ("eq. 5.1",)),
    Experiment("multilevel", "80-multilevel.ipynb", "multilevel-pod-failure", ("multi-level pod failure",)),
)}


def by_notebook(notebook: str) -> Experiment | None:
    """The experiment ``notebook`` runs (``None``: a notebook of no experiment, e.g. the report)."""
    return next((e for e in EXPERIMENTS.values() if e.notebook == notebook), None)


def _experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise KeyError(f"no experiment {name!r}; experiments: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


@off_event_loop
def measure(name: str, env: Env, params: Parameters, *, session: str = "", log: Log = print) -> Tables:
    """Run experiment ``name`` on each of its test beds (attached to ``session``'s when given); its tables.

    The session's running test bed, when it is one of them, is measured first
    (:func:`~labkit.testbed.up_first`); tables of the same name from several test beds are
    concatenated in the order :func:`beds` gives.
    """
    exp = _experiment(name)
    module = exp.module
    if getattr(module, "TESTBED", "running") == "created":
        with own(env, session=session, log=log) as testbed:
            return module.measure(testbed, env, params)
    beds = module.beds(env, params)
    measured: dict[int, Tables] = {}
    for index in up_first(beds, session):
        with running(beds[index], session=session, log=log) as testbed:
            measured[index] = module.measure(testbed, beds[index], params)
    parts: dict[str, list[pd.DataFrame]] = {}
    for index in sorted(measured):
        for table, frame in measured[index].items():
            parts.setdefault(table, []).append(frame)
    return {table: pd.concat(frames, ignore_index=True) for table, frames in parts.items()}


def record(name: str, env: str | Env, run_dir: str | Path, params: Mapping[str, Any] | Parameters | None = None, *,
           run_id: str = "", session: str = "", log: Log = print) -> Tables:
    """Measure experiment ``name`` on ``env`` and record it in ``run_dir``; return its tables.

    Checks ``params`` against the experiment's model first, then: test beds up (or attached to
    the run's shared one, ``session``), :func:`measure`, every table written (``run_id`` and the
    experiment's ``scenario`` stamped), the comparison with the thesis
    (``run_dir/comparison/<name>.parquet``, when the thesis published a number), the fidelity
    checks and methods (``run_dir/fidelity/``, :func:`labkit.fidelity.write`) and the headline
    numbers for the env's bounds (``run_dir/metrics/<name>.json``).
    """
    exp = _experiment(name)
    checked = exp.parameters(params)
    model = load_env(env) if isinstance(env, str) else env
    module = exp.module
    tables = {table: results.tidy(frame.assign(run_id=run_id, scenario=exp.scenario))
              for table, frame in measure(name, model, checked, session=session, log=log).items()}
    for table, frame in tables.items():
        results.write_table(run_dir, table, frame)
    comparison = module.compare(tables)
    if not comparison.empty:
        reference.write_comparison(Path(run_dir), name, comparison)
    fidelity.write(run_dir, name, *fidelity_of(exp, tables))
    bounds.record(run_dir, name, **module.headline(tables))
    return tables


def fidelity_of(exp: Experiment, tables: Tables) -> tuple[list[fidelity.Check], list[fidelity.Method]]:
    """``exp``'s fidelity checks and methods on ``tables``.

    Raises
    ------
    RuntimeError
        When a check or method names a figure that :data:`EXPERIMENTS` does not give ``exp``.
    """
    checks, methods = exp.module.fidelity(tables), exp.module.methods(tables)
    strays = sorted({item.figure for item in [*checks, *methods]} - set(exp.figures))
    if strays:
        raise RuntimeError(f"{exp.module_name}: fidelity names figures {strays}; EXPERIMENTS says {list(exp.figures)}")
    return checks, methods


def read(name: str, run_dir: str | Path) -> Tables:
    """Experiment ``name``'s tables as a run wrote them."""
    return {table: results.read_table(run_dir, table) for table in _experiment(name).module.TABLES}


@dataclass
class Plotted:
    """What :func:`plot` drew and what a reader looks at under it; shows itself in a notebook."""

    figures: dict[str, Path]
    tables: dict[str, pd.DataFrame]

    def _repr_html_(self) -> str:
        parts = []
        for figure, path in self.figures.items():
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(f"<h4>{html.escape(figure)}</h4><p><code>{html.escape(str(path))}</code></p>"
                         f'<img src="data:image/png;base64,{data}" style="max-width:100%"/>')
        for title, frame in self.tables.items():
            parts.append(f"<h4>{html.escape(title)}</h4>{frame.to_html(float_format=lambda v: f'{v:.4g}')}")
        return "\n".join(parts)

    def __repr__(self) -> str:
        lines = [f"{figure}: {path}" for figure, path in self.figures.items()]
        lines += [f"\n{title}\n{frame.to_string()}" for title, frame in self.tables.items()]
        return "\n".join(lines)


def plot(name: str, run_dir: str | Path, figures_dir: str | Path) -> Plotted:
    """Draw experiment ``name``'s figures from ``run_dir``'s tables alone into ``figures_dir``.

    Returns the figures with the experiment's summaries and its comparison with the thesis.
    """
    exp = _experiment(name)
    module = exp.module
    tables = read(name, run_dir)
    drawn = module.figures(tables, Path(figures_dir))
    if set(drawn) != set(exp.figures):
        raise RuntimeError(f"{exp.module_name} drew {sorted(drawn)}; EXPERIMENTS says {list(exp.figures)}")
    shown = dict(module.summary(tables))
    comparison = reference.read_comparisons(Path(run_dir)).query("experiment == @name")
    if not comparison.empty:
        shown["thesis vs labkit"] = comparison.dropna(axis=1, how="all")
    checks = fidelity.read_checks(run_dir).query("experiment == @name")
    if not checks.empty:
        shown["fidelity checks"] = checks[["figure", "name", "thesis", "expected", "observed", "unit", "spread", "n",
                                           "verdict", "reason"]]
    return Plotted(drawn, shown)
