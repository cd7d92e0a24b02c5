"""trio_pipe: typed task dispatch from Trio to workers in any language.

Open a dispatcher with ``async with trio_pipe.open_dispatcher() as d:``, attach
workers, and ``await d.run(task)``.
"""

from ._errors import (
    DispatcherClosed,
    ErrorCode,
    NoWorkerAvailable,
    PoolFull,
    QueueFull,
    TaskFailed,
    TrioPipeError,
    WorkerNotFound,
)
from ._typed import TaskSpec
from ._version import __version__
from .dispatch import (
    Attempt,
    Dispatcher,
    PoolStats,
    TaskHandle,
    WorkerInfo,
    WorkerState,
    open_dispatcher,
)
from .protocol import (
    Priority,
    ProtocolError,
    Task,
    TaskError,
    TaskMetadata,
    TaskResult,
    TaskStatus,
)

__all__ = [
    "Attempt",
    "Dispatcher",
    "DispatcherClosed",
    "ErrorCode",
    "NoWorkerAvailable",
    "PoolFull",
    "PoolStats",
    "Priority",
    "ProtocolError",
    "QueueFull",
    "Task",
    "TaskError",
    "TaskFailed",
    "TaskHandle",
    "TaskMetadata",
    "TaskResult",
    "TaskSpec",
    "TaskStatus",
    "TrioPipeError",
    "WorkerInfo",
    "WorkerNotFound",
    "WorkerState",
    "__version__",
    "open_dispatcher",
]
