"""The one shape of an experiment module, and the parameters model every experiment extends.

An experiment module (``labkit/experiments/<name>.py``) has:

- ``Parameters``: a :class:`Parameters` model. Defaults are the thesis' values where it gives
  them (:func:`thesis`, with the reason), the kit's choices otherwise (:func:`param`);
  ``notebooks/pipeline.yaml`` overrides them per profile and the runner checks the overrides
  against the model before anything runs;
- ``NAME``: the experiment's name, its module's (``__name__``'s last part): its first table, its
  headline metrics and its comparison are filed under it; ``TABLES``: every table ``measure`` returns;
- ``beds(env, params)``: the envs of the test beds it measures on, in order (usually ``[env]``);
- ``measure(testbed, env, params)``: the measurement on one running test bed of ``beds``;
  returns :data:`Tables` (tidy tables by name);
- ``headline(tables)``: the numbers an env's ``bounds:`` may limit (``labkit.bounds``);
- ``compare(tables)``: the thesis' published numbers beside ours (:func:`labkit.reference.compare`);
- ``fidelity(tables)``: checks that can fail, per figure: what we expect given the thesis' value
  and the known differences, against what we measured (:class:`labkit.fidelity.Check`);
- ``methods(tables)``: per figure, the thesis' method, ours, and the differences of environment
  and implementation that remain (:class:`labkit.fidelity.Method`);
- ``figures(tables, out_dir)``: draws its figures, returns ``{figure id: path}``;
- ``summary(tables)``: the small tables a reader looks at under the figures.

A module may set ``TESTBED = "created"``: then ``measure`` gets a driver that is not up and
brings each test bed up and down itself (the scalability sweep measures exactly that).
:func:`labkit.experiments.record` drives all of this; the notebooks call it and
:func:`labkit.experiments.plot`, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from labkit.config import Env
from labkit.fidelity import Check, Method
from labkit.testbed import Testbed

#: An experiment's tidy tables (``labkit.results``) by table name.
Tables = dict[str, pd.DataFrame]

#: Where a parameter's default comes from: the thesis, the software the thesis names (its
#: default, the thesis being silent), or the kit's own choice.
Source = Literal["thesis", "software default", "kit"]

#: How an experiment gets its test bed: up for it (``running``), or a driver it brings up itself.
TestbedMode = Literal["running", "created"]


def param(default: Any, why: str, *, source: Source = "kit", **constraints: Any) -> Any:
    """A parameter field: its default, why that value, where it comes from, and pydantic constraints."""
    return Field(default, description=why, json_schema_extra={"source": source}, **constraints)


def thesis(default: Any, why: str, **constraints: Any) -> Any:
    """A parameter whose default is the thesis' value; ``why`` cites where the thesis gives it."""
    return param(default, why, source="thesis", **constraints)


class Parameters(BaseModel):
    """Base of every experiment's parameters: typed, frozen, unknown names refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def why(cls, name: str) -> str:
        """Why parameter ``name`` defaults to what it does (``KeyError`` naming it when unknown)."""
        if name not in cls.model_fields:
            raise KeyError(f"{cls.__module__}.{cls.__name__} has no parameter {name!r}")
        return cls.model_fields[name].description or ""

    @classmethod
    def source(cls, name: str) -> Source:
        """Where parameter ``name``'s default comes from (:data:`Source`)."""
        if name not in cls.model_fields:
            raise KeyError(f"{cls.__module__}.{cls.__name__} has no parameter {name!r}")
        extra = cls.model_fields[name].json_schema_extra
        return extra.get("source", "kit") if isinstance(extra, dict) else "kit"  # type: ignore[return-value]

    def table(self) -> pd.DataFrame:
        """Every parameter: its value in this run, its default, where that comes from and why."""
        rows = [{"parameter": name, "value": getattr(self, name), "default": field.default,
                 "source": self.source(name), "why": field.description or ""}
                for name, field in type(self).model_fields.items()]
        return pd.DataFrame(rows).set_index("parameter")


class ExperimentModule(Protocol):
    """What :func:`labkit.experiments.record` and :func:`~labkit.experiments.plot` use of a module."""

    Parameters: type[Parameters]
    NAME: str
    TABLES: tuple[str, ...]

    def beds(self, env: Env, params: Any) -> list[Env]: ...

    def measure(self, testbed: Testbed, env: Env, params: Any) -> Tables: ...

    def headline(self, tables: Tables) -> dict[str, float]: ...

    def compare(self, tables: Tables) -> pd.DataFrame: ...

    def fidelity(self, tables: Tables) -> list[Check]: ...

    def methods(self, tables: Tables) -> list[Method]: ...

    def figures(self, tables: Tables, out_dir: Path) -> dict[str, Path]: ...

    def summary(self, tables: Tables) -> Mapping[str, pd.DataFrame]: ...
