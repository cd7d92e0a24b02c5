"""trio_pipe: typed task dispatch from Trio to workers in any language.

Open a dispatcher with ``async with trio_pipe.open_dispatcher() as d:``, attach
workers, and ``await d.run(task)``.
"""

import importlib
from typing import TYPE_CHECKING, Any

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
    "BatchResult",
    "Dispatcher",
    "DispatcherClosed",
    "ErrorCode",
    "EventStream",
    "EventsDropped",
    "NoWorkerAvailable",
    "PoolFull",
    "PoolStats",
    "Priority",
    "ProtocolError",
    "QueueFull",
    "Restart",
    "RestartPolicy",
    "Task",
    "TaskError",
    "TaskEvent",
    "TaskEventKind",
    "TaskFailed",
    "TaskHandle",
    "TaskMetadata",
    "TaskResult",
    "TaskSpec",
    "TaskStatus",
    "TrioPipeError",
    "WorkerEvent",
    "WorkerEventKind",
    "WorkerInfo",
    "WorkerNotFound",
    "WorkerState",
    "__version__",
    "open_dispatcher",
]

if TYPE_CHECKING:
    from .dispatch import (
        Attempt,
        BatchResult,
        Dispatcher,
        EventsDropped,
        EventStream,
        PoolStats,
        Restart,
        RestartPolicy,
        TaskEvent,
        TaskEventKind,
        TaskHandle,
        WorkerEvent,
        WorkerEventKind,
        WorkerInfo,
        WorkerState,
        open_dispatcher,
    )

# The Trio layer is imported on first use, so that `import trio_pipe.protocol` (which
# imports this package first) stays free of Trio, as a sans-IO layer must.
_FROM_DISPATCH = frozenset(
    {
        "Attempt",
        "BatchResult",
        "Dispatcher",
        "EventStream",
        "EventsDropped",
        "PoolStats",
        "Restart",
        "RestartPolicy",
        "TaskEvent",
        "TaskEventKind",
        "TaskHandle",
        "WorkerEvent",
        "WorkerEventKind",
        "WorkerInfo",
        "WorkerState",
        "open_dispatcher",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _FROM_DISPATCH:
        raise AttributeError(f"module 'trio_pipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(".dispatch", __name__), name)
    globals()[name] = value
    return value
