"""Where a worker's thread and process handlers run: its own thread limiter and its
process pool, made once per worker and kept across its connections.

An ``async def`` handler runs in its task's own Trio task (the session calls it
directly). A plain function runs in a worker thread (``trio.to_thread.run_sync``) under
the worker's own ``CapacityLimiter`` of ``max_concurrency`` threads, so that it blocks
neither the event loop (heartbeats, other tasks) nor the other workers' threads. A
thread cannot be interrupted: when its task is killed or times out, the thread is
*abandoned* -- the task's slot is freed and its result reported at once, while the
function runs on to its end in the background and what it returns is discarded; it
keeps its place under the limiter until then. A process handler runs in the worker's
:class:`~._processes.ProcessPool` (at most ``max_concurrency`` processes at once, as
there are at most that many tasks), whose process is killed instead.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._handlers import HandlerFunc, HandlerKind, ProcessHandler, TaskContext, handler_kind
from ._processes import ProcessPool

__all__ = ["Runtime", "open_runtime"]


class Runtime:
    """How each task type's handler runs (``kinds``), and where the ones that do not
    run in Trio do (:meth:`run`)."""

    def __init__(
        self,
        handlers: Mapping[str, HandlerFunc],
        max_concurrency: int,
        *,
        redirect_stdout: bool,
    ) -> None:
        self.kinds = {task_type: handler_kind(fn) for task_type, fn in handlers.items()}
        self._threads = trio.CapacityLimiter(max_concurrency)
        self._processes: ProcessPool | None = None
        if HandlerKind.PROCESS in self.kinds.values():
            self._processes = ProcessPool(redirect_stdout=redirect_stdout)

    async def run(self, handler: HandlerFunc, payload: Any, context: TaskContext) -> Any:
        """Run a thread or process *handler* on *payload*; its result. Cancellation
        abandons a thread (see the module docstring) and kills a process."""
        if isinstance(handler, ProcessHandler):
            assert self._processes is not None
            return await self._processes.run(handler.fn, payload, context)
        return await trio.to_thread.run_sync(
            _call, handler, payload, limiter=self._threads, abandon_on_cancel=True
        )

    async def aclose(self) -> None:
        if self._processes is not None:
            await self._processes.aclose()


def _call(handler: HandlerFunc, payload: Any) -> Any:
    """A plain handler's result, in its thread (with its task's context: Trio runs
    the thread in a copy of the caller's)."""
    result = handler(payload)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: no warning about that
        raise TypeError(
            f"handler {getattr(handler, '__qualname__', handler)!r} returned an "
            "awaitable from a worker thread: declare it `async def`"
        )
    return result


@asynccontextmanager
async def open_runtime(
    handlers: Mapping[str, HandlerFunc], max_concurrency: int, *, redirect_stdout: bool
) -> AsyncIterator[Runtime]:
    """A :class:`Runtime` for the block; its idle processes are stopped on the way
    out (shielded: however the block is left)."""
    runtime = Runtime(handlers, max_concurrency, redirect_stdout=redirect_stdout)
    try:
        yield runtime
    finally:
        with trio.CancelScope(shield=True):
            await runtime.aclose()
