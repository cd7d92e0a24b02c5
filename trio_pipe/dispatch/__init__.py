"""The Trio layer: pool, queue, task handles and the dispatcher's nursery tree."""

from ._dispatcher import Dispatcher, open_dispatcher
from ._handle import Attempt, TaskHandle
from ._pool import PoolStats, WorkerInfo, WorkerState

__all__ = [
    "Attempt",
    "Dispatcher",
    "PoolStats",
    "TaskHandle",
    "WorkerInfo",
    "WorkerState",
    "open_dispatcher",
]
