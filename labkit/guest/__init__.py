"""A real cgroup v2 + systemd host for the kit's own tests: a Debian guest under qemu + KVM.

The ``hosts`` test tier proves the kit on the kind of machine most researchers have (Debian or
Ubuntu with systemd as PID 1, which mounts the unified cgroup v2 hierarchy, and an externally
managed system Python), which the development machine is not (cgroup v1, no systemd). It boots
such a host and runs the README's two commands in it, unmodified.

- :mod:`.image` — the guest's disk image, built without a registry by ``mmdebstrap`` from the
  host's Debian mirror (systemd, Debian's own kernel, openssh, the distribution's python3 and
  nothing of the kit), and beside it the local apt repository of every ``.deb`` the kit's setup
  and ``bootstrap.sh`` will ask for; cached under ``~/.cache/labkit/guest/`` keyed by its recipe.
- :mod:`.wheels` — the wheelhouse of the kit's pinned Python dependencies (``pip download``).
- :mod:`.machine` — the host-only network in the kit's own network namespace ``lkt-guest``
  (a tap device; the guest has no route anywhere else), the HTTP server that serves it the
  apt repository and the wheelhouse, qemu, and SSH into the guest; :class:`~.machine.Guest`
  tears all of it down, also when a test fails.
"""

from __future__ import annotations

from labkit.guest.image import Image, Recipe, build, host_sources
from labkit.guest.packages import APT_PACKAGES

__all__ = ["APT_PACKAGES", "Image", "Recipe", "build", "host_sources", "recipe"]


def recipe(suite: str = "bookworm") -> Recipe:
    """The guest of the hosts tier for Debian ``suite``: a small server, and in its local apt
    repository what the kit's ``invoke setup`` and ``bootstrap.sh`` (``python3-venv``) may install:
    the hosts tier's own packages too, since the guest's emulated CPU may offer ``/dev/kvm``."""
    from labkit.install import apt_packages

    return Recipe(suite=suite, repo_packages=tuple(sorted({*apt_packages(hosts_tier=True), "python3-venv"})),
                  sources=host_sources())
