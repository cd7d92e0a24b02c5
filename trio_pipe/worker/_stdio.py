"""The stdio transport for the worker: newline-delimited JSON on stdin and stdout.

A process that a dispatcher spawns (directly, in a container, over SSH) reads
messages from its stdin and writes messages to its stdout, one compact JSON object
per ``\\n``-terminated line; stderr is its log. The dispatcher registers such a
process itself, so :func:`serve_stdio` sends no ``WorkerRegister`` and starts
serving at once. See docs/protocol.md, "Framing".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence

import attrs
import orjson
import trio

from ..protocol import DEFAULT_MAX_FRAME_SIZE
from ._core import serve_connection
from ._handlers import HandlerFunc
from ._transport import InputClosed, TransportClosed
from ._worker import WorkerConnectionError, _check_handlers, _make_config

__all__ = ["StdioConnection", "open_stdio_connection", "serve_stdio"]

logger = logging.getLogger("trio_pipe.worker")

_READ_SIZE = 64 * 1024
_WRITE_TIMEOUT = 10.0
"""Bounds one write to stdout and the closing flush, as ``connect_timeout`` does for
a WebSocket worker: a dispatcher that stops reading for that long is gone."""

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class StdioConnection:
    """:class:`~._transport.Connection` over a pair of byte streams carrying one JSON
    message per line (the process's stdin and stdout; see :func:`open_stdio_connection`).

    :meth:`receive` returns only lines that are JSON objects with a ``"type"`` member;
    blank lines and other lines are skipped and logged at DEBUG. A line longer than
    *max_line_bytes* (newline excluded) is a protocol error: it is logged and dropped
    up to its newline, without being buffered whole. End of input raises
    :class:`~._transport.InputClosed`, after a last line that lacks its newline.
    """

    def __init__(
        self,
        receive_stream: trio.abc.ReceiveStream,
        send_stream: trio.abc.SendStream,
        *,
        max_line_bytes: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {max_line_bytes}")
        self._in = receive_stream
        self._out = send_stream
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._start = 0  # where the next line begins in _buffer
        self._scanned = 0  # _buffer[_start:_scanned] holds no newline
        self._skipping = False  # inside an over-long line: drop up to its newline
        self._eof = False

    async def send_all(self, frames: Sequence[str]) -> None:
        if not frames:
            return
        data = ("\n".join(frames) + "\n").encode("utf-8")
        try:
            await self._out.send_all(data)
        except _STREAM_ERRORS as exc:
            raise TransportClosed(f"writing to stdout failed: {_describe(exc)}") from exc

    async def receive(self) -> bytes:
        while True:
            line = self._next_line()
            if line is None:
                if self._eof:
                    raise InputClosed("stdin reached end of file")
                await self._fill()
            elif _is_message(line):
                return line

    async def aclose(self) -> None:
        """Close both streams (idempotent); a pending :meth:`receive` raises
        :class:`~._transport.InputClosed`."""
        try:
            await self._out.aclose()
        finally:
            await self._in.aclose()

    async def _fill(self) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._scanned -= self._start
            self._start = 0
        try:
            chunk = await self._in.receive_some(_READ_SIZE)
        except _STREAM_ERRORS as exc:
            raise InputClosed(f"reading stdin failed: {_describe(exc)}") from exc
        if chunk:
            self._buffer += chunk
        else:
            self._eof = True

    def _next_line(self) -> bytes | None:
        """The next complete line in the buffer (without its newline), or None if
        more input is needed. Drops over-long lines."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                pending = len(buffer) - self._start
                if self._skipping or pending > self._max:
                    if not self._skipping:
                        self._too_long(f"more than {self._max}")
                        self._skipping = True
                    self._start = self._scanned = len(buffer)  # dropped by _fill
                    return None
                if self._eof and pending:
                    line = bytes(buffer[self._start :])
                    self._start = self._scanned = len(buffer)
                    return line
                self._scanned = len(buffer)
                return None
            begin = self._start
            self._start = self._scanned = end + 1
            if self._skipping:
                self._skipping = False  # the rest of an over-long line
            elif end - begin > self._max:
                self._too_long(str(end - begin))
            else:
                return bytes(buffer[begin:end])

    def _too_long(self, size: str) -> None:
        logger.warning(
            "protocol error: skipping a line of %s bytes on stdin (the limit is %d)",
            size,
            self._max,
        )


def _is_message(line: bytes) -> bool:
    """Whether *line* is a JSON object with a ``"type"``: a message for the core to
    decode (which reports what is wrong with it), not noise to skip."""
    text = line.strip()
    if text.startswith(b"{"):
        # orjson first (a quarter of the cost): what it reads, the standard library
        # reads as the same kind of value. What it refuses (NaN, lone surrogates,
        # deep nesting) the standard library decides, as before.
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            try:
                value = json.loads(text)
            except RecursionError:
                return True  # nested too deeply: let the decoder report it
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                value = None
        if isinstance(value, dict) and "type" in value:
            return True
    if text:
        logger.debug("ignoring a line on stdin that is not a message: %.80r", line)
    return False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@contextlib.asynccontextmanager
async def open_stdio_connection(
    *, max_line_bytes: int = DEFAULT_MAX_FRAME_SIZE
) -> AsyncIterator[StdioConnection]:
    """A :class:`StdioConnection` over this process's stdin and stdout (fds 0 and 1).

    Uses duplicates of the two file descriptors, in non-blocking mode, through
    :class:`trio.lowlevel.FdStream`; closing the connection or leaving the block
    closes only the duplicates, so fds 0 and 1 stay open, and their blocking mode is
    restored. Raises :class:`~._transport.TransportClosed` if stdin or stdout is not
    open. Unix only.

    Non-blocking mode belongs to the open file, not to the descriptor: while the block
    runs, whatever shares stdin's or stdout's open file (a terminal that is also
    stderr, say) is non-blocking too. A process killed meanwhile leaves it so.
    """
    if sys.platform == "win32":  # pragma: no cover
        raise NotImplementedError("stdio workers need a Unix platform")
    # Created stdin first and closed in reverse order, so that when fds 0 and 1 share
    # one open file (a terminal) the blocking mode seen first is the one restored.
    async with _dup_fd_stream(0, "stdin") as stdin, _dup_fd_stream(1, "stdout") as stdout:
        yield StdioConnection(stdin, stdout, max_line_bytes=max_line_bytes)


@contextlib.asynccontextmanager
async def _dup_fd_stream(fd: int, name: str) -> AsyncIterator[trio.lowlevel.FdStream]:
    try:
        stream = trio.lowlevel.FdStream(os.dup(fd))
    except OSError as exc:
        raise TransportClosed(f"{name} is not usable: {_describe(exc)}") from exc
    async with stream:
        yield stream


async def serve_stdio(
    handlers: Mapping[str, HandlerFunc],
    *,
    max_concurrency: int = 1,
    heartbeat_interval: float | None = None,
    worker_id: str | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *handlers* to the dispatcher that spawned this process, over stdin/stdout.

    Reads ``TaskDispatch``, ``Kill`` and ``Shutdown`` lines from stdin and writes
    ``TaskResult`` lines (and ``Backpressure``, and ``Heartbeat`` every
    *heartbeat_interval* seconds if given) to stdout, one JSON message per line. The
    dispatcher registers a spawned worker itself, so nothing is sent before the
    first result, and ``task_status.started()`` is called once stdin and stdout are
    open. Tasks run as with :func:`run_worker`: each in its own Trio task, at most
    *max_concurrency* at once (a dispatch beyond that fails with
    ``WORKER_SATURATED``), each cancelled at its ``timeoutMs`` deadline or on ``Kill``.
    *worker_id* (default: :func:`default_worker_id`) only labels this process's
    messages; the dispatcher keeps the id it gave the process.

    Stdout carries only protocol lines: while serving, ``sys.stdout`` is redirected
    to ``sys.stderr``, so a handler's ``print()`` lands in the log. Logging must go to
    stderr too (``logging.basicConfig()`` does). Lines on stdin that are not JSON
    objects with a ``"type"`` are ignored.

    Returns after ``Shutdown`` (graceful: once in-flight tasks have finished and their
    results are written, even if stdin is closed meanwhile; not graceful: once they
    have been cancelled and reported ``Cancelled``), or when stdin reaches end of file
    or stdout breaks without ``Shutdown``: in-flight handlers are then cancelled and
    their results dropped. A write to stdout that does not complete within 10 s
    counts as a broken stdout.

    Raises :class:`ValueError` or :class:`TypeError` for invalid arguments and
    :class:`WorkerConnectionError` if stdin or stdout is not open. Cancelling the
    caller cancels every handler. Unix only.
    """
    table = _check_handlers(handlers)
    config = _make_config(
        worker_id,
        max_concurrency,
        1.0 if heartbeat_interval is None else heartbeat_interval,  # validated here
        (),
        backoff_initial=0.1,
        backoff_max=0.1,
        connect_timeout=_WRITE_TIMEOUT,
    )
    config = attrs.evolve(config, heartbeat_interval=heartbeat_interval)
    started_at = trio.current_time()
    async with contextlib.AsyncExitStack() as stack:
        try:
            conn = await stack.enter_async_context(open_stdio_connection())
        except TransportClosed as exc:
            raise WorkerConnectionError(f"stdio worker: {exc}") from exc
        _flush_stdout()
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        logger.info("serving %s on stdin/stdout as %s", list(table), config.worker_id)
        task_status.started()
        end = await serve_connection(conn, table, config, started_at=started_at)
    logger.info("stdio worker %s stopped: %s", config.worker_id, end.reason)


def _flush_stdout() -> None:
    """Write out what earlier code printed, before the first protocol line."""
    if sys.stdout is not None:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # stdout broken or closed: the writer will find out
