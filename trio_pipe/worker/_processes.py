"""The worker's process pool: where process handlers (:func:`~._handlers.in_process`)
run, one task at a time per process, each over a pair of pipes of its own.

Not ``concurrent.futures.ProcessPoolExecutor``: a ``Kill`` or a timeout must stop the
one process running that task, and an executor can neither terminate one of its
processes without breaking itself (``BrokenProcessPool``) nor carry a task's progress
reports back while it runs. Nor ``multiprocessing.Process``: it waits on its pipes
with blocking calls (a thread each, from Trio) and leaves a resource-tracker process
behind. Here a pool process is a plain child started with
``trio.lowlevel.open_process`` -- a fresh interpreter (nothing of the worker's Trio run,
threads or sockets is copied into it, as a fork would) -- prepared as ``multiprocessing``
prepares its *spawn* children (``multiprocessing.spawn.prepare``: the same
``sys.path``, working directory and ``__main__`` module), and spoken to over two pipes
with Trio's own streams: nothing blocks the event loop, no thread waits.

A process that finishes its task waits for the next (started once, reused); the one
running a task that is cancelled is killed (``SIGKILL``) and reaped, and another is
started when one is next needed. Pool processes ignore SIGINT and SIGTERM (a Ctrl-C in
a terminal reaches the whole process group: the worker's drain decides what happens
to their tasks), and end when their pipe closes.

On the pipes, each message is a pickle preceded by its length (8 bytes, big-endian):
to the process, its preparation data once, then ``(fn, task, payload)`` per task;
back, any number of ``(_PROGRESS, report)`` and ``(_EXTEND, ms)``, then one outcome.
"""

from __future__ import annotations

import json
import logging
import multiprocessing.spawn
import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any, Final

import trio

from ..protocol import Task, TaskProgress
from ._handlers import TaskContext, TaskFailure, _current

__all__ = ["ProcessHandlerError", "ProcessPool"]

logger = logging.getLogger("trio_pipe.worker")

_REAP_TIMEOUT: Final = 5.0  # seconds to wait for a killed process to be reaped
_LENGTH: Final = 8  # bytes of a message's length prefix

# What a process sends back while it runs a task: reports, then one outcome.
_PROGRESS: Final = "progress"
_EXTEND: Final = "extend"
_RESULT: Final = "result"
_FAILURE: Final = "failure"  # the handler raised TaskFailure
_ERROR: Final = "error"  # it raised anything else, or its outcome cannot be sent

_CHILD: Final = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from trio_pipe.worker._processes import serve_in_child; "
    "serve_in_child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == 'redirect')"
)


class ProcessHandlerError(Exception):
    """A process handler raised (or its process died): ``str()`` is the original
    exception's ``Type: message``, ``details`` its traceback in the process."""

    def __init__(self, description: str, details: str = "") -> None:
        super().__init__(description)
        self.details = details


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message)
    return len(data).to_bytes(_LENGTH, "big") + data


