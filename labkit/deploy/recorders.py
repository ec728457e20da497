"""Recorder pods (:mod:`labkit.grid.recorder`) subscribed to the low and the high PDC's output:
their manifest and files, starting them, waiting until they stream or see the stream come
back (their status file), and stopping them to fetch every frame they recorded.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from labkit.config import Env
from labkit.deploy import RECORDER_NAMESPACE, DeployError
from labkit.deploy.chain import Chain, pod_namespace, prepare
from labkit.grid.recorder import read_frames
from labkit.testbed import Testbed
from labkit.testbed.pods import PodHost, start_pods
from labkit.waiting import poll, wait_until
from labkit.workloads.render import C37118_PORT
from labkit.workloads.timers import FAST, Timers


#: Seconds between a recorder's reconnect attempts (fixed): an observer retries fast, so a downtime it
#: measures is the PDC's, not its own (it adds at most this much to the low PDC's).
RECORDER_RECONNECT_S = 0.1
#: Seconds between data frames that tell a waiting experiment its stream paused and came back
#: (:func:`wait_recovered`). A PDC's restart also drops the recorder's connection, which counts
#: however short the pause; this length matters where the connection hangs (a cut-off cluster), so it
#: stays above the few frames a busy PDC may drop while the fault is still being detected.
RECORDER_GAP_S = 0.5
#: Files of a recorder pod (an emptyDir at /data).
REC_OUT, REC_STOP, REC_STATUS = "/data/frames.csv", "/data/stop", "/data/status.json"


@dataclass
class RecorderPod:
    """A recorder pod subscribed to one PDC's output."""

    stream: str          # "low" or "high"
    cluster: str
    target: str          # host the recorder connects to
    host: PodHost

    def status(self) -> dict[str, Any]:
        """The recorder's status file (frames, last frame time and arrival), empty before the first flush."""
        res = self.host.run(["cat", REC_STATUS], timeout=15)
        if not res.ok or not res.stdout.strip():
            return {}
        try:
            return json.loads(res.stdout)
        except ValueError:
            return {}


def recorder_manifest(name: str, image: str, node: str, target: str, idcode: int) -> dict[str, Any]:
    """A pod on ``node`` recording stream ``idcode`` at ``target``:4712 until ``/data/stop`` exists, then idling
    (for the fetch). ``idcode`` is the PDC's: a C37.118 server obeys only commands addressed to its IDCODE."""
    cmd = (f"python -m labkit.grid.recorder --host {target} --port {C37118_PORT} --idcode {idcode} "
           f"--out {REC_OUT} --stop-file {REC_STOP} --status-file {REC_STATUS} "
           f"--backoff-max {RECORDER_RECONNECT_S} --gap {RECORDER_GAP_S} "
           f"--flush-every 0.5; touch /data/done; sleep infinity")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "labkit-recorder",
                                                  "app.kubernetes.io/part-of": "labkit"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "restartPolicy": "Never",
                     "containers": [{"name": "recorder", "image": image, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sh", "-c", cmd],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}


def start_recorder(testbed: Testbed, env: Env, stream: str, cluster: str, target: str, image: str,
                   idcode: int) -> RecorderPod:
    """Start a recorder pod on the first node of ``cluster`` subscribed to stream ``idcode`` at ``target``."""
    node = env.cluster(cluster).nodes[0].name
    (host,) = start_pods(testbed.kube(cluster), RECORDER_NAMESPACE,
                         [recorder_manifest(f"rec-{stream}", image, node, target, idcode)], timeout=180)
    return RecorderPod(stream, cluster, target, host)


def service_host(chain: Chain, name: str, cluster: str) -> str:
    """DNS name of ``name``'s Service as seen from ``cluster`` (reflected Services keep their name)."""
    return f"{name}.{pod_namespace(chain, name, cluster)}.svc"


def wait_streaming(recorders: Sequence[RecorderPod], timeout: float = 120.0, fresh_s: float = 1.0) -> None:
    """Wait until every recorder receives frames (last arrival at most ``fresh_s`` old)."""
    pending = list(recorders)

    def streaming() -> bool:
        pending[:] = [r for r in pending if not _fresh(r.status(), fresh_s)]
        return not pending

    wait_until(streaming, timeout=timeout, interval=1.0, error=DeployError,
               message=lambda: f"no frames after {timeout:.0f} s at recorder(s) "
                               f"{[(r.stream, r.cluster, r.target) for r in pending]}")


def _fresh(status: Mapping[str, Any], fresh_s: float) -> bool:
    """Whether a recorder status shows a frame that arrived within ``fresh_s`` seconds."""
    arrival = status.get("last_arrival")
    return arrival is not None and time.time() - float(arrival) <= fresh_s + 0.6  # + one flush period


def wait_recovered(recorder: RecorderPod, since: float, timeout: float) -> float | None:
    """Wait until ``recorder`` saw a gap of data frames ending after ``since`` (UNIX s); return the first new frame's
    time (None: not within ``timeout``)."""
    def back() -> float | None:
        gap = recorder.status().get("last_gap")
        return float(gap[1]) if gap and float(gap[1]) > since else None

    return poll(back, timeout=timeout, interval=0.5)


def stop_recorder(recorder: RecorderPod, timeout: float = 60.0) -> pd.DataFrame:
    """Stop the recorder, wait until its file is closed, fetch it and return its frames."""
    recorder.host.run(["touch", REC_STOP], timeout=15)
    wait_until(lambda: recorder.host.run(["test", "-e", "/data/done"], timeout=15).ok, timeout=timeout,
               error=DeployError,
               message=f"recorder {recorder.stream} in {recorder.cluster} did not stop within {timeout:.0f} s")
    res = recorder.host.run(["cat", REC_OUT], timeout=120)
    if not res.ok:
        raise DeployError(f"recorder {recorder.stream} in {recorder.cluster}: cannot read {REC_OUT}: {res.stderr}")
    frames = read_frames(io.StringIO(res.stdout))
    return frames.assign(stream=recorder.stream)


def start_recorders(testbed: Testbed, chain: Chain, image: str, low_cluster: str | None = None,
                    low_target: str | None = None) -> dict[str, RecorderPod]:
    """Recorders of the low PDC (in ``low_cluster``, default its owner) and the high PDC (its owner), streaming.

    ``low_target`` is the address the low recorder connects to (default: the PDC's Service).
    """
    low_cluster = low_cluster or chain.owner(chain.low)
    owner_high = chain.owner(chain.high)
    idcodes = {p.name: p.idcode for p in chain.env.grid.pdcs}
    recorders = {
        "low": start_recorder(testbed, chain.env, "low", low_cluster,
                              low_target or service_host(chain, chain.low, low_cluster), image, idcodes[chain.low]),
        "high": start_recorder(testbed, chain.env, "high", owner_high,
                               service_host(chain, chain.high, owner_high), image, idcodes[chain.high]),
    }
    wait_streaming(list(recorders.values()))
    return recorders


def record_chain(testbed: Testbed, chain: Chain, with_db: bool, timers: Timers = FAST) -> dict[str, RecorderPod]:
    """:func:`prepare` (with ``timers``) then :func:`start_recorders` with their defaults."""
    return start_recorders(testbed, chain, prepare(testbed, chain, with_db, timers))


def stop_recorders(recorders: Mapping[str, RecorderPod]) -> pd.DataFrame:
    """Every recorder's frames (column ``stream``)."""
    return pd.concat([stop_recorder(r) for r in recorders.values()], ignore_index=True)
