"""Kubernetes objects of the workload (PMU, PDC low/high, Galera DB, GSE) rendered from a topology plan.

``render(plan)`` returns :class:`Manifest` objects (the cluster to apply to + a plain dict);
``check_all`` validates them against the ``kubernetes`` client's OpenAPI models. The same
objects serve the embedded and the VMs backends.
"""

from labkit.workloads.openapi import ManifestError, check, check_all
from labkit.workloads.render import Images, Manifest, by_cluster, render, to_yaml

__all__ = ["Images", "Manifest", "ManifestError", "by_cluster", "check", "check_all", "render", "to_yaml"]
