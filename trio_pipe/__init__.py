"""trio_pipe: typed task dispatch from Trio to workers in any language.

Open a dispatcher with ``async with trio_pipe.open_dispatcher() as d:``, attach
workers, and ``await d.run(task)``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    AuthenticationFailed,
    ChannelClosed,
    DispatcherClosed,
    ErrorCode,
    HandshakeFailed,
    HandshakeRefused,
    HostKeyError,
    InvalidSpec,
    NoWorkerAvailable,
    PipelineError,
    PoolFull,
    QueueFull,
    RegistrationRefused,
    SshError,
    StoreError,
    TaskFailed,
    TaskNotFound,
    TrioPipeError,
    WorkerConnectionError,
    WorkerNotFound,
    WorkflowError,
    WorkflowFailed,
)
from ._typed import TaskSpec
from ._version import __version__
from .protocol import (
    LocalProtocolError,
    NotAMessage,
    Priority,
    ProtocolError,
    RemoteProtocolError,
    Task,
    TaskError,
    TaskMetadata,
    TaskProgress,
    TaskResult,
    TaskStatus,
)

# The Trio layer (trio_pipe.dispatch) is imported on first use, so that
# `import trio_pipe.protocol` (which imports this package first) stays free of Trio, as
# a sans-IO layer must. Every name it exports is one of ours: this is its list.
_FROM_DISPATCH = (
    "LEGAL_TASK_TRANSITIONS",
    "Attempt",
    "BatchResult",
    "Dispatcher",
    "DispatcherConfig",
    "Event",
    "EventStream",
    "EventsDropped",
    "PoolStats",
    "Restart",
    "RestartPolicy",
    "StepEvent",
    "StepEventKind",
    "TaskEvent",
    "TaskEventKind",
    "TaskHandle",
    "WorkerEvent",
    "WorkerEventKind",
    "WorkerInfo",
    "WorkerState",
    "open_dispatcher",
)
# The stores (trio_pipe.store) too: SqliteStore runs on Trio's threads.
_FROM_STORE = (
    "AttemptRecord",
    "MemoryStore",
    "Retention",
    "SqliteStore",
    "Store",
    "TaskRecord",
)
# And the authenticators (trio_pipe.auth), which load PyJWT.
_FROM_AUTH = ("CertificateAuth", "Claims", "TokenAuth")
# This one needs the optional ``ssh`` extra (asyncssh, trio-asyncio), so it is imported
# on first use too, and left out of __all__ (``from trio_pipe import *`` must work
# without the extra).
_FROM_SSH = "INSECURE_ACCEPT_ANY_HOST_KEY"

__all__ = [
    "AuthenticationFailed",
    "ChannelClosed",
    "DispatcherClosed",
    "ErrorCode",
    "HandshakeFailed",
    "HandshakeRefused",
    "HostKeyError",
    "InvalidSpec",
    "LocalProtocolError",
    "NoWorkerAvailable",
    "NotAMessage",
    "PoolFull",
    "Priority",
    "ProtocolError",
    "QueueFull",
    "RegistrationRefused",
    "RemoteProtocolError",
    "SshError",
    "PipelineError",
    "StoreError",
    "Task",
    "TaskError",
    "TaskFailed",
    "TaskNotFound",
    "TaskMetadata",
    "TaskProgress",
    "TaskResult",
    "TaskSpec",
    "TaskStatus",
    "TrioPipeError",
    "WorkerConnectionError",
    "WorkerNotFound",
    "WorkflowError",
    "WorkflowFailed",
    "__version__",
    *_FROM_DISPATCH,
    *_FROM_STORE,
    *_FROM_AUTH,
]

if TYPE_CHECKING:
    from .auth import CertificateAuth as CertificateAuth
    from .auth import Claims as Claims
    from .auth import TokenAuth as TokenAuth
    from .dispatch import *  # noqa: F403 (names re-exported: _FROM_DISPATCH)
    from .store import *  # noqa: F403 (names re-exported: _FROM_STORE)
    from .transports._ssh import (
        INSECURE_ACCEPT_ANY_HOST_KEY as INSECURE_ACCEPT_ANY_HOST_KEY,
    )


def __getattr__(name: str) -> Any:
    if name in _FROM_DISPATCH:
        module = ".dispatch"
    elif name in _FROM_STORE:
        module = ".store"
    elif name in _FROM_AUTH:
        module = ".auth"
    elif name == _FROM_SSH:
        module = ".transports._ssh"
    else:
        raise AttributeError(f"module 'trio_pipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
