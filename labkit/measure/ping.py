"""Round-trip time with ``ping``, as the thesis measured Tables 7.2-7.4 (~1000 probes each).

The source is anything with the ``Host.ping`` method of ``labkit.testbed.base`` (a VM, or
a pod wrapped as a host), so the same collector measures VM-to-VM, pod-to-pod within a
cluster and pod-to-pod across a peering, on both backends.
"""

from __future__ import annotations

from datetime import datetime, timezone
import pandas as pd

from labkit.measure.base import BackgroundCollector
from labkit.results import tidy
from labkit.testbed import Host


class PingCollector(BackgroundCollector):
    """``count`` probes ``interval`` seconds apart from ``source`` to ``target``.

    Rows: metric ``rtt`` (unit ``ms``) per received probe with label ``seq``, plus one row
    of metric ``loss`` (unit ``ratio``); labels ``source`` and ``target`` on every row.
    """

    name = "ping"

    def __init__(self, source: Host, target: str, *, cluster: str, count: int = 1000, interval: float = 0.2,
                 **keys: str) -> None:
        super().__init__()
        if count < 1 or interval <= 0:
            raise ValueError(f"count must be >= 1 and interval > 0, got {count}, {interval}")
        self.source, self.target, self.cluster = source, target, cluster
        self.count, self.interval, self.keys = count, interval, keys

    def run(self) -> None:
        start = datetime.now(timezone.utc)
        result = self.source.ping(self.target, count=self.count, interval=self.interval,
                                  timeout=self.count * self.interval + 10)
        labels = {"source": self.source.name, "target": self.target}
        for seq, rtt in enumerate(result.rtt_ms):
            self.emit(t=start + pd.Timedelta(seconds=seq * self.interval), metric="rtt", unit="ms",
                      value=float(rtt), seq=seq, **labels)
        self.emit(t=datetime.now(timezone.utc), metric="loss", unit="ratio", value=result.loss, seq=-1, **labels)

    def stop(self, timeout: float | None = None) -> None:
        """Wait for the probes to finish (``count * interval`` plus a margin)."""
        super().stop(timeout if timeout is not None else self.count * self.interval + 60)

    def collect(self) -> pd.DataFrame:
        """Tidy rows (see the class docstring)."""
        return tidy(self.frame(), cluster=self.cluster, **self.keys)


def summarize_rtt(rows: pd.DataFrame, by: str | list[str] = "source") -> pd.DataFrame:
    """Mean ± std (and n) of ``rtt`` rows per group, as the thesis' tables report them."""
    rtt = rows[rows["metric"] == "rtt"]
    out = rtt.groupby(by)["value"].agg(mean="mean", std="std", n="count").reset_index()
    return out
