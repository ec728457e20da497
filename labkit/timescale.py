"""One factor for the kit's own deadlines: ``LABKIT_TIME_SCALE`` (default 1).

Every deadline the kit computes while it waits for something to happen (an apiserver ready,
nodes Ready, a socket, a peering, a pod) is ``timeout`` seconds times this factor
(:func:`deadline`, :func:`scaled`). It is for hosts much slower than the ones the timeouts were
chosen on, above all the hosts tier's guest under qemu's emulator (TCG, about 25 times slower
than the host: docs/hosts.md), where the first apiserver alone takes minutes. It never changes
a timer of Kubernetes, Liqo or the thesis' protocol (probe periods, grace periods, the
NotReady reaction): those stay as configured, and where a slow host makes them misfire the
docs say so. Nothing the kit *measures* is scaled.
"""

from __future__ import annotations

import os
import time

#: The environment variable holding the factor.
ENV = "LABKIT_TIME_SCALE"


def factor() -> float:
    """The factor from :data:`ENV` (1 when unset).

    Raises
    ------
    ValueError
        When it is not a number >= 1 (a factor below 1 would only make waits fail sooner).
    """
    text = os.environ.get(ENV, "").strip()
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{ENV}={text!r} is not a number (a factor for the kit's deadlines, e.g. 20)") from None
    if not value >= 1:
        raise ValueError(f"{ENV}={text!r}: the factor must be >= 1")
    return value


def scaled(seconds: float) -> float:
    """``seconds`` times :func:`factor`."""
    return seconds * factor()


def deadline(seconds: float) -> float:
    """The ``time.monotonic()`` value ``seconds`` (scaled) from now."""
    return time.monotonic() + scaled(seconds)
