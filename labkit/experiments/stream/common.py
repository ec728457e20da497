"""What the stream experiments share: their error, the parameters every one of them takes, and the
timer profiles of the two failure experiments (:mod:`labkit.workloads.timers`)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator

from labkit.experiments.base import Parameters, param, thesis
from labkit.workloads.timers import FAST, THESIS, FastTimers, ProfileName, Timers


class StreamError(RuntimeError):
    """A stream did not behave as a scenario needs (the message says which and where)."""


class StreamParameters(Parameters):
    """What every stream experiment is given: where the PDCs' configuration comes from, which clusters."""

    with_db: bool = thesis(True, "the PDCs fetch their configuration from the distributed database at every start "
                                 "(thesis 3.2, 7.4); False: from their ConfigMap file")
    clusters: tuple[str, ...] = param((), "the env's clusters kept (empty: all of them); CI keeps fewer")


class FailureParameters(StreamParameters):
    """A stream experiment that breaks something and waits for the stream to come back."""

    settle_s: float = param(3.0, "seconds after the stream is back before the PDCs' logs are read", ge=0)
    timeout_s: float = param(180.0, "seconds the stream may take to come back before the run fails", gt=0)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of a stream measurement (``measure_pod_failure``, ...) these parameters give."""
        return {"with_db": self.with_db, "settle_s": self.settle_s, "timeout_s": self.timeout_s,
                "run_id": "", "scenario": ""}


class ProfiledParameters(FailureParameters):
    """A failure experiment measured under named timer profiles, one after the other on one test bed."""

    profiles: tuple[ProfileName, ...] = param(("thesis", "fast"), "the timer profiles measured, in this order "
                                              "(labkit.workloads.timers)", min_length=1)
    thesis: Timers = param(THESIS, "the thesis profile: every timer the thesis does not give at the default of the "
                                   "software it names (Kubernetes v1.24, openPDC); each setting's source and why: "
                                   "labkit.workloads.timers.Timers", source="software default")
    fast: FastTimers = param(FAST, "the fast profile: the kit's timers for a short downtime "
                                   "(labkit.workloads.timers.FastTimers)")
    repetitions: dict[ProfileName, int] = param({"thesis": 10, "fast": 10}, "failures per profile (the thesis does "
                                                "not say how many it ran)")

    @field_validator("profiles")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"a profile is named twice: {list(value)}")
        return value

    @field_validator("repetitions")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if v < 1}
        if bad:
            raise ValueError(f"repetitions must be >= 1, got {bad}")
        return value

    @model_validator(mode="after")
    def _counted(self) -> ProfiledParameters:
        missing = [p for p in self.profiles if p not in self.repetitions]
        if missing:
            raise ValueError(f"repetitions gives no count for profile(s) {missing} (profiles: {list(self.profiles)})")
        return self

    def timers(self, profile: str) -> Timers:
        """The timers of ``profile`` in this run."""
        return self.thesis if profile == "thesis" else self.fast
