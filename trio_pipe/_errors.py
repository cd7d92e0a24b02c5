"""Exceptions raised by the public API, and the error codes trio_pipe itself writes."""

from __future__ import annotations

from typing import Final

from .protocol import TaskResult

__all__ = [
    "DispatcherClosed",
    "ErrorCode",
    "NoWorkerAvailable",
    "PoolFull",
    "QueueFull",
    "TaskFailed",
    "TrioPipeError",
    "WorkerNotFound",
]


class ErrorCode:
    """The ``TaskError.code`` values trio_pipe produces (workers may add their own)."""

    UNKNOWN_TASK_TYPE: Final = "UNKNOWN_TASK_TYPE"
    HANDLER_ERROR: Final = "HANDLER_ERROR"
    PARSE_ERROR: Final = "PARSE_ERROR"
    TIMEOUT: Final = "TIMEOUT"
    KILLED: Final = "KILLED"
    CANCELLED: Final = "CANCELLED"
    WORKER_DISCONNECTED: Final = "WORKER_DISCONNECTED"
    WORKER_REMOVED: Final = "WORKER_REMOVED"
    WORKER_SATURATED: Final = "WORKER_SATURATED"
    WORKER_SHUTTING_DOWN: Final = "WORKER_SHUTTING_DOWN"
    DISPATCHER_CLOSED: Final = "DISPATCHER_CLOSED"
    INVALID_PAYLOAD: Final = "INVALID_PAYLOAD"
    # WASM workers (spawn_wasm): how a module's run failed.
    WASM_TRAP: Final = "WASM_TRAP"  # a trap; the message is the trap's
    WASM_EXIT: Final = "WASM_EXIT"  # a non-zero exit status; the message has stderr
    WASM_MEMORY_LIMIT: Final = "WASM_MEMORY_LIMIT"  # failed at max_memory_bytes
    WASM_FUEL_EXHAUSTED: Final = "WASM_FUEL_EXHAUSTED"  # used up its fuel budget
    WASM_OUTPUT_LIMIT: Final = "WASM_OUTPUT_LIMIT"  # wrote more than max_output_bytes


class TrioPipeError(Exception):
    """Base class of trio_pipe's own exceptions."""


class TaskFailed(TrioPipeError):
    """A task ended in any status but ``Completed``; ``result`` tells how."""

    def __init__(self, result: TaskResult) -> None:
        error = result.error
        detail = f"{error.code}: {error.message}" if error else "no error given"
        super().__init__(f"task {result.task_id} {result.status.value}: {detail}")
        self.result = result

    @property
    def code(self) -> str | None:
        return self.result.error.code if self.result.error else None


class DispatcherClosed(TrioPipeError):
    """The dispatcher is shutting down or closed; it takes no new tasks."""


class NoWorkerAvailable(TrioPipeError):
    """No registered worker supports this task type (``submit_nowait`` only)."""


class QueueFull(TrioPipeError):
    """The dispatcher's queue holds ``max_queued`` tasks (``submit_nowait`` only)."""


class WorkerNotFound(TrioPipeError, LookupError):
    """No connected worker has this id."""


class PoolFull(TrioPipeError):
    """The pool already holds ``max_pool_size`` workers."""
