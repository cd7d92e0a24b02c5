"""The trio_pipe wire protocol, sans-IO: messages, codec and session state machine.

Nothing here imports Trio or touches a socket; the Trio layer drives it.
"""

from ._codec import DEFAULT_MAX_FRAME_SIZE, ProtocolError, converter, decode, encode
from ._messages import (
    DISPATCHER_MESSAGES,
    WORKER_MESSAGES,
    Backpressure,
    DispatcherMessage,
    Heartbeat,
    HeartbeatAck,
    Kill,
    Message,
    Shutdown,
    TaskDispatch,
    TaskResultMessage,
    WorkerMessage,
    WorkerRegister,
    WorkerRegistered,
)
from ._session import LocalProtocolError, SessionState, WorkerSession
from ._types import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_MS,
    BackpressureSignal,
    HeartbeatPayload,
    Priority,
    Task,
    TaskError,
    TaskMetadata,
    TaskResult,
    TaskStatus,
    WorkerRegistration,
    validate_worker_id,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT_MS",
    "DISPATCHER_MESSAGES",
    "WORKER_MESSAGES",
    "Backpressure",
    "BackpressureSignal",
    "DispatcherMessage",
    "Heartbeat",
    "HeartbeatAck",
    "HeartbeatPayload",
    "Kill",
    "LocalProtocolError",
    "Message",
    "Priority",
    "ProtocolError",
    "SessionState",
    "Shutdown",
    "Task",
    "TaskDispatch",
    "TaskError",
    "TaskMetadata",
    "TaskResult",
    "TaskResultMessage",
    "TaskStatus",
    "WorkerMessage",
    "WorkerRegister",
    "WorkerRegistered",
    "WorkerRegistration",
    "WorkerSession",
    "converter",
    "decode",
    "encode",
    "validate_worker_id",
]
