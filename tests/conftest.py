"""Test tiers: every test carries exactly one tier marker; tiers the host cannot run skip with a reason.

The tiers are pyproject.toml's pytest markers (the one list; ``invoke test`` reads it too). A tier
that needs something of the host says why it cannot run here in :data:`SKIP`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest


def _hosts_tier() -> str | None:
    from labkit.guest import fits

    return fits.skip_reason()


#: Per tier that needs something of the host: why it cannot run here (``None``: it can).
SKIP: dict[str, Callable[[], str | None]] = {
    "embedded": lambda: None if os.geteuid() == 0 else (
        "embedded tier needs root (network namespaces, mounts, cgroups)"),
    "vms": lambda: None if os.environ.get("LABKIT_VMS_INVENTORY") else (
        "vms tier needs real VMs: set LABKIT_VMS_INVENTORY to an env file like envs/crownlabs.yaml"),
    # asked for by name (`invoke test --tier hosts`) on a machine where the guest fits: labkit.guest.fits
    "hosts": _hosts_tier,
}


def tiers(config: pytest.Config) -> tuple[str, ...]:
    """The tier markers declared in pyproject.toml."""
    return tuple(line.split(":", 1)[0].strip() for line in config.getini("markers"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail tests without exactly one tier marker; skip those of a tier this host cannot run."""
    known = tiers(config)
    untiered = [i.nodeid for i in items if sum(bool(i.get_closest_marker(t)) for t in known) != 1]
    if untiered:
        raise pytest.UsageError(f"tests need exactly one tier marker of {known}: {untiered[:10]}")
    reasons: dict[str, str | None] = {}
    for item in items:
        tier = next(t for t in known if item.get_closest_marker(t))
        if tier in SKIP:
            reason = reasons[tier] if tier in reasons else reasons.setdefault(tier, SKIP[tier]())
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
