"""Collectors: they observe a running test bed and return tidy tables; they never inject.

Every collector has ``start()``, ``stop()`` and ``collect() -> DataFrame`` (tidy rows, see
``labkit.results``) and is registered by name in :data:`REGISTRY`, so a scenario can name
the measurements it wants. :func:`collecting` starts several around a block and always
stops them.
"""

from labkit.measure import nodes, ping, pods  # noqa: F401  (register the collectors)
from labkit.measure.base import REGISTRY, Collector, CollectorError, collecting, register

__all__ = ["REGISTRY", "Collector", "CollectorError", "collecting", "register"]
