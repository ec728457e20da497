"""labkit.testbed: the backend factory and the event-loop guard notebooks rely on."""

from __future__ import annotations

import asyncio
import threading

import pytest

from labkit.config import load_env
from labkit.testbed import create, off_event_loop

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
