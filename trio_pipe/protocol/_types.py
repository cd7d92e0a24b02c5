"""Value types carried by protocol messages (no I/O, no Trio)."""

from __future__ import annotations

import enum
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT_MS",
    "BackpressureSignal",
    "HeartbeatPayload",
    "Priority",
    "Task",
    "TaskError",
    "TaskMetadata",
    "TaskResult",
    "TaskStatus",
    "WorkerRegistration",
    "validate_worker_id",
]

DEFAULT_TIMEOUT_MS = 300_000
DEFAULT_MAX_RETRIES = 3

_WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_worker_id(worker_id: str) -> str:
    """Return *worker_id* if it is 1-128 chars of ``[A-Za-z0-9._-]`` starting
    alphanumeric; raise :class:`ValueError` otherwise."""
    if not isinstance(worker_id, str) or not _WORKER_ID.fullmatch(worker_id):
        raise ValueError(
            f"invalid worker id {worker_id!r}: expected 1-128 characters of "
            "[A-Za-z0-9._-] starting with a letter or digit"
        )
    return worker_id


def _check_worker_id(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    validate_worker_id(value)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Priority(enum.IntEnum):
    """Task priority; higher runs first. On the wire: ``"Low"`` ... ``"Critical"``."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def wire_name(self) -> str:
        return self.name.capitalize()


class TaskStatus(enum.Enum):
    """Where a task is in its lifecycle. On the wire: the PascalCase value."""

    PENDING = "Pending"
    DISPATCHED = "Dispatched"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED}
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@attrs.frozen
class _AtLeast:
    """Validator of an integer field's lower bound (the JSON Schema's ``minimum``)."""

    minimum: int

    def __call__(
        self, _inst: object, attr: attrs.Attribute[int], value: int | None
    ) -> None:
        if value is not None and value < self.minimum:
            raise ValueError(f"{_camel(attr.name)} must be >= {self.minimum}, got {value}")


def _at_least(minimum: int) -> _AtLeast:
    return _AtLeast(minimum)


_non_negative = _at_least(0)

EXTENSION = "trio_pipe.extension"
"""The attrs metadata key of a field trio_pipe adds to rust-pipe v0.1's messages."""


def _extension(default: Any = None, validator: Any = None) -> Any:
    """A field beyond rust-pipe v0.1: optional on input, and written only when it
    holds something other than its default, so that every message a v0.1 peer could
    send or read keeps its exact v0.1 form."""
    return attrs.field(default=default, validator=validator, metadata={EXTENSION: True})


@attrs.frozen
class TaskMetadata:
    created_at: datetime = attrs.field(factory=_utcnow, converter=_as_utc)
    timeout_ms: int = attrs.field(default=DEFAULT_TIMEOUT_MS, validator=_non_negative)
    priority: Priority = Priority.NORMAL
    retry_count: int = attrs.field(default=0, validator=_non_negative)
    max_retries: int = attrs.field(default=DEFAULT_MAX_RETRIES, validator=_non_negative)
    trace_id: str | None = None
    #: The caller's key for the task: a second submission with the same key is the
    #: same task (within the store's retention).
    idempotency_key: str | None = _extension()
    #: Which try of the task this dispatch is (1, 2, ... over the task's whole life,
    #: across restarts), and the dispatcher's epoch: together the fencing token.
    attempt: int | None = _extension(validator=_at_least(1))
    epoch: int | None = _extension(validator=_non_negative)


@attrs.frozen
class Task:
    """One unit of work: a type that selects the handler, and a JSON payload."""

    id: uuid.UUID
    task_type: str
    payload: Any = None
    metadata: TaskMetadata = attrs.field(factory=TaskMetadata)

    @classmethod
    def new(
        cls,
        task_type: str,
        payload: Any = None,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        priority: Priority = Priority.NORMAL,
        max_retries: int = DEFAULT_MAX_RETRIES,
        trace_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """A new task with a fresh random id, created now."""
        if not task_type:
            raise ValueError("task_type must be a non-empty string")
        return cls(
            id=uuid.uuid4(),
            task_type=task_type,
            payload=payload,
            metadata=TaskMetadata(
                timeout_ms=timeout_ms,
                priority=Priority(priority),
                max_retries=max_retries,
                trace_id=trace_id,
                idempotency_key=idempotency_key,
            ),
        )


@attrs.frozen
class TaskError:
    code: str
    message: str
    retryable: bool = False


@attrs.frozen
class TaskResult:
    task_id: uuid.UUID
    status: TaskStatus
    payload: Any = None
    error: TaskError | None = None
    duration_ms: int = attrs.field(default=0, validator=_non_negative)
    worker_id: str = ""


@attrs.frozen
class WorkerRegistration:
    worker_id: str = attrs.field(validator=_check_worker_id)
    supported_tasks: tuple[str, ...]
    max_concurrency: int = attrs.field(default=1, validator=_at_least(1))
    language: str = "Unknown"
    tags: tuple[str, ...] = ()


@attrs.frozen
class HeartbeatPayload:
    worker_id: str
    active_tasks: int = attrs.field(default=0, validator=_non_negative)
    capacity: int = attrs.field(default=0, validator=_non_negative)
    uptime_seconds: int = attrs.field(default=0, validator=_non_negative)


@attrs.frozen
class BackpressureSignal:
    worker_id: str
    current_load: float = 0.0
    should_throttle: bool = False
