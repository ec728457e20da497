"""Test tiers: every test carries exactly one tier marker; tiers the host cannot run skip with a reason."""

from __future__ import annotations

import os

import pytest

TIERS = ("unit", "notebook", "embedded", "vms", "hosts")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail tests without a tier marker; skip embedded without root, vms without an inventory, hosts
    unless asked for by name (``invoke test --tier hosts``) on a machine where the guest fits."""
    untiered = [i.nodeid for i in items if sum(bool(i.get_closest_marker(t)) for t in TIERS) != 1]
    if untiered:
        raise pytest.UsageError(f"tests need exactly one tier marker of {TIERS}: {untiered[:10]}")
    for item in items:
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        if tiers[0] == "embedded" and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="embedded tier needs root (network namespaces, mounts, cgroups)"))
        if tiers[0] == "hosts":
            reason = hosts_tier_skip()
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
        if tiers[0] == "vms" and not os.environ.get("LABKIT_VMS_INVENTORY"):
            item.add_marker(pytest.mark.skip(
                reason="vms tier needs real VMs: set LABKIT_VMS_INVENTORY to an env file like envs/crownlabs.yaml"))


def hosts_tier_skip() -> str | None:
    """Why the hosts tier does not run here (``None``: it runs); see labkit.guest.fits."""
    from labkit.guest import fits

    return fits.skip_reason()
