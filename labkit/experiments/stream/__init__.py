"""Stream reaction time (thesis 7.4, Figs. 7.3 and 7.4) and island operation (6.1, Fig. 6.2).

One harness for the four PMU-stream experiments (:mod:`~labkit.experiments.pod_failure`,
:mod:`~labkit.experiments.cluster_failure`, :mod:`~labkit.experiments.island`,
:mod:`~labkit.experiments.multilevel`): it deploys the env's synchrophasor chain
(:mod:`labkit.deploy.chain`: PMUs -> low PDC -> high PDC, with their DB domains) on a running
test bed, records every frame of the low and the high PDC's output with a recorder pod
(:mod:`labkit.deploy.recorders`), injects a fault through :mod:`labkit.faults` and keeps
recording until the stream is back. The chain's pods run with a timer profile
(:mod:`labkit.workloads.timers`: ``thesis``, Kubernetes' and openPDC's defaults; ``fast``, the
kit's). The package: ``envs`` (the env variants each scenario runs on), ``scenarios`` (the
measurements), ``phases`` (milestones and the downtime's split), ``summary`` (tables, the
decomposition, the comparison with the thesis), ``figures``.

- **pod failure** (Fig. 7.3, notebook 40; on the 6.2 implementation, notebook 80): the low PDC's
  liveness probe starts failing once its container has run ``after_s`` seconds (the thesis: 60 s);
  the kubelet of the cluster that really runs it kills and restarts the container. The thesis'
  protocol fails one pod again and again; a fresh pod per repetition keeps the kubelet's back-off away.
- **cluster failure** (Fig. 7.4, notebook 50): every VM of the cluster running the low PDC
  loses its lab interface; the owner sees the virtual node NotReady, evicts the pod, and the
  Deployment recreates it on another cluster.
- **island** (Fig. 6.2, notebook 60): the cluster running the low PDC *and its PMU* is cut off
  for ``isolation_s`` seconds and comes back; frames seen at both PDCs before, during, after.

Downtime is the thesis' definition (7.4): timestamp of the first frame of the new stream minus
that of the last frame of the old one (:func:`labkit.measure.stream.stream_downtime`), at the
low PDC and at the high PDC (where the thesis measured: "before reaching its intended
application"). Each stream's downtime is split into phases at *measured* milestones, each
taken from an observation of this run (:data:`~labkit.experiments.stream.phases.MILESTONES`):

==============  ==================================================================================
phase           ends when (source)
==============  ==================================================================================
detection       pod failure: the old PDC logs SIGTERM (the liveness probe's failures until the
                kill; *before* the downtime, not part of it); cluster failure: the owner sees the
                virtual node NotReady (node watch, ms)
eviction        cluster failure: the replacement pod appears in the owner (pod watch, ms)
termination     the old PDC logs ``stopped`` (its container exits; pod failure only)
restart         the new PDC process logs ``process started`` (its log, ms; includes the kubelet's
                restart back-off)
startup         the configuration fetch starts (the PDC's ``config-fetch`` line minus the duration it
                measured), or without that line the PDC logs ``listening``
config fetch    the PDC logs ``config-fetch ... seconds=<s>`` (:func:`labkit.grid.pdc_config.parse_fetch_line`):
                from its DB domain (the thesis), or from its ConfigMap file (``with_db=False``)
reconnect       the PDC logs ``input <pmu> connected`` (CFG-2 of its input received)
readiness       the owner sees the new pod Ready (pod watch, ms): its Service sends clients to it
high reconnect  high stream only: the high PDC logs ``input <low PDC> connected``
first frame     the stream's recorder receives the first frame of the new stream (its timestamp)
==============  ==================================================================================

Phases are consecutive, so they add up to the downtime exactly; a milestone observed out of
order (log lines and watch events come from different clocks' paths) is clamped into its
neighbours' interval, and the raw timestamps are kept in the table. A milestone expected but
not observed is named in the rows' ``missing`` label (:func:`~.summary.missing_table`).
"""

from labkit.experiments.stream.common import ProfiledParameters, StreamError
from labkit.experiments.stream.envs import MULTILEVEL_CI, colocated_env, kept, movable_low_env, reduced_env
from labkit.experiments.stream.figures import (plot_cluster_failure, plot_downtime, plot_island, plot_pod_failure,
                                               plot_sweep)
from labkit.experiments.stream.phases import (LOG_EVENTS, MILESTONES, PHASES, downtime_after, parse_log, pdc_logs,
                                              phase_split, repetition_rows, restart_logs, stream_milestones)
from labkit.experiments.stream.scenarios import (cluster_failure_once, experiment_table, island_rows,
                                                 measure_cluster_failure, measure_island, measure_pod_failure,
                                                 pod_failure_once, rate_rows, ready_again, replace_pod,
                                                 running_address, wait_single_pod)
from labkit.experiments.stream.summary import (COMPOSITION, STREAMS, compare_cluster_failure, compare_pod_failure,
                                               composed_total, composition, concat, decomposition, downtimes,
                                               iqr_text, island_table, median_of, missing_table, phase_table,
                                               profiles, repetitions_table, sweep_table, table, timer_rows,
                                               timers_frame, timers_table)

__all__ = [
    "ProfiledParameters", "StreamError",
    # envs
    "MULTILEVEL_CI", "colocated_env", "kept", "movable_low_env", "reduced_env",
    # figures
    "plot_cluster_failure", "plot_downtime", "plot_island", "plot_pod_failure", "plot_sweep",
    # phases
    "LOG_EVENTS", "MILESTONES", "PHASES", "downtime_after", "parse_log", "pdc_logs", "phase_split",
    "repetition_rows", "restart_logs", "stream_milestones",
    # scenarios
    "cluster_failure_once", "experiment_table", "island_rows", "measure_cluster_failure", "measure_island",
    "measure_pod_failure", "pod_failure_once", "rate_rows", "ready_again", "replace_pod", "running_address",
    "wait_single_pod",
    # summary
    "COMPOSITION", "STREAMS", "compare_cluster_failure", "compare_pod_failure", "composed_total", "composition",
    "concat", "decomposition", "downtimes", "iqr_text", "island_table", "median_of", "missing_table", "phase_table",
    "profiles", "repetitions_table", "sweep_table", "table", "timer_rows", "timers_frame", "timers_table",
]
