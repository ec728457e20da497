"""What the stream experiments share: their error and the parameters every one of them takes."""

from __future__ import annotations

from labkit.experiments.base import Parameters, param, thesis


class StreamError(RuntimeError):
    """A stream did not behave as a scenario needs (the message says which and where)."""


class StreamParameters(Parameters):
    """What every stream experiment is given: where the PDCs' configuration comes from, which clusters."""

    with_db: bool = thesis(True, "the PDCs fetch their configuration from the distributed database at every start "
                                 "(thesis 3.2, 7.4); False: from their ConfigMap file")
    clusters: tuple[str, ...] = param((), "the env's clusters kept (empty: all of them); CI keeps fewer")
