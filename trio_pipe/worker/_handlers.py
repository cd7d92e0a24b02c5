"""Handlers by task type: the registry a worker serves, typed handlers, the three ways
a handler runs (``async def`` in the worker's Trio task, a plain function in a worker
thread, one wrapped with :func:`in_process` in a process of the worker's pool), and
what a handler may ask of its worker while it runs (:func:`current_task`,
:func:`progress`, :func:`extend_deadline`)."""

from __future__ import annotations

import contextvars
import enum
import inspect
import numbers
import pickle
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar, overload

import attrs

from .._errors import ErrorCode
from .._typed import TaskSpec
from ..protocol import Task, TaskProgress, converter, describe_structure_error

__all__ = [
    "HandlerFunc",
    "HandlerKind",
    "Handlers",
    "ProcessHandler",
    "TaskFailure",
    "check_handlers",
    "current_task",
    "extend_deadline",
    "handler_kind",
    "in_process",
    "progress",
]

HandlerFunc = Callable[[Any], Any]
"""A wire-level handler: takes the task's JSON payload, returns the result payload.
An ``async def`` (or a callable whose ``__call__`` is one) runs in the worker's own
Trio task; any other callable runs in a worker thread; a :class:`ProcessHandler`
(:func:`in_process`) in a process of the worker's pool."""

F = TypeVar("F", bound=HandlerFunc)
R = TypeVar("R")
S = TypeVar("S", bound=TaskSpec[Any])


class HandlerKind(enum.Enum):
    """Where a handler runs."""

    ASYNC = "async"  # in the worker's Trio task, cancelled at a checkpoint
    THREAD = "thread"  # in a worker thread; abandoned (not stopped) when cancelled
    PROCESS = "process"  # in a process of the worker's pool; killed when cancelled


@attrs.frozen
class ProcessHandler:
    """A handler that runs in a process of the worker's pool: see :func:`in_process`.
    Calling it calls *fn* here, in this process."""

    fn: Callable[[Any], Any]

    def __call__(self, payload: Any) -> Any:
        return self.fn(payload)


def in_process(fn: Callable[[Any], Any]) -> ProcessHandler:
    """Mark the plain function *fn* (payload in, JSON-able result out) to run in a
    process of the worker's pool, for CPU-bound work that must escape the GIL::

        HANDLERS = {"resize": in_process(resize), "fetch": fetch}

    *fn* is pickled by reference, so it must be importable by its module and name (a
    module-level function; from a script, one whose main code is guarded by
    ``if __name__ == "__main__":``; checked when the worker starts:
    :func:`check_handlers`), and what it returns must pickle too. A ``Kill`` or a timeout
    terminates its process (the pool starts another when it needs one);
    :func:`progress`, :func:`extend_deadline` and :func:`current_task` work in it.
    Raises :class:`TypeError` for an ``async def``.
    """
    if isinstance(fn, ProcessHandler):
        return fn
    if not callable(fn):
        raise TypeError(f"in_process() needs a function, got {fn!r}")
    if _is_async(fn):
        raise TypeError(
            f"{_name(fn)} is an async function: a process runs a plain function "
            "(an async handler needs no process: it runs in the worker's own Trio task)"
        )
    return ProcessHandler(fn)


def check_handlers(handlers: Mapping[str, HandlerFunc]) -> dict[str, HandlerFunc]:
    """A copy of *handlers* as a dict, checked as a worker checks them before it
    connects: at least one, each task type a non-empty string, each handler callable,
    each process handler importable by reference (it is pickled to reach its
    process). Raises :class:`TypeError` or :class:`ValueError` saying which is not."""
    if not isinstance(handlers, Mapping):
        raise TypeError(f"handlers must be a Handlers or a Mapping, got {handlers!r}")
    table = dict(handlers)
    if not table:
        raise ValueError("a worker needs at least one handler")
    for task_type, fn in table.items():
        if not isinstance(task_type, str) or not task_type or not callable(fn):
            raise TypeError(f"bad handler entry {task_type!r}: {fn!r}")
        if isinstance(fn, ProcessHandler):
            try:
                pickle.dumps(fn)
            except Exception as exc:
                raise TypeError(
                    f"the handler for {task_type!r} cannot be sent to a process: {exc} "
                    "(a process handler must be importable by its module and name: a "
                    "module-level function)"
                ) from None
    return table


def handler_kind(fn: HandlerFunc) -> HandlerKind:
    """Where the worker runs the handler *fn*."""
    if isinstance(fn, ProcessHandler):
        return HandlerKind.PROCESS
    return HandlerKind.ASYNC if _is_async(fn) else HandlerKind.THREAD


