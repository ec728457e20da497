"""labkit.measure.liqo on a fake CustomObjectsApi: the ForeignCluster's APIServerStatus and the wait on it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from labkit.measure.liqo import api_server_status, wait_api_server_established
from labkit.testbed import TestbedError

pytestmark = pytest.mark.unit
CHANGED = "2026-12-05T18:00:05Z"


class FakeCustom:
    """One ForeignCluster ``leaf-1`` whose APIServerStatus reads ``statuses`` in turn (the last one stays)."""

    def __init__(self, *statuses: str | None, missing: bool = False) -> None:
        self.statuses, self.missing, self.reads = list(statuses), missing, 0

    def get_cluster_custom_object(self, group: str, version: str, plural: str, name: str) -> dict[str, Any]:
        assert (group, version, plural) == ("discovery.liqo.io", "v1alpha1", "foreignclusters")
        if self.missing or name != "leaf-1":
            raise ApiException(status=404, reason="Not Found")
        status = self.statuses[min(self.reads, len(self.statuses) - 1)]
        self.reads += 1
        conds = [{"type": "NetworkStatus", "status": "Established", "lastTransitionTime": CHANGED}]
        if status is not None:
            conds.append({"type": "APIServerStatus", "status": status, "lastTransitionTime": CHANGED})
        return {"status": {"peeringConditions": conds}}


def test_the_condition_is_read_with_its_transition_time() -> None:
    cond = api_server_status(FakeCustom("Error"), "leaf-1")
    assert cond is not None and cond.status == "Error"
    assert cond.changed == datetime(2026, 12, 5, 18, 0, 5, tzinfo=timezone.utc).timestamp()
    assert api_server_status(FakeCustom(None), "leaf-1") is None          # no such condition yet
    assert api_server_status(FakeCustom("Error"), "leaf-2") is None       # no such ForeignCluster


def test_the_wait_ends_when_established_and_at_once_without_liqo() -> None:
    custom = FakeCustom("Error", "Error", "Established")
    wait_api_server_established(custom, "leaf-1", timeout=5.0, interval=0.01)
    assert custom.reads == 3
    wait_api_server_established(FakeCustom(missing=True), "leaf-1", timeout=0.0, required=False)  # the look-alike
    with pytest.raises(TestbedError, match="leaf-1"):                    # Liqo's ForeignCluster must be there
        wait_api_server_established(FakeCustom(missing=True), "leaf-1", timeout=0.05, interval=0.01)


def test_the_wait_names_the_foreign_cluster_when_it_stays_in_error() -> None:
    with pytest.raises(TestbedError, match="ForeignCluster leaf-1: APIServerStatus not Established"):
        wait_api_server_established(FakeCustom("Error"), "leaf-1", timeout=0.05, interval=0.01)


def test_other_api_errors_are_not_taken_for_the_look_alike() -> None:
    class Failing(FakeCustom):
        def get_cluster_custom_object(self, *args: str) -> dict[str, Any]:
            raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(ApiException):
        api_server_status(Failing(), "leaf-1")
