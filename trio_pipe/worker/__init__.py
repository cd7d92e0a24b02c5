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
``Kill`` and the task's deadline (one heap of deadlines for all) cancel; a plain
(blocking) function runs in a worker thread, an :func:`in_process` one in a process
of the worker's pool; see :func:`run_worker`. A handler may report :func:`progress`
and :func:`extend_deadline`. With ``handle_signals=True``, SIGTERM and SIGINT drain the
worker (docs/worker-lifecycle.md). A process that a dispatcher spawns serves the same
handlers over its stdin and stdout with :func:`serve_stdio`.
"""

from ._handlers import (
    HandlerFunc,
    HandlerKind,
    Handlers,
    ProcessHandler,
    TaskFailure,
    check_handlers,
    current_task,
    extend_deadline,
    in_process,
    progress,
)
from ._stdio import DEFAULT_STDIO_MAX_CONCURRENCY, serve_stdio
from ._websocket import check_token, check_websocket_url
from ._worker import (
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_CONCURRENCY,
    WorkerConnectionError,
    default_worker_id,
    run_worker,
)

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_STDIO_MAX_CONCURRENCY",
    "HandlerFunc",
    "HandlerKind",
    "Handlers",
    "ProcessHandler",
    "TaskFailure",
    "WorkerConnectionError",
    "check_handlers",
    "check_token",
    "check_websocket_url",
    "current_task",
    "default_worker_id",
    "extend_deadline",
    "in_process",
    "progress",
    "run_worker",
    "serve_stdio",
]
