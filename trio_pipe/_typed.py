"""Typed tasks: a payload class that names its task type and its result type."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from .protocol import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, Priority, Task, converter

__all__ = ["TaskSpec"]

R = TypeVar("R")


class TaskSpec(Generic[R]):
    """Base class for typed task payloads.

    Subclass it with the result type as the type argument and the wire task type as a
    class keyword, and make the class an attrs class::

        @attrs.frozen
        class ScanReport:
            url: str
            links: int

        @attrs.frozen
        class ScanTarget(TaskSpec[ScanReport], task_type="scan"):
            url: str

    ``await dispatcher.run(ScanTarget(url=...))`` then returns a ``ScanReport`` (type
    checkers see it too), and a worker handler registered with
    :meth:`trio_pipe.worker.Handlers.typed` receives a ``ScanTarget``. Payloads and
    results go through :data:`trio_pipe.protocol.converter`, with field names as
    written in the class.
    """

    task_type: ClassVar[str]
    result_type: ClassVar[Any]

    def __init_subclass__(cls, *, task_type: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if task_type is None:
            if "task_type" not in cls.__dict__:  # attrs' slotted copy keeps it
                raise TypeError(f"{cls.__name__} needs a task_type=... class keyword")
            return
        if not task_type:
            raise TypeError("task_type must be a non-empty string")
        cls.task_type = task_type
        for base in cls.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is TaskSpec:
                (cls.result_type,) = get_args(base)
                break
        else:
            cls.result_type = Any

    def to_task(
        self,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        priority: Priority = Priority.NORMAL,
        max_retries: int = DEFAULT_MAX_RETRIES,
        trace_id: str | None = None,
    ) -> Task:
        """The wire :class:`Task` carrying this payload."""
        return Task.new(
            self.task_type,
            converter.unstructure(self),
            timeout_ms=timeout_ms,
            priority=priority,
            max_retries=max_retries,
            trace_id=trace_id,
        )

    @classmethod
    def structure_result(cls, payload: Any) -> R:
        """Build the declared result type from a result payload."""
        result: R = converter.structure(payload, cls.result_type)
        return result