def _is_async(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (a callable object's own method)
    )


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# -- what a running handler may ask of its worker ------------------------------------


class TaskContext(Protocol):
    """What a running handler's calls to :func:`current_task`, :func:`progress` and
    :func:`extend_deadline` refer to: its task, and the way its reports reach the
    worker's connection (from the worker's Trio task, a worker thread, or a process
    of the pool)."""

    @property
    def task(self) -> Task: ...

    def report_progress(self, report: TaskProgress) -> None: ...

    def extend(self, ms: int) -> None: ...


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("trio_pipe_task")


def _context(what: str) -> TaskContext:
    try:
        return _current.get()
    except LookupError:
        raise LookupError(f"{what} is only available while a handler runs") from None


def current_task() -> Task:
    """The :class:`~trio_pipe.protocol.Task` the calling handler is running.

    Gives a handler its task's id, metadata (``trace_id``, ``retry_count``, ...) for
    logging or idempotency. Works in async, thread and process handlers. Raises
    :class:`LookupError` outside a handler.
    """
    return _context("current_task()").task


def progress(fraction: float | None = None, message: str | None = None) -> None:
    """Tell the dispatcher how far the calling handler's task has come: *fraction*
    done (from 0 to 1) and/or a *message* for people, e.g. ``progress(0.4, "stage
    2")``. The report reaches the application as a ``Progress`` task event and as
    ``TaskHandle.progress``; reports arrive in the order they are made.

    Never blocks (the report is queued for the connection's writer); a few reports a
    second at most are worth sending. Works in async, thread and process handlers.
    Raises :class:`TypeError` or :class:`ValueError` for a bad argument, and
    :class:`LookupError` outside a handler.
    """
    if fraction is not None and (
        isinstance(fraction, bool) or not isinstance(fraction, numbers.Real)
    ):
        raise TypeError(f"fraction must be a number from 0 to 1, got {fraction!r}")
    if message is not None and not isinstance(message, str):
        raise TypeError(f"message must be a string, got {message!r}")
    report = TaskProgress(None if fraction is None else float(fraction), message)
    _context("progress()").report_progress(report)


def extend_deadline(ms: int) -> None:
    """Ask for more time: "I am alive; let my deadline be now + *ms* milliseconds".

    The worker moves its own clock for the task at once (its ``timeoutMs`` then runs
    out at now + *ms*, unless that is sooner than before) and sends the request to the
    dispatcher, which grants it only for task types it is configured to allow (up to a
    longest life per type). If it does not, its own deadline still stops the task
    (with ``Kill``). Works in async, thread and process handlers. Raises
    :class:`TypeError` or :class:`ValueError` unless *ms* is an int >= 1, and
    :class:`LookupError` outside a handler.
    """
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"ms must be an int, got {ms!r}")
    if ms < 1:
        raise ValueError(f"ms must be >= 1, got {ms}")
    _context("extend_deadline()").extend(ms)


