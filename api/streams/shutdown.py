"""Streams end as soon as the server is told to stop.

Uvicorn (alone, or as Gunicorn's worker) stops in this order: stop accepting, wait for
every open connection and request to finish, and only then run the lifespan's
shutdown. An event stream of a job that runs for hours would hold that wait for hours
(and Gunicorn would kill the worker at its graceful timeout). So the streams end on
the signal itself: a handler chained in front of the server's own, which it still
calls."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # the ones Uvicorn's server stops on


def on_exit_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` on the running event loop when SIGINT or SIGTERM arrives, then
    the handler that was there. Returns what puts the previous handlers back. Only
    where a server has installed a handler of its own (a signal that would kill the
    process anyway needs nothing), and only in the main thread (Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    chained: dict[signal.Signals, tuple[Callable, Callable]] = {}
    for sig in EXIT_SIGNALS:
        previous = signal.getsignal(sig)
        if not callable(previous) or previous is signal.default_int_handler:
            continue

        def handler(signum: int, frame: FrameType | None, previous: Callable = previous) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to end
                loop.call_soon_threadsafe(callback)  # safe in a handler: it only queues
            previous(signum, frame)

        signal.signal(sig, handler)
        chained[sig] = (previous, handler)

    def restore() -> None:
        for sig, (previous, handler) in chained.items():
            if signal.getsignal(sig) is handler:  # nobody has replaced ours since
                signal.signal(sig, previous)

    return restore
