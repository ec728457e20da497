"""Air-gapped installs: which files the control machine must hold, and where they come from.

With ``VmsOptions(airgap=True)`` nothing is downloaded by the VMs: the runbook copies
these files from ``artifacts_dir`` (default ``~/.cache/labkit/vms``)::

    k3s/<k3s version>/install.sh                     k3s' install script at that tag
    k3s/<k3s version>/k3s (k3s-arm64)                the k3s binary
    k3s/<k3s version>/k3s-airgap-images-<arch>.tar   k3s' own images (pause, coredns, ...)
    liqo/<liqo version>/liqoctl-linux-<arch>.tar.gz  liqoctl
    liqo/<liqo version>/liqo-source.tar.gz           Liqo's source at the tag (its Helm chart)
    percona/<operator version>/bundle.yaml           the operator's CRDs, RBAC and Deployment
    images/*.tar                                     every other image (Liqo's, Percona's,
                                                     openPDC), as OCI or Docker archives

:func:`sources` gives the URL of every file but ``images/``; :func:`fetch` downloads them
on a machine with internet access, writing ``SHA256SUMS`` next to them so later runs can be
checked (:func:`verify`).
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

from labkit.config import Env
from labkit.testbed.vms import k3s, liqo, percona
from labkit.testbed.vms.options import VmsOptions

SUMS = "SHA256SUMS"


def sources(env: Env, options: VmsOptions) -> dict[Path, str]:
    """Every downloadable air-gap file (path under ``artifacts_dir``) with its URL."""
    b = env.backend
    kv, lv, pv = b.k3s_version, b.liqo_version, b.percona_operator_version  # type: ignore[union-attr]
    arch = options.arch
    return {
        Path("k3s", kv, "install.sh"): k3s.install_script_url(kv),
        Path("k3s", kv, k3s.binary_name(arch)): k3s.release_url(kv, k3s.binary_name(arch)),
        Path("k3s", kv, k3s.airgap_images_name(arch)): k3s.release_url(kv, k3s.airgap_images_name(arch)),
        Path("liqo", lv, f"liqoctl-linux-{arch}.tar.gz"): liqo.release_url(lv, arch),
        Path("liqo", lv, "liqo-source.tar.gz"): f"https://github.com/liqotech/liqo/archive/refs/tags/{lv}.tar.gz",
        Path("percona", pv, "bundle.yaml"): percona.bundle_url(pv),
    }


def image_archives(options: VmsOptions) -> list[Path]:
    """The archives under ``artifacts_dir/images`` (imported on every node when air-gapped)."""
    return sorted((options.artifacts_dir / "images").glob("*.tar"))


def missing(env: Env, options: VmsOptions) -> list[Path]:
    """Air-gap files not present under ``artifacts_dir``."""
    return [options.artifacts_dir / rel for rel in sources(env, options) if not (options.artifacts_dir / rel).is_file()]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(env: Env, options: VmsOptions, log: Callable[[str], None] = print, timeout: float = 600.0) -> list[Path]:
    """Download the missing air-gap files and record their SHA-256 in ``SHA256SUMS``.

    Returns
    -------
    list of Path
        The files downloaded now.
    """
    done = []
    for rel, url in sources(env, options).items():
        target = options.artifacts_dir / rel
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        log(f"[vms] fetch {url}")
        partial = target.with_name(target.name + ".part")
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(response, out)
        partial.replace(target)
        done.append(target)
    _write_sums(options.artifacts_dir, list(sources(env, options)))
    return done


def _write_sums(root: Path, rels: list[Path]) -> None:
    """``SHA256SUMS`` (sha256sum format) of the present files."""
    lines = [f"{sha256(root / rel)}  {rel}" for rel in rels if (root / rel).is_file()]
    (root / SUMS).write_text("\n".join(lines) + ("\n" if lines else ""))


def verify(options: VmsOptions) -> list[str]:
    """Files whose SHA-256 differs from ``SHA256SUMS`` (missing sums file: nothing to compare)."""
    sums = options.artifacts_dir / SUMS
    if not sums.is_file():
        return []
    bad = []
    for line in sums.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        path = options.artifacts_dir / rel
        if not path.is_file() or sha256(path) != digest:
            bad.append(rel)
    return bad
