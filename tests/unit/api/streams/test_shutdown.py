"""Streams end on the signal that stops the server, before the server's own handler."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from api.streams.shutdown import on_exit_signals


@pytest.fixture
def servers_handler() -> Iterator[list[int]]:
    """A SIGTERM handler as Uvicorn installs one; what it was called with."""
    calls: list[int] = []

    def handle_exit(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, handle_exit)
    yield calls
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_runs_the_callback_on_the_loop_then_the_servers_handler(
    servers_handler: list[int],
) -> None:
    server_handler = signal.getsignal(signal.SIGTERM)

    async def scenario() -> list[str]:
        ran: list[str] = []
        restore = on_exit_signals(lambda: ran.append(threading.current_thread().name))
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        restore()
        return ran

    assert asyncio.run(scenario()) == [threading.main_thread().name]
    assert servers_handler == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is server_handler  # put back


def test_without_a_servers_handler_nothing_is_chained() -> None:
    default = signal.getsignal(signal.SIGTERM)
    assert not callable(default)  # pytest leaves SIGTERM to the default: it kills

    async def scenario() -> None:
        restore = on_exit_signals(lambda: None)
        assert signal.getsignal(signal.SIGTERM) is default
        restore()

    asyncio.run(scenario())


def test_outside_the_main_thread_nothing_is_chained(servers_handler: list[int]) -> None:
    server_handler = signal.getsignal(signal.SIGTERM)
    chained: list[bool] = []

    def in_a_thread() -> None:
        async def scenario() -> None:
            on_exit_signals(lambda: None)
            chained.append(signal.getsignal(signal.SIGTERM) is not server_handler)

        asyncio.run(scenario())

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert chained == [False]
