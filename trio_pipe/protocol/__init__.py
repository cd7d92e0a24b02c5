"""The trio_pipe wire protocol, sans-IO: messages, codec and session state machine.

Nothing here imports Trio or touches a socket; the Trio layer drives it.
"""

from ._codec import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_JSON_DEPTH,
    decode,
    encode,
    encode_dispatch,
    parse_json_value,
)
from ._converter import converter, describe_structure_error
from ._errors import LocalProtocolError, NotAMessage, ProtocolError, RemoteProtocolError
from ._fast import encode_completed
from ._framing import EOF, NEED_DATA, LineBuffer, Overlong
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
from ._session import WorkerSession
from ._state import Role, Session, SessionState
from ._types import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_MS,
    BackpressureSignal,
    HeartbeatPayload,
    Priority,
    Task,
    TaskError,
    TaskMetadata,
    TaskProgress,
    TaskResult,
    TaskStatus,
    WorkerRegistration,
    validate_worker_id,
)

__all__ = [
    "EOF",
    "NEED_DATA",
    "LineBuffer",
    "Overlong",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_JSON_DEPTH",
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
    "NotAMessage",
    "Message",
    "Priority",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "Session",
    "SessionState",
    "Shutdown",
    "Task",
    "TaskDispatch",
    "TaskError",
    "TaskMetadata",
    "TaskProgress",
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
    "describe_structure_error",
    "encode",
    "encode_completed",
    "encode_dispatch",
    "parse_json_value",
    "validate_worker_id",
]
