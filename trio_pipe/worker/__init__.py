"""The Python worker SDK: serve task handlers to a trio_pipe (or rust-pipe) dispatcher.

::

    import trio
    from trio_pipe.worker import Handlers, run_worker

    handlers = Handlers()

    @handlers.handler("echo")
    async def echo(payload):
        return payload

    trio.run(run_worker, "ws://127.0.0.1:9876", handlers)

The worker is itself Trio: each task runs in its own task under a cancel scope that
``Kill`` and the task's deadline (one heap of deadlines for all) cancel; see
:func:`run_worker`. A process that a
dispatcher spawns serves the same handlers over its stdin and stdout with
:func:`serve_stdio`.
"""

from ._handlers import HandlerFunc, Handlers, TaskFailure, current_task
from ._stdio import DEFAULT_STDIO_MAX_CONCURRENCY, serve_stdio
from ._worker import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_CONCURRENCY,
    WorkerConnectionError,
    default_worker_id,
    run_worker,
)

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_STDIO_MAX_CONCURRENCY",
    "HandlerFunc",
    "Handlers",
    "TaskFailure",
    "WorkerConnectionError",
    "current_task",
    "default_worker_id",
    "run_worker",
    "serve_stdio",
]
