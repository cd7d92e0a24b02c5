"""The nine wire messages. Each class's ``TYPE`` is its ``"type"`` tag on the wire."""

from __future__ import annotations

import uuid
from typing import ClassVar

import attrs

from ._types import (
    BackpressureSignal,
    HeartbeatPayload,
    Task,
    TaskResult,
    WorkerRegistration,
)

__all__ = [
    "DISPATCHER_MESSAGES",
    "WORKER_MESSAGES",
    "Backpressure",
    "DispatcherMessage",
    "Heartbeat",
    "HeartbeatAck",
    "Kill",
    "Message",
    "Shutdown",
    "TaskDispatch",
    "TaskResultMessage",
    "WorkerMessage",
    "WorkerRegister",
    "WorkerRegistered",
]


# Dispatcher -> worker


@attrs.frozen
class TaskDispatch:
    TYPE: ClassVar[str] = "TaskDispatch"
    task: Task


@attrs.frozen
class Kill:
    TYPE: ClassVar[str] = "Kill"
    task_id: uuid.UUID
    reason: str = ""


@attrs.frozen
class Shutdown:
    TYPE: ClassVar[str] = "Shutdown"
    graceful: bool = True


@attrs.frozen
class WorkerRegistered:
    TYPE: ClassVar[str] = "WorkerRegistered"
    worker_id: str


@attrs.frozen
class HeartbeatAck:
    TYPE: ClassVar[str] = "HeartbeatAck"


# Worker -> dispatcher


@attrs.frozen
class WorkerRegister:
    TYPE: ClassVar[str] = "WorkerRegister"
    registration: WorkerRegistration


@attrs.frozen
class Heartbeat:
    TYPE: ClassVar[str] = "Heartbeat"
    payload: HeartbeatPayload


@attrs.frozen
class TaskResultMessage:
    """``{"type":"TaskResult","result":...}`` (named apart from :class:`TaskResult`)."""

    TYPE: ClassVar[str] = "TaskResult"
    result: TaskResult


@attrs.frozen
class Backpressure:
    TYPE: ClassVar[str] = "Backpressure"
    signal: BackpressureSignal


DispatcherMessage = TaskDispatch | Kill | Shutdown | WorkerRegistered | HeartbeatAck
WorkerMessage = WorkerRegister | Heartbeat | TaskResultMessage | Backpressure
Message = DispatcherMessage | WorkerMessage

DISPATCHER_MESSAGES: tuple[type[DispatcherMessage], ...] = (
    TaskDispatch,
    Kill,
    Shutdown,
    WorkerRegistered,
    HeartbeatAck,
)
WORKER_MESSAGES: tuple[type[WorkerMessage], ...] = (
    WorkerRegister,
    Heartbeat,
    TaskResultMessage,
    Backpressure,
)
