"""Settings of the VMs backend that ``labkit.config.VmsBackend`` does not (yet) carry.

Everything here has a default that reproduces the thesis' test bed; the lead may move any of
these into the env file (``backend:``) later without changing the runbook's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from labkit import paths


def default_artifacts_dir() -> Path:
    """Where air-gapped installs find k3s, liqoctl, charts and images (``<cache>/vms``)."""
    return paths.cache_dir() / "vms"


@dataclass(frozen=True)
class VmsOptions:
    """How the VMs backend installs and reaches the VMs.

    Attributes
    ----------
    airgap
        Copy every artefact from the control machine (``artifacts_dir``) instead of letting
        the VMs download k3s, liqoctl and the Percona bundle from GitHub.
    artifacts_dir
        Air-gap artefacts: see :mod:`labkit.testbed.vms.artifacts` for the file names.
    arch
        CPU architecture of the VMs (``amd64`` or ``arm64``), for release file names.
    disable
        k3s packaged components not installed: the thesis exposes nothing through an
        ingress (traefik) and Liqo's k3s profile uses NodePort services, so the service
        load balancer (servicelb/klipper) would only take node ports.
    images
        ``labkit.images`` names imported into every node with ``k3s ctr images import``.
    extra_archives
        Further OCI/Docker archives to import on every node (e.g. an openPDC image as the
        high-level PDC, or Liqo/Percona images for an air-gapped run).
    percona
        Install the Percona XtraDB Cluster operator and one PerconaXtraDBCluster per DB domain.
    api_port
        Port of each k3s API server on its VM.
    connect_timeout_s, command_timeout_s, retries, retry_delay_s
        SSH behaviour: connection timeout, default per-command timeout, extra attempts for
        connections and repeatable commands, pause between attempts.
    parallel
        Hosts handled at once inside a stage.
    bring_up_after_s
        A cluster-disconnect fault brings the interface back by itself after this long at the
        latest (a detached timer started on the VM before the link goes down).
    ready_timeout_s
        How long k3s nodes, virtual nodes and the database may take to become ready.
    """

    airgap: bool = False
    artifacts_dir: Path = field(default_factory=default_artifacts_dir)
    arch: str = "amd64"
    disable: tuple[str, ...] = ("traefik", "servicelb")
    images: tuple[str, ...] = ("runtime", "probe", "galera")
    extra_archives: tuple[Path, ...] = ()
    percona: bool = True
    api_port: int = 6443
    connect_timeout_s: float = 20.0
    command_timeout_s: float = 120.0
    retries: int = 3
    retry_delay_s: float = 5.0
    parallel: int = 8
    bring_up_after_s: float = 60.0
    ready_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.arch not in ("amd64", "arm64"):
            raise ValueError(f"arch must be amd64 or arm64, got {self.arch!r}")
        if self.parallel < 1 or self.retries < 0:
            raise ValueError(f"parallel must be >= 1 and retries >= 0, got {self.parallel}, {self.retries}")
