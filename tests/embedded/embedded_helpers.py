"""Shared helpers of the embedded tests: skips, waiting, small manifests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

#: Label of the second VM of the shared 2-VM cluster, used by the node-affinity test.
TARGET_LABEL = ("labkit.io/target", "yes")


def require_embedded() -> None:
    """Skip with a clear reason when the embedded testbed cannot run here."""
    if os.geteuid() != 0:
        pytest.skip("embedded tests need root (network namespaces, mounts, cgroups)")
    from labkit.testbed.embedded.binaries import BinariesMissing, find_binaries
    try:
        find_binaries()
    except BinariesMissing as exc:
        pytest.skip(f"embedded binaries missing: {exc}")
    from labkit import images
    if not images.is_built("pause"):
        pytest.skip("pause image not built: run `invoke setup`")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout`` (times ``$LABKIT_TIME_SCALE``)."""
    from labkit import timescale

    timeout = timescale.scaled(timeout)
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def pause_deployment(name: str, image: str, affinity: dict[str, Any] | None = None,
                     replicas: int = 1) -> dict[str, Any]:
    """A Deployment of pause containers (the only image every node has)."""
    spec: dict[str, Any] = {"containers": [{"name": "pause", "image": image, "imagePullPolicy": "Never"}],
                            "terminationGracePeriodSeconds": 0}
    if affinity:
        spec["affinity"] = affinity
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def node_affinity(key: str, values: list[str], required: bool = True) -> dict[str, Any]:
    """Required (or preferred, weight 100) node affinity on label ``key`` in ``values``."""
    term = {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}
    if required:
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                                                                                  "preference": term}]}}


def running_pods(core: Any, selector: str, namespace: str = "default") -> list[Any]:
    """Pods matching ``selector`` that are Running and not being deleted."""
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]


def node_ready(core: Any, name: str) -> bool:
    """Whether node ``name`` reports Ready=True."""
    node = core.read_node(name)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def host_private_dirs() -> dict[str, tuple[int, int, int, int, tuple[str, ...]] | None]:
    """The host's side of every VM-private directory: mode, owner, group, mtime and entries (``None``: absent).

    The kit covers these paths inside each VM's mount namespace only; a test compares this
    before a bring-up and after the teardown (docs/hosts.md, "Packages' paths").
    """
    from pathlib import Path

    from labkit.testbed.embedded.vm import PRIVATE_DIRS

    state: dict[str, tuple[int, int, int, int, tuple[str, ...]] | None] = {}
    for inside in PRIVATE_DIRS:
        path = Path(inside)
        if not path.is_dir():
            state[inside] = None
            continue
        st = path.stat()
        state[inside] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, tuple(sorted(os.listdir(path))))
    return state
