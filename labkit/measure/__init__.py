"""Collectors: they observe a running test bed and return tidy tables; they never inject.

Every collector has ``start()``, ``stop()`` and ``collect() -> DataFrame`` (tidy rows, see
``labkit.results``); :func:`collecting` starts several around a block and always stops them.
The collectors: :mod:`~labkit.measure.ping` (RTT), :mod:`~labkit.measure.nodes` (node
readiness by watch and by polling), :mod:`~labkit.measure.pods` (pod events) and, from a
recorder's frames, :mod:`~labkit.measure.stream` (gaps and downtimes).
"""

from labkit.measure.base import Collector, CollectorError, collecting

__all__ = ["Collector", "CollectorError", "collecting"]
