"""Value types carried by protocol messages (no I/O, no Trio)."""

from __future__ import annotations

import enum
import re
import types
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

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
    "TaskProgress",
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


@attrs.frozen
class _Fraction:
    """Validator of a number from 0 to 1, or None (the JSON Schema's ``minimum`` and
    ``maximum``)."""

    def __call__(
        self, _inst: object, attr: attrs.Attribute[float | None], value: float | None
    ) -> None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"{_camel(attr.name)} must be from 0 to 1, got {value}")


EXTENSION: Final = "trio_pipe.extension"
"""Field metadata marking an optional extension of rust-pipe v0.1 (docs/protocol.md):
written only when it holds something (not its default), so that a message without
it is written exactly as rust-pipe v0.1 writes it."""

_EXTENSION: Final = {EXTENSION: True}


def _extension(default: Any = None, validator: Any = None) -> Any:
    """An extension field (see :data:`EXTENSION`), with no value by default."""
    return attrs.field(default=default, validator=validator, metadata=_EXTENSION)


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


def _as_float(value: float | None) -> float | None:
    """An int as the float it stands for (written ``1.0``, as the converter reads it)."""
    if type(value) is int:
        return float(value)
    return value


@attrs.frozen
class TaskProgress:
    """How far a running task has come, as a worker reports it (both parts optional):
    *fraction* done, from 0 to 1, and a *message* for people."""

    fraction: float | None = attrs.field(
        default=None, converter=_as_float, validator=_Fraction()
    )
    message: str | None = None


def _check_extensions(
    inst: TaskResult, _attr: attrs.Attribute[int | None], value: int | None
) -> None:
    """``extend_ms`` >= 1, and neither it nor ``progress`` in a terminal result. (One
    plain function for both: every result is checked, the common one cheaply.)"""
    if value is None and inst.progress is None:
        return
    if inst.status in _TERMINAL:
        raise ValueError(
            f"a {inst.status.value} result carries no progress or extendMs "
            "(only a progress report does)"
        )
    if value is not None and value < 1:
        raise ValueError(f"extendMs must be >= 1, got {value}")


@attrs.frozen
class TaskResult:
    """What a worker reports about one task: a terminal status, or a non-terminal one
    (``Running``) as a progress report, which alone may carry ``progress`` and
    ``extend_ms`` (raises :class:`ValueError` otherwise)."""

    task_id: uuid.UUID
    status: TaskStatus
    payload: Any = None
    error: TaskError | None = None
    duration_ms: int = attrs.field(default=0, validator=_non_negative)
    worker_id: str = ""
    progress: TaskProgress | None = attrs.field(default=None, metadata=_EXTENSION)
    extend_ms: int | None = attrs.field(
        default=None, validator=_check_extensions, metadata=_EXTENSION
    )


def _frozen_limits(value: Mapping[str, int]) -> Mapping[str, int]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class _ConcurrencyLimits:
    """Validator of ``maxConcurrencyByType``: each limit from 1 to ``maxConcurrency``."""

    def __call__(
        self,
        inst: WorkerRegistration,
        _attr: attrs.Attribute[Mapping[str, int]],
        value: Mapping[str, int],
    ) -> None:
        for task_type, limit in value.items():
            where = f"maxConcurrencyByType[{task_type!r}]"
            if limit < 1:
                raise ValueError(f"{where} must be >= 1, got {limit}")
            if limit > inst.max_concurrency:
                raise ValueError(
                    f"{where} must be <= maxConcurrency ({inst.max_concurrency}), "
                    f"got {limit}"
                )


RUST_PIPE_LANGUAGES: Final = frozenset({"TypeScript", "Python", "Go"})
"""The languages rust-pipe 0.1's dispatcher knows by name: it reads any other
``language`` only in its object form, ``{"Other": name}``."""


def _language_on_wire(language: str) -> str | dict[str, str]:
    """``language`` as it is written: as rust-pipe 0.1 writes it, so that a rust-pipe
    dispatcher can read every registration (it refuses ``"Java"``, reads
    ``{"Other": "Java"}``)."""
    return language if language in RUST_PIPE_LANGUAGES else {"Other": language}


@attrs.frozen
class WorkerRegistration:
    worker_id: str = attrs.field(validator=_check_worker_id)
    supported_tasks: tuple[str, ...]
    max_concurrency: int = attrs.field(default=1, validator=_at_least(1))
    language: str = "Unknown"
    tags: tuple[str, ...] = ()
    #: Task type -> the most tasks of that type the worker runs at once.
    max_concurrency_by_type: Mapping[str, int] = attrs.field(
        factory=dict,
        converter=_frozen_limits,
        validator=_ConcurrencyLimits(),
        hash=False,  # a mapping: equal ones compare equal, but none is hashable
        metadata=_EXTENSION,
    )


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
    #: The worker is draining: no new task for the rest of this connection.
    draining: bool = attrs.field(default=False, metadata=_EXTENSION)
