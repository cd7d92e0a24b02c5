"""The stdio transport for the worker: newline-delimited JSON on stdin and stdout.

A process that a dispatcher spawns (directly, in a container, over SSH) reads
messages from its stdin and writes messages to its stdout, one compact JSON object
per ``\\n``-terminated line; stderr is its log. The dispatcher registers such a
process itself, so :func:`serve_stdio` sends no ``WorkerRegister`` and starts
serving at once. See docs/protocol.md, "Framing".
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping

import attrs
import trio

from .._errors import ChannelClosed, WorkerConnectionError, describe
from ..protocol import DEFAULT_MAX_FRAME_SIZE
from ..transports import LineChannel
from ._core import serve_connection
from ._handlers import HandlerFunc, check_handlers
from ._worker import DEFAULT_DRAIN_TIMEOUT, _make_config, _worker_life

__all__ = ["DEFAULT_STDIO_MAX_CONCURRENCY", "open_stdio_connection", "serve_stdio"]

DEFAULT_STDIO_MAX_CONCURRENCY = 1

logger = logging.getLogger("trio_pipe.worker")

_WRITE_TIMEOUT = 10.0
"""Bounds one write to stdout and the closing flush, as ``connect_timeout`` does for
a WebSocket worker: a dispatcher that stops reading for that long is gone."""


@contextlib.asynccontextmanager
async def open_stdio_connection(
    *, max_line_bytes: int = DEFAULT_MAX_FRAME_SIZE
) -> AsyncIterator[LineChannel]:
    """A :class:`~trio_pipe.transports.LineChannel` over this process's stdin and
    stdout (fds 0 and 1): one message a line, other lines skipped (logged at DEBUG).

    Uses duplicates of the two file descriptors, in non-blocking mode, through
    :class:`trio.lowlevel.FdStream`; closing the connection or leaving the block
    closes only the duplicates, so fds 0 and 1 stay open, and their blocking mode is
    restored. Raises ``ChannelClosed`` if stdin or stdout is not open. Unix only.

    Non-blocking mode belongs to the open file, not to the descriptor: while the block
    runs, whatever shares stdin's or stdout's open file (a terminal that is also
    stderr, say) is non-blocking too. A process killed meanwhile leaves it so.
    """
    if sys.platform == "win32":  # pragma: no cover
        raise NotImplementedError("stdio workers need a Unix platform")
    # Created stdin first and closed in reverse order, so that when fds 0 and 1 share
    # one open file (a terminal) the blocking mode seen first is the one restored.
    async with _dup_fd_stream(0, "stdin") as stdin, _dup_fd_stream(1, "stdout") as stdout:
        yield LineChannel(
            stdout, stdin, peer="stdin/stdout", name="stdin", max_frame_size=max_line_bytes
        )


@contextlib.asynccontextmanager
async def _dup_fd_stream(fd: int, name: str) -> AsyncIterator[trio.lowlevel.FdStream]:
    try:
        stream = trio.lowlevel.FdStream(os.dup(fd))
    except OSError as exc:
        raise ChannelClosed(f"{name} is not usable: {describe(exc)}") from exc
    async with stream:
        yield stream


async def serve_stdio(
    handlers: Mapping[str, HandlerFunc],
    *,
    max_concurrency: int = DEFAULT_STDIO_MAX_CONCURRENCY,
    heartbeat_interval: float | None = None,
    worker_id: str | None = None,
    max_concurrency_by_type: Mapping[str, int] | None = None,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> signal.Signals | None:
    """Serve *handlers* to the dispatcher that spawned this process, over stdin/stdout.

    Reads ``TaskDispatch``, ``Kill`` and ``Shutdown`` lines from stdin and writes
    ``TaskResult`` lines (and ``Backpressure``, and ``Heartbeat`` every
    *heartbeat_interval* seconds if given) to stdout, one JSON message per line. The
    dispatcher registers a spawned worker itself, so nothing is sent before the
    first result, and ``task_status.started()`` is called once stdin and stdout are
    open. Tasks run as with :func:`run_worker` (async, thread and process handlers),
    at most *max_concurrency* at once and ``max_concurrency_by_type[t]`` of type
    ``t`` (a dispatch beyond that fails with ``WORKER_SATURATED``), each cancelled at
    its ``timeoutMs`` deadline or on ``Kill``.
    *worker_id* (default: :func:`default_worker_id`) only labels this process's
    messages; the dispatcher keeps the id it gave the process.

    Stdout carries only protocol lines: while serving, ``sys.stdout`` is redirected
    to ``sys.stderr``, so a handler's ``print()`` lands in the log (a process
    handler's standard output too). Logging must go to
    stderr too (``logging.basicConfig()`` does). Lines on stdin that are not JSON
    objects with a ``"type"`` are ignored.

    Returns after ``Shutdown`` (graceful: once in-flight tasks have finished and their
    results are written, even if stdin is closed meanwhile; not graceful: once they
    have been cancelled and reported ``Cancelled``), or when stdin reaches end of file
    or stdout breaks without ``Shutdown``: in-flight handlers are then cancelled and
    their results dropped. A write to stdout that does not complete within 10 s
    counts as a broken stdout. With *handle_signals*, SIGTERM and SIGINT drain it as
    they drain :func:`run_worker` (its results written, the rest ``Cancelled``
    after *drain_timeout* seconds), then it returns the signal; otherwise ``None``.

    Raises :class:`ValueError` or :class:`TypeError` for invalid arguments and
    :class:`WorkerConnectionError` if stdin or stdout is not open. Cancelling the
    caller cancels every handler. Unix only.
    """
    table = check_handlers(handlers)
    config = _make_config(
        worker_id,
        max_concurrency,
        1.0 if heartbeat_interval is None else heartbeat_interval,  # validated here
        (),
        backoff_initial=0.1,
        backoff_max=0.1,
        connect_timeout=_WRITE_TIMEOUT,
        task_types=table,
        max_concurrency_by_type=max_concurrency_by_type,
        drain_timeout=drain_timeout,
    )
    config = attrs.evolve(config, heartbeat_interval=heartbeat_interval)
    started_at = trio.current_time()
    async with contextlib.AsyncExitStack() as stack:
        try:
            conn = await stack.enter_async_context(open_stdio_connection())
        except ChannelClosed as exc:
            raise WorkerConnectionError(f"stdio worker: {exc}") from exc
        _flush_stdout()
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        life = _worker_life(table, config, handle_signals, redirect_stdout=True)
        runtime, stop = await stack.enter_async_context(life)
        logger.info("serving %s on stdin/stdout as %s", list(table), config.worker_id)
        task_status.started()
        stop.serving()
        end = await serve_connection(
            conn, table, config, runtime=runtime, started_at=started_at, stop=stop
        )
    logger.info("stdio worker %s stopped: %s", config.worker_id, end.reason)
    return stop.signal


def _flush_stdout() -> None:
    """Write out what earlier code printed, before the first protocol line."""
    if sys.stdout is not None:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # stdout broken or closed: the writer will find out
