"""Stopping a worker from outside: SIGTERM and SIGINT, or a call, as one request.

The first request drains the worker (docs/worker-lifecycle.md): the session that is
serving says so to the dispatcher, takes no new task, lets its tasks finish within the
drain timeout, stops what remains, and closes; a worker that is not serving at that
moment (connecting, waiting to reconnect) just stops. A second request stops the
tasks at once. Either way the worker does not reconnect.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import trio

__all__ = ["STOP_SIGNALS", "StopRequest", "watch_signals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Whether the worker was asked to stop, how urgently, and by which signal."""

    def __init__(self) -> None:
        #: Set by the first request: drain.
        self.drain = trio.Event()
        #: Set by the second: stop the tasks now.
        self.now = trio.Event()
        #: The signal of the first request (``None``: none, or not by a signal).
        self.signal: signal.Signals | None = None
        self._idle: trio.CancelScope | None = None

    def request(self, signum: signal.Signals | None = None) -> None:
        """Ask the worker to drain; if it is draining already, to stop now."""
        if self.drain.is_set():
            self.now.set()
            return
        self.signal = signum
        self.drain.set()
        if self._idle is not None:
            self._idle.cancel()

    @contextmanager
    def while_idle(self) -> Iterator[trio.CancelScope]:
        """A cancel scope that a drain request cancels until :meth:`serving`: around
        whatever comes before a session serves (connecting, registering, waiting to
        reconnect), which a drain just abandons."""
        with trio.CancelScope() as scope:
            self._idle = scope
            if self.drain.is_set():
                scope.cancel()
            try:
                yield scope
            finally:
                self._idle = None

    def serving(self) -> None:
        """A session serves from now on: it drains itself on a request."""
        self._idle = None


async def watch_signals(
    stop: StopRequest, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Turn each SIGTERM and SIGINT into a :meth:`StopRequest.request`, until
    cancelled. Must run in the main thread (``RuntimeError`` otherwise); while it runs,
    SIGINT raises no ``KeyboardInterrupt``."""
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started()
        async for signum in signals:
            stop.request(signal.Signals(signum))  # the session logs what it does
