"""Timer profiles of the synchrophasor chain's pods: probes, termination, and the PDCs' reconnect.

A :class:`Timers` is every timer a PMU/PDC pod runs with that decides how fast a failed PDC
streams again: its liveness probe (the thesis' pod failure makes it fail, 7.4.1), its readiness
probe (the Service sends clients to it only once Ready), its termination grace period, and how
often a PDC's input reconnects to a lost upstream. :func:`labkit.workloads.render.grid` renders
the same objects from it on both backends.

Two named profiles, side by side:

- ``thesis`` (:class:`Timers`' own defaults): what the thesis ran. It names none of these
  timers, so each is the default of the software it names: Kubernetes v1.24 (the thesis' k3s
  v1.24.17+k3s1) for the probes and the grace period, openPDC (the thesis' PDC v2.4) for the
  reconnect. Each field's ``why`` cites the source file and line.
- ``fast`` (:class:`FastTimers`): the kit's own, tuned for a short downtime.

The kubelet's container restart back-off is not a field: Kubernetes v1.24 has no setting for it
(:data:`KUBELET_BACKOFF_INITIAL_S`, :data:`KUBELET_BACKOFF_MAX_S`); :func:`restarts_without_backoff`
says when it applies to one pod failing again and again, as in the thesis' protocol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FAST", "KUBELET_BACKOFF_INITIAL_S", "KUBELET_BACKOFF_MAX_S", "KUBELET_BACKOFF_RESET_S", "PROFILES",
           "THESIS", "FastTimers", "ProfileName", "Timers", "expected_backoffs", "profile", "profiles_table",
           "restarts_without_backoff"]

#: Where a setting's value comes from (as :data:`labkit.experiments.base.Source`).
Source = Literal["thesis", "software default", "kit"]
#: The names of the timer profiles.
ProfileName = Literal["thesis", "fast"]

_K8S = "Kubernetes v1.24.17"
_DEFAULTS = "pkg/apis/core/v1/defaults.go"

#: The kubelet's first restart back-off (s): ``backOffPeriod``, pkg/kubelet/kubelet.go:167 (v1.24.17), doubled at
#: every restart by client-go's flowcontrol.Backoff.Next (util/flowcontrol/backoff.go:93-106).
KUBELET_BACKOFF_INITIAL_S = 10.0
#: Its cap (s): ``MaxContainerBackOff``, pkg/kubelet/kubelet.go:132; both are constants in v1.24 (no flag, no
#: KubeletConfiguration field), wired at kubelet.go:769.
KUBELET_BACKOFF_MAX_S = 300.0
#: A back-off entry not advanced for twice the cap starts over at the initial value (backoff.go:179-181).
KUBELET_BACKOFF_RESET_S = 2 * KUBELET_BACKOFF_MAX_S


def _setting(default: Any, why: str, source: Source, **constraints: Any) -> Any:
    """A field with its default, why that value, and where it comes from (``json_schema_extra.source``)."""
    return Field(default, description=why, json_schema_extra={"source": source}, **constraints)


def _k8s(default: Any, why: str, **constraints: Any) -> Any:
    return _setting(default, f"{why} ({_K8S})", "software default", **constraints)


def _kit(default: Any, why: str, **constraints: Any) -> Any:
    return _setting(default, why, "kit", **constraints)


class Timers(BaseModel):
    """The timers of the chain's pods; the defaults are the ``thesis`` profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- liveness: an exec probe that fails once the fault's file exists (the thesis' customised probe)
    liveness_period_s: int = _k8s(10, f"the thesis gives no period: Probe.periodSeconds defaults to 10, "
                                      f"{_DEFAULTS}:213-215", ge=1)
    liveness_timeout_s: int = _k8s(1, f"Probe.timeoutSeconds defaults to 1, {_DEFAULTS}:210-212", ge=1)
    liveness_failure_threshold: int = _k8s(3, f"Probe.failureThreshold defaults to 3, {_DEFAULTS}:219-221: the "
                                              "kill comes at the third failing probe", ge=1)
    liveness_initial_delay_s: int = _k8s(0, "Probe.initialDelaySeconds has no default (0); the kubelet skips "
                                            "probes until the container has run that long, "
                                            "pkg/kubelet/prober/worker.go:246-249", ge=0)
    # successThreshold of a liveness probe must be 1 (pkg/apis/core/validation/validation.go:3068-3069): not a field

    # -- readiness: TCP on the C37.118 port; clients reach the pod through its Service only once Ready
    readiness_probe: bool = _kit(True, "the thesis names no readiness probe; the kit keeps its TCP probe on the "
                                       "C37.118 port with every field at Kubernetes' default (False: none, the "
                                       "pod is Ready once its container runs)")
    readiness_period_s: int = _k8s(10, f"Probe.periodSeconds defaults to 10, {_DEFAULTS}:213-215; after a "
                                       "restart the kubelet probes once at once "
                                       "(pkg/kubelet/prober/prober_manager.go:262-275), then every period "
                                       "(prober/worker.go:141)", ge=1)
    readiness_timeout_s: int = _k8s(1, f"Probe.timeoutSeconds defaults to 1, {_DEFAULTS}:210-212", ge=1)
    readiness_failure_threshold: int = _k8s(3, f"Probe.failureThreshold defaults to 3, {_DEFAULTS}:219-221", ge=1)
    readiness_success_threshold: int = _k8s(1, f"Probe.successThreshold defaults to 1, {_DEFAULTS}:216-218", ge=1)
    readiness_initial_delay_s: int = _k8s(0, "Probe.initialDelaySeconds has no default (0), "
                                             "prober/worker.go:246-249", ge=0)

    # -- termination
    termination_grace_s: int = _k8s(30, f"PodSpec.terminationGracePeriodSeconds defaults to 30, {_DEFAULTS}:201-204 "
                                        "(k8s.io/api core/v1/types.go:2721); a liveness kill uses it, the probe's "
                                        "own field being off (feature ProbeTerminationGracePeriod defaults to "
                                        "false, pkg/features/kube_features.go:970; "
                                        "pkg/kubelet/kuberuntime/kuberuntime_container.go:679-695)", ge=0)

    # -- the PDCs' inputs: how a PDC reconnects to a lost upstream (a PMU or the low PDC)
    pdc_reconnect_s: float = _setting(
        1.5, "openPDC (the thesis' PDC, v2.4) retries an input every ConnectionAttemptInterval, its "
             "'delayedConnectionInterval', default 1.5 s, fixed: GSF PhasorProtocolAdapters/"
             "PhasorMeasurementMapper.cs (Initialize) and GSF.TimeSeries/Adapters/InputAdapterBase.cs "
             "(a failed attempt restarts the same timer); public source of GSF, the library openPDC is "
             "built on, not the v2.4 release itself, which its documentation does not describe",
        "software default", gt=0)
    pdc_reconnect_max_s: float = _setting(
        1.5, "openPDC's reconnect interval does not grow (no back-off): a failed attempt re-enables the same "
             "connection timer, GSF.TimeSeries/Adapters/InputAdapterBase.cs (AttemptConnectionOperation)",
        "software default", gt=0)

    # -- the kit's PDC itself
    pdc_start_delay_s: float = _kit(0.0, "seconds a PDC waits after its process starts, before it fetches its "
                                         "configuration: 0, the kit's PDC as it is; more emulates a slower "
                                         "start (openPDC's, which the thesis does not give and which cannot "
                                         "run here) for the timer sweep", ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Timers:
        if self.pdc_reconnect_max_s < self.pdc_reconnect_s:
            raise ValueError(f"pdc_reconnect_max_s ({self.pdc_reconnect_max_s}) is shorter than "
                             f"pdc_reconnect_s ({self.pdc_reconnect_s})")
        return self

    @classmethod
    def why(cls, name: str) -> str:
        """Why setting ``name`` has its default (``KeyError`` naming it when unknown)."""
        return _field(cls, name).description or ""

    @classmethod
    def source(cls, name: str) -> Source:
        """Where setting ``name``'s default comes from."""
        extra = _field(cls, name).json_schema_extra
        return extra.get("source", "kit") if isinstance(extra, dict) else "kit"  # type: ignore[return-value]

    def liveness(self) -> dict[str, Any]:
        """The liveness probe's timing fields (``livenessProbe`` without its handler)."""
        return {"initialDelaySeconds": self.liveness_initial_delay_s, "periodSeconds": self.liveness_period_s,
                "timeoutSeconds": self.liveness_timeout_s, "successThreshold": 1,
                "failureThreshold": self.liveness_failure_threshold}

    def readiness(self) -> dict[str, Any] | None:
        """The readiness probe's timing fields (``None``: no readiness probe)."""
        if not self.readiness_probe:
            return None
        return {"initialDelaySeconds": self.readiness_initial_delay_s, "periodSeconds": self.readiness_period_s,
                "timeoutSeconds": self.readiness_timeout_s, "successThreshold": self.readiness_success_threshold,
                "failureThreshold": self.readiness_failure_threshold}


def _field(cls: type[BaseModel], name: str) -> Any:
    if name not in cls.model_fields:
        raise KeyError(f"{cls.__module__}.{cls.__name__} has no setting {name!r}")
    return cls.model_fields[name]


class FastTimers(Timers):
    """The ``fast`` profile: the kit's timers, each chosen for a short downtime (the rest as :class:`Timers`)."""

    liveness_period_s: int = _kit(2, "detection happens before the downtime; every 2 s keeps exec probes cheap "
                                     "on a loaded machine", ge=1)
    liveness_failure_threshold: int = _kit(3, "three failures, as Kubernetes: a slow exec on a busy machine must "
                                              "not restart a healthy PDC", ge=1)
    readiness_period_s: int = _kit(1, "the shortest period Kubernetes allows: a restarted PDC is Ready within 1 s "
                                      "of listening", ge=1)
    readiness_initial_delay_s: int = _kit(0, "no delay: the kubelet's immediate probe after a restart may already "
                                             "find the PDC listening", ge=0)
    termination_grace_s: int = _kit(5, "the PDC stops on SIGTERM at once; 5 s bounds a stuck one", ge=0)
    pdc_reconnect_s: float = _kit(0.1, "an input retries every 0.1 s (a connect to a local Service is cheap), "
                                       "so the high PDC is back at most 0.1 s after the low one serves", gt=0)
    pdc_reconnect_max_s: float = _kit(0.1, "fixed, as openPDC's, but 15 times shorter", gt=0)


#: The two profiles' timers.
THESIS = Timers()
FAST = FastTimers()
PROFILES: dict[str, Timers] = {"thesis": THESIS, "fast": FAST}


def profile(name: str) -> Timers:
    """The timers of profile ``name`` (``KeyError`` naming the profiles when unknown)."""
    if name not in PROFILES:
        raise KeyError(f"no timer profile {name!r}; profiles: {sorted(PROFILES)}")
    return PROFILES[name]


def profiles_table(profiles: dict[str, Timers] | None = None) -> pd.DataFrame:
    """Every setting: its value in each profile, where that value comes from and why (one row per setting)."""
    profiles = profiles if profiles is not None else PROFILES
    rows = []
    for name in Timers.model_fields:
        row: dict[str, Any] = {"setting": name}
        for label, timers in profiles.items():
            row[label] = getattr(timers, name)
            row[f"{label} source"] = type(timers).source(name)
            row[f"{label} why"] = type(timers).why(name)
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting")


def expected_backoffs(cycles_s: Sequence[float], initial_s: float = KUBELET_BACKOFF_INITIAL_S,
                      max_s: float = KUBELET_BACKOFF_MAX_S) -> list[bool]:
    """Which restarts of one container the kubelet delays, given the seconds between consecutive exits.

    ``cycles_s[0]`` is ignored (the first restart has no previous instance); ``cycles_s[k]`` is
    the time from exit ``k - 1`` to exit ``k``. The kubelet (v1.24, ``doBackOff``,
    pkg/kubelet/kuberuntime/kuberuntime_manager.go:944-973) kills a container that failed its
    liveness probe and starts it again in the same sync, unless the previous instance exited less
    than the current back-off ago: the first restart finds no previous instance; the second
    creates the back-off at ``initial_s``; each later one doubles it up to ``max_s``
    (client-go util/flowcontrol/backoff.go:93-106), and an entry not advanced for twice the cap
    starts over (backoff.go:179-181).
    """
    out, backoff = [], None
    for k, cycle in enumerate(cycles_s):
        if k == 0:
            out.append(False)
            continue
        if backoff is None or cycle > KUBELET_BACKOFF_RESET_S:
            out.append(False)
            backoff = initial_s
            continue
        out.append(cycle < backoff)
        backoff = min(backoff * 2, max_s)
    return out


def restarts_without_backoff(cycle_s: float, initial_s: float = KUBELET_BACKOFF_INITIAL_S,
                             max_s: float = KUBELET_BACKOFF_MAX_S) -> float:
    """How many restarts of one container, each ``cycle_s`` after the previous exit, the kubelet starts at once.

    :func:`expected_backoffs` with equal cycles: restart ``k >= 3`` waits when
    ``min(initial_s * 2**(k-3), max_s) > cycle_s``. ``math.inf``: never (a cycle of at least the
    cap, or longer than :data:`KUBELET_BACKOFF_RESET_S`, which starts the back-off over).
    """
    if cycle_s <= 0:
        raise ValueError(f"cycle_s must be > 0, got {cycle_s!r}")
    if cycle_s >= max_s or cycle_s > KUBELET_BACKOFF_RESET_S:
        return math.inf
    flags = expected_backoffs([cycle_s] * 64, initial_s, max_s)
    return flags.index(True)