class _Process:
    """One process of the pool, and the worker's ends of its two pipes."""

    def __init__(
        self,
        process: trio.Process,
        to_child: trio.lowlevel.FdStream,
        from_child: trio.lowlevel.FdStream,
    ) -> None:
        self.process = process
        self._to_child = to_child
        self._from_child = from_child
        self._buffer = bytearray()

    async def send(self, message: Any) -> None:
        await self._to_child.send_all(_frame(message))

    async def receive(self) -> tuple[Any, ...]:
        """The next message; raises ``EOFError`` if the process closed its pipe."""
        length = int.from_bytes(await self._receive_exactly(_LENGTH), "big")
        message: tuple[Any, ...] = pickle.loads(await self._receive_exactly(length))
        return message

    async def _receive_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = await self._from_child.receive_some()
            if not chunk:
                raise EOFError("the process closed its pipe")
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def stop(self) -> None:
        """Kill the process and reap it, whatever cancellation is under way."""
        with trio.move_on_after(_REAP_TIMEOUT, shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()
            await self._to_child.aclose()
            await self._from_child.aclose()


class ProcessPool:
    """Processes for process handlers, started as needed and reused; see the module
    docstring. *redirect_stdout*: the processes' standard output goes to standard
    error (for a stdio worker, whose standard output carries the protocol)."""

    def __init__(self, *, redirect_stdout: bool) -> None:
        self._idle: list[_Process] = []
        self._redirect_stdout = redirect_stdout
        self._closed = False

    async def run(
        self, fn: Callable[[Any], Any], payload: Any, context: TaskContext
    ) -> Any:
        """Run ``fn(payload)`` in a process, passing its reports on to *context*;
        return its result. Raises what it raised (:class:`TaskFailure` as itself,
        anything else as :class:`ProcessHandlerError`). Cancellation kills the
        process."""
        process = self._idle.pop() if self._idle else await self._start()
        outcome: tuple[Any, ...] | None = None
        try:
            await process.send((fn, context.task, payload))
            while outcome is None:
                message = await process.receive()
                if message[0] == _PROGRESS:
                    context.report_progress(message[1])
                elif message[0] == _EXTEND:
                    context.extend(message[1])
                else:
                    outcome = message
        except (EOFError, trio.BrokenResourceError):
            pass  # the process died: reaped below, then reported
        finally:
            if outcome is not None and not self._closed:
                self._idle.append(process)
            else:
                await process.stop()
        if outcome is None:
            status = process.process.returncode
            raise ProcessHandlerError(f"the handler's process ended (exit status {status})")
        kind, *rest = outcome
        if kind == _RESULT:
            return rest[0]
        if kind == _FAILURE:
            code, message, retryable = rest
            raise TaskFailure(code, message, retryable=retryable)
        raise ProcessHandlerError(*rest)

    async def aclose(self) -> None:
        """Stop every idle process (a running one is stopped by its task's end)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for process in idle:
            await process.stop()

    async def _start(self) -> _Process:
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        try:
            argv = [
                sys.executable,
                "-c",
                _CHILD,
                json.dumps(sys.path),
                str(child_read),
                str(child_write),
                "redirect" if self._redirect_stdout else "inherit",
            ]
            process = await trio.lowlevel.open_process(
                argv, stdin=subprocess.DEVNULL, pass_fds=(child_read, child_write)
            )
        except BaseException:
            for fd in (parent_read, parent_write):
                os.close(fd)
            raise
        finally:
            os.close(child_read)
            os.close(child_write)
        started = _Process(
            process,
            trio.lowlevel.FdStream(parent_write),
            trio.lowlevel.FdStream(parent_read),
        )
        preparation = multiprocessing.spawn.get_preparation_data("trio-pipe-handler")
        preparation.pop("authkey", None)  # not ours to share (and refuses pickling)
        try:
            await started.send(preparation)
        except BaseException:
            await started.stop()
            raise
        return started


# -- in the process ------------------------------------------------------------------


class _PipeContext:
    """A task's context in a pool process: its reports go up the pipe."""

    def __init__(self, task: Task, write_fd: int) -> None:
        self.task = task
        self._write_fd = write_fd

    def report_progress(self, report: TaskProgress) -> None:
        _write(self._write_fd, (_PROGRESS, report))

    def extend(self, ms: int) -> None:
        _write(self._write_fd, (_EXTEND, ms))


def serve_in_child(read_fd: int, write_fd: int, redirect_stdout: bool) -> None:
    """A pool process: get prepared as a spawned ``multiprocessing`` child is, then
    run one task after another until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if redirect_stdout:
        os.dup2(2, 1)
    try:
        multiprocessing.spawn.prepare(pickle.loads(_read(read_fd)))
        while True:
            outcome = _run(_read(read_fd), write_fd)
            try:
                _write(write_fd, outcome)
            except Exception as exc:  # the result does not pickle
                problem = f"the result cannot be sent back: {_describe(exc)}"
                _write(write_fd, (_ERROR, problem, ""))
    except EOFError:
        return


def _run(request: bytes, write_fd: int) -> tuple[Any, ...]:
    """The outcome of one task, as the message that reports it."""
    try:
        fn, task, payload = pickle.loads(request)
    except Exception as exc:
        return (
            _ERROR,
            f"the handler cannot be loaded in its process: {_describe(exc)}",
            "",
        )
    token = _current.set(_PipeContext(task, write_fd))
    try:
        result = fn(payload)
    except TaskFailure as exc:
        return (_FAILURE, exc.code, exc.message, exc.retryable)
    except Exception as exc:
        return (_ERROR, _describe(exc), traceback.format_exc())
    finally:
        _current.reset(token)
    return (_RESULT, result)


def _read(fd: int) -> bytes:
    length = int.from_bytes(_read_exactly(fd, _LENGTH), "big")
    return _read_exactly(fd, length)


def _read_exactly(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _write(fd: int, message: Any) -> None:
    data = memoryview(_frame(message))
    while data:
        data = data[os.write(fd, data) :]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
