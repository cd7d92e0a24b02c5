"""The Trio layer: pool, queue, task handles and the dispatcher's nursery tree."""

from ._config import DispatcherConfig
from ._dispatcher import Dispatcher
from ._events import (
    LEGAL_TASK_TRANSITIONS,
    Event,
    EventsDropped,
    EventStream,
    StepEvent,
    StepEventKind,
    TaskEvent,
    TaskEventKind,
    WorkerEvent,
    WorkerEventKind,
)
from ._handle import Attempt, BatchResult, TaskHandle
from ._open import open_dispatcher
from ._pool import PoolStats, WorkerInfo, WorkerState
from ._supervisor import Restart, RestartPolicy

__all__ = [
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
]
