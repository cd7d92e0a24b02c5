"""Handlers by task type: the registry a worker serves, and typed handlers."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

from .._errors import ErrorCode
from .._typed import TaskSpec
from ..protocol import Task, converter, describe_structure_error

__all__ = ["HandlerFunc", "Handlers", "TaskFailure", "current_task"]

HandlerFunc = Callable[[Any], Awaitable[Any]]
"""A wire-level handler: takes the task's JSON payload, returns the result payload."""

F = TypeVar("F", bound=HandlerFunc)
R = TypeVar("R")
S = TypeVar("S", bound=TaskSpec[Any])

_current_task: contextvars.ContextVar[Task] = contextvars.ContextVar("trio_pipe_task")


def current_task() -> Task:
    """The :class:`~trio_pipe.protocol.Task` the calling handler is running.

    Gives a handler its task's id, metadata (``trace_id``, ``retry_count``, ...) for
    logging or idempotency. Raises :class:`LookupError` outside a handler.
    """
    return _current_task.get()


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
    if inspect.isfunction(fn) and not inspect.iscoroutinefunction(fn):
        raise TypeError(f"handler for {task_type!r} must be an async function")


class Handlers(Mapping[str, HandlerFunc]):
    """The task types a worker serves, each with its async handler.

    ::

        handlers = Handlers()

        @handlers.handler("echo")
        async def echo(payload: Any) -> Any:
            return payload

        @handlers.typed(ScanTarget)          # task type "scan", from the spec class
        async def scan(target: ScanTarget) -> ScanReport: ...

    A ``Handlers`` is a read-only ``Mapping[str, HandlerFunc]`` from task type to
    wire-level handler (payload in, payload out), so anything that takes handlers
    takes a plain mapping of the same shape too. Decorators return the function
    unchanged. Registering a task type twice raises :class:`ValueError`.
    """

    def __init__(self, handlers: Mapping[str, HandlerFunc] | None = None) -> None:
        self._table: dict[str, HandlerFunc] = {}
        for task_type, fn in (handlers or {}).items():
            self.add(task_type, fn)

    def add(self, task_type: str, fn: HandlerFunc) -> None:
        """Register *fn* (payload in, JSON-able result out) for *task_type*."""
        _check_handler(task_type, fn)
        if task_type in self._table:
            raise ValueError(f"a handler for task type {task_type!r} is already registered")
        self._table[task_type] = fn

    def handler(self, task_type: str) -> Callable[[F], F]:
        """Decorator: register an ``async def f(payload) -> result`` for *task_type*.

        The payload is the task's JSON value as decoded (dicts, lists, str, ...); the
        return value must be JSON-serialisable.
        """

        def register(fn: F) -> F:
            self.add(task_type, fn)
            return fn

        return register

    def typed(
        self, spec: type[TaskSpec[R]]
    ) -> Callable[[Callable[[S], Awaitable[R]]], Callable[[S], Awaitable[R]]]:
        """Decorator: register a handler for the typed task *spec*.

        The handler is registered for ``spec.task_type``. It receives the payload
        structured into *spec* by :data:`trio_pipe.protocol.converter`, and its
        return value (of ``spec.result_type``) is unstructured with the same
        converter. A payload that does not fit *spec* fails the task with code
        ``PARSE_ERROR`` (not retryable) and a message naming each bad field; the
        handler is not called.
        """
        if not (isinstance(spec, type) and issubclass(spec, TaskSpec)):
            raise TypeError(f"typed() needs a TaskSpec subclass, got {spec!r}")
        result_type = spec.result_type

        def register(fn: Callable[[S], Awaitable[R]]) -> Callable[[S], Awaitable[R]]:
            async def wire_handler(payload: Any) -> Any:
                value = _structure_payload(payload, spec)
                result = await fn(value)  # type: ignore[arg-type]
                if result_type is Any:
                    return converter.unstructure(result)
                return converter.unstructure(result, unstructure_as=result_type)

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
