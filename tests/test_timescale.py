"""labkit.timescale: one factor for the kit's own deadlines (LABKIT_TIME_SCALE)."""

from __future__ import annotations

import time

import pytest

from labkit import timescale

pytestmark = pytest.mark.unit


def test_unset_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timescale.ENV, raising=False)
    assert timescale.factor() == 1.0 and timescale.scaled(30) == 30


def test_the_factor_scales_every_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(timescale.ENV, "20")
    assert timescale.scaled(144) == 2880
    now = time.monotonic()
    assert 600 <= timescale.deadline(30) - now <= 601


@pytest.mark.parametrize("text", ["fast", "0.5", "0", "-3", "nan"])
def test_a_bad_factor_names_the_variable(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(timescale.ENV, text)
    with pytest.raises(ValueError, match=timescale.ENV):
        timescale.factor()


def test_the_embedded_waits_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """cluster._wait_for's deadline follows the factor (a condition that never holds, a check that ends it)."""
    from labkit.testbed.base import TestbedError
    from labkit.testbed.embedded import cluster

    monkeypatch.setenv(timescale.ENV, "4")
    start = time.monotonic()
    with pytest.raises(TestbedError, match="timed out after 2 s waiting for nothing"):
        cluster._wait_for(lambda: False, 0.5, "nothing")
    assert time.monotonic() - start >= 2.0