class TaskFailure(Exception):
    """Raise from a handler to fail the task with a chosen error code.

    Any other exception fails the task with code ``HANDLER_ERROR`` (retryable); this
    one lets the handler say precisely what went wrong and whether a retry can help::

        raise TaskFailure("BAD_INPUT", "url must be absolute", retryable=False)
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as it was built (processes)
        return (_task_failure, (self.code, self.message, self.retryable))


def _task_failure(code: str, message: str, retryable: bool) -> TaskFailure:
    return TaskFailure(code, message, retryable=retryable)


def _structure_payload(payload: Any, spec: type[S]) -> S:
    """Build *spec* from a payload, or raise TaskFailure(PARSE_ERROR) saying why."""
    if not isinstance(payload, dict):
        kind = "null" if payload is None else type(payload).__name__
        raise TaskFailure(
            ErrorCode.PARSE_ERROR,
            f"payload does not match {spec.__name__}: expected a JSON object, got {kind}",
        )
    try:
        value: S = converter.structure(payload, spec)
    except Exception as exc:
        errors = describe_structure_error(exc, path="payload")
        raise TaskFailure(
            ErrorCode.PARSE_ERROR,
            f"payload does not match {spec.__name__}: {'; '.join(errors)}",
        ) from None
    return value


def _check_handler(task_type: str, fn: object) -> None:
    if not isinstance(task_type, str) or not task_type:
        raise ValueError(f"task type must be a non-empty string, got {task_type!r}")
    if not callable(fn):
        raise TypeError(f"handler for {task_type!r} is not callable: {fn!r}")


@attrs.frozen
class _Typed:
    """A plain (thread or process) handler of a typed task: payload structured into
    *spec*, the result unstructured (picklable when *spec* and *fn* are importable)."""

    spec: type[TaskSpec[Any]]
    fn: Callable[[Any], Any]

    def __call__(self, payload: Any) -> Any:
        return _unstructure_result(
            self.spec, self.fn(_structure_payload(payload, self.spec))
        )


def _unstructure_result(spec: type[TaskSpec[Any]], result: Any) -> Any:
    result_type = spec.result_type
    if result_type is Any:
        return converter.unstructure(result)
    return converter.unstructure(result, unstructure_as=result_type)


class _TypedRegistrar(Protocol[R]):
    """What :meth:`Handlers.typed` returns: a decorator of an async or plain handler
    of one typed task, which returns it unchanged."""

    @overload
    def __call__(self, fn: Callable[[S], Awaitable[R]]) -> Callable[[S], Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[[S], R]) -> Callable[[S], R]: ...


class Handlers(Mapping[str, HandlerFunc]):
    """The task types a worker serves, each with its handler.

    ::

        handlers = Handlers()

        @handlers.handler("echo")
        async def echo(payload: Any) -> Any:     # in the worker's Trio task
            return payload

        @handlers.handler("lookup")
        def lookup(payload: Any) -> Any:         # blocking: in a worker thread
            return some_sync_client.get(payload["key"])

        @handlers.handler("resize", process=True)
        def resize(payload: Any) -> Any:         # CPU-bound: in a process
            ...

        @handlers.typed(ScanTarget)          # task type "scan", from the spec class
        async def scan(target: ScanTarget) -> ScanReport: ...

    A ``Handlers`` is a read-only ``Mapping[str, HandlerFunc]`` from task type to
    wire-level handler (payload in, payload out), so anything that takes handlers
    takes a plain mapping of the same shape too (with :func:`in_process` marking a
    process handler). Decorators return the function unchanged. Registering a task
    type twice raises :class:`ValueError`. See :class:`HandlerKind` for where each
    kind runs and what cancelling it does.
    """

    def __init__(self, handlers: Mapping[str, HandlerFunc] | None = None) -> None:
        self._table: dict[str, HandlerFunc] = {}
        for task_type, fn in (handlers or {}).items():
            self.add(task_type, fn)

    def add(self, task_type: str, fn: HandlerFunc, *, process: bool = False) -> None:
        """Register *fn* (payload in, JSON-able result out) for *task_type*; with
        *process*, to run in a process (as :func:`in_process` does)."""
        _check_handler(task_type, fn)
        if process:
            fn = in_process(fn)
        if task_type in self._table:
            raise ValueError(f"a handler for task type {task_type!r} is already registered")
        self._table[task_type] = fn

    def handler(self, task_type: str, *, process: bool = False) -> Callable[[F], F]:
        """Decorator: register ``f(payload) -> result`` for *task_type*: an ``async
        def``, or a plain function (run in a worker thread; with *process*, in a
        process of the worker's pool).

        The payload is the task's JSON value as decoded (dicts, lists, str, ...); the
        return value must be JSON-serialisable.
        """

        def register(fn: F) -> F:
            self.add(task_type, fn, process=process)
            return fn

        return register

    def typed(
        self, spec: type[TaskSpec[R]], *, process: bool = False
    ) -> _TypedRegistrar[R]:
        """Decorator: register a handler for the typed task *spec*: an ``async def``,
        or a plain function (run in a worker thread; with *process*, in a process).

        The handler is registered for ``spec.task_type``. It receives the payload
        structured into *spec* by :data:`trio_pipe.protocol.converter`, and its
        return value (of ``spec.result_type``) is unstructured with the same
        converter. A payload that does not fit *spec* fails the task with code
        ``PARSE_ERROR`` (not retryable) and a message naming each bad field; the
        handler is not called.
        """
        if not (isinstance(spec, type) and issubclass(spec, TaskSpec)):
            raise TypeError(f"typed() needs a TaskSpec subclass, got {spec!r}")

        def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            if not _is_async(fn):
                self.add(spec.task_type, _Typed(spec, fn), process=process)
                return fn
            if process:
                raise TypeError(
                    f"{_name(fn)} is an async function: a process runs a plain function"
                )

            async def wire_handler(payload: Any) -> Any:
                value = _structure_payload(payload, spec)
                return _unstructure_result(spec, await fn(value))

            wire_handler.__name__ = getattr(fn, "__name__", wire_handler.__name__)
            wire_handler.__qualname__ = getattr(
                fn, "__qualname__", wire_handler.__qualname__
            )
            self.add(spec.task_type, wire_handler)
            return fn

        return register

    def __getitem__(self, task_type: str) -> HandlerFunc:
        return self._table[task_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"Handlers({sorted(self._table)!r})"
