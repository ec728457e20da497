"""labkit.testbed: the backend factory and the event-loop guard notebooks rely on."""

from __future__ import annotations

import asyncio
import threading

import pytest

from labkit.config import load_env
from labkit.testbed import create, load_image, off_event_loop

pytestmark = pytest.mark.unit


@off_event_loop
def _where(x: int) -> tuple[str, int]:
    return threading.current_thread().name, x * 2


def test_plain_call_stays_in_this_thread() -> None:
    assert _where(2) == (threading.current_thread().name, 4)


def test_inside_a_running_loop_it_moves_to_a_worker_thread() -> None:
    async def main() -> tuple[str, int]:
        return _where(3)

    name, value = asyncio.run(main())
    assert name.startswith("labkit-_where") and value == 6


def test_exceptions_cross_the_thread() -> None:
    @off_event_loop
    def boom() -> None:
        raise ValueError("nope")

    async def main() -> None:
        boom()

    with pytest.raises(ValueError, match="nope"):
        asyncio.run(main())


def test_factory_picks_the_backend_of_the_env() -> None:
    assert type(create(load_env("thesis"))).__name__ == "EmbeddedTestbed"
    assert type(create(load_env("crownlabs"))).__name__ == "VmsTestbed"


def test_load_image_starts_four_clusters_at_once_and_returns_the_reference() -> None:
    """No cluster imports alone first: the build lock, not the caller, makes the others wait."""
    started = threading.Barrier(4)

    class Bed:
        def load_image(self, cluster: str, name: str) -> str:
            started.wait(timeout=2.0)  # BrokenBarrierError if fewer than four run at once
            return f"labkit.local/{name}:0.1.0"

    assert load_image(Bed(), ["root", "leaf-1", "leaf-2", "leaf-3", "leaf-4", "leaf-5", "leaf-6", "leaf-7"],
                      "runtime") == "labkit.local/runtime:0.1.0"
    with pytest.raises(ValueError, match="no cluster given"):
        load_image(Bed(), [], "runtime")
