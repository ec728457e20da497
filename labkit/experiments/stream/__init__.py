"""Stream reaction time (thesis 7.4, Figs. 7.3 and 7.4) and island operation (6.1, Fig. 6.2).

One harness for the four PMU-stream notebooks: it deploys the env's synchrophasor chain
(``labkit.workloads.render``: PMUs -> low PDC -> high PDC) into a running test bed, records
every frame of the low and the high PDC's output with a :mod:`labkit.grid.recorder` pod, injects
a fault through :mod:`labkit.faults` and keeps recording until the stream is back.

- **pod failure** (Fig. 7.3, notebook 40; on the 6.2 implementation, notebook 80): the low PDC's
  liveness probe starts failing once its container has run ``after_s`` seconds (the thesis: 60 s);
  the kubelet of the cluster that really runs it restarts the container.
- **cluster failure** (Fig. 7.4, notebook 50): every VM of the cluster running the low PDC
  loses its lab interface; the owner sees the virtual node NotReady, evicts the pod, and the
  Deployment recreates it on another cluster.
- **island** (Fig. 6.2, notebook 60): the cluster running the low PDC *and its PMU* is cut off
  for ``isolation_s`` seconds and comes back; frames seen at both PDCs before, during, after.

Downtime is the thesis' definition (7.4): timestamp of the first frame of the new stream minus
that of the last frame of the old one (:func:`labkit.measure.stream.stream_downtime`). It is
split into phases at *measured* milestones, each taken from an observation of this run:

=============  ===================================================================================
phase          ends when (source)
=============  ===================================================================================
detection      pod failure: the old stream's last frame after the probe started failing
               (recorder; *before* the downtime, not part of it); cluster failure: the owner sees
               the virtual node NotReady (node watch, ms)
eviction       cluster failure: the replacement pod appears in the owner (pod watch, ms)
restart        the new PDC process logs ``process started`` (its log, ms)
startup        the configuration fetch starts (the PDC's ``config-fetch`` line minus the duration it
               measured), or without that line the PDC logs ``listening``
config fetch   the PDC logs ``config-fetch ... seconds=<s>`` (:func:`labkit.grid.config.parse_fetch_line`):
               from its DB domain (the thesis), or from its ConfigMap file (``with_db=False``)
reconnect      the PDC logs ``input <pmu> connected`` (CFG-2 of its input received; includes binding
               its output and the DNS lookup of the input)
first frame    the recorder receives the first frame of the new stream (its timestamp)
=============  ===================================================================================

Phases are consecutive, so they add up to the downtime exactly; a milestone observed out of
order (log lines and watch events come from different clocks' paths) is clamped into its
neighbours' interval, and the raw timestamps are kept in the table.
"""

from labkit.experiments.stream.chain import (Chain, apply_object, chain_domains, chain_of, deploy_chain,
                                             deploy_databases, grid_clusters, home_pods, hosting_cluster,
                                             load_runtime, pod_namespace, prepare, remove_chain, wait_databases,
                                             wait_ready)
from labkit.experiments.stream.common import DOWNTIME_THRESHOLD_S, INSTANCE, RECORDER_NAMESPACE, StreamError
from labkit.experiments.stream.envs import MULTILEVEL_CI, colocated_env, kept, movable_low_env, reduced_env
from labkit.experiments.stream.phases import (LOG_EVENTS, PHASES, downtime_after, parse_log, pdc_logs, phase_split,
                                              repetition_rows, restart_logs)
from labkit.experiments.stream.recorders import (REC_OUT, REC_STATUS, REC_STOP, RecorderPod,
                                                 recorder_manifest, service_host, start_recorder, start_recorders,
                                                 stop_recorder, wait_recovered, wait_streaming)
from labkit.experiments.stream.scenarios import (cluster_failure_once, experiment_table, island_rows,
                                                 measure_cluster_failure, measure_island, measure_pod_failure,
                                                 pod_failure_once, rate_rows, run_cluster_failure, run_island,
                                                 replace_pod, run_pod_failure, running_address, wait_node_ready,
                                                 wait_single_pod)
from labkit.experiments.stream.summary import (COMPOSITION, compare_cluster_failure, compare_pod_failure, composition,
                                               downtimes, island_table, phase_table, plot_downtime, plot_island, table)

__all__ = [
    # common
    "DOWNTIME_THRESHOLD_S", "INSTANCE", "RECORDER_NAMESPACE", "StreamError",
    # envs
    "MULTILEVEL_CI", "colocated_env", "kept", "movable_low_env", "reduced_env",
    # chain
    "Chain", "apply_object", "chain_domains", "chain_of", "deploy_chain", "deploy_databases", "grid_clusters",
    "home_pods", "hosting_cluster", "load_runtime", "pod_namespace", "prepare", "remove_chain", "wait_databases",
    "wait_ready",
    # recorders
    "REC_OUT", "REC_STATUS", "REC_STOP", "RecorderPod", "recorder_manifest", "service_host",
    "start_recorder", "start_recorders", "stop_recorder", "wait_recovered", "wait_streaming",
    # phases
    "LOG_EVENTS", "PHASES", "downtime_after", "parse_log", "pdc_logs", "phase_split", "repetition_rows",
    "restart_logs",
    # scenarios
    "cluster_failure_once", "experiment_table", "island_rows", "measure_cluster_failure", "measure_island",
    "measure_pod_failure", "pod_failure_once", "rate_rows", "replace_pod", "run_cluster_failure", "run_island",
    "run_pod_failure", "running_address", "wait_node_ready", "wait_single_pod",
    # summary
    "COMPOSITION", "compare_cluster_failure", "compare_pod_failure", "composition", "downtimes", "island_table",
    "phase_table", "plot_downtime", "plot_island", "table",
]
