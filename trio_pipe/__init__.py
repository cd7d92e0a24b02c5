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
    from .transports._ssh import (
        INSECURE_ACCEPT_ANY_HOST_KEY as INSECURE_ACCEPT_ANY_HOST_KEY,
    )
    from .transports._ssh import HostKeyError as HostKeyError
    from .transports._ssh import SshError as SshError

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


# The SSH names need the optional ``ssh`` extra (asyncssh, trio-asyncio), so they are
# imported on first use too, and left out of __all__ (``from trio_pipe import *`` must
# work without the extra).
_FROM_SSH = frozenset({"HostKeyError", "INSECURE_ACCEPT_ANY_HOST_KEY", "SshError"})


def __getattr__(name: str) -> Any:
    if name in _FROM_DISPATCH:
        module = ".dispatch"
    elif name in _FROM_SSH:
        module = ".transports._ssh"
    else:
        raise AttributeError(f"module 'trio_pipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
