"""One cattrs converter, and ``encode``/``decode`` between messages and JSON text.

Liberal on input (case-insensitive enums, defaults for missing optional fields,
``task_id``/``workerId`` aliases, ``language`` as a string or ``{"Other": ...}``),
exact on output (camelCase fields, PascalCase enums, every field written).

The two messages of every task (``TaskDispatch`` out, ``TaskResult`` back) also have a
fast path through orjson, taken only when it gives exactly what the reference path
(cattrs and the standard library's ``json``) gives; anything unusual goes the reference
way. See "Fast paths" below.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from . import _messages, _types
from ._messages import (
    DISPATCHER_MESSAGES,
    WORKER_MESSAGES,
    Backpressure,
    Message,
    TaskDispatch,
    TaskResultMessage,
)
from ._types import (
    BackpressureSignal,
    Priority,
    Task,
    TaskError,
    TaskMetadata,
    TaskResult,
    TaskStatus,
    _camel,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "ProtocolError",
    "converter",
    "decode",
    "describe_structure_error",
    "encode",
    "encode_dispatch",
]

DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
"""Largest frame :func:`decode` accepts by default, in bytes (or characters for ``str``)."""

T = TypeVar("T")


class ProtocolError(Exception):
    """A peer broke the protocol. ``reason`` says precisely how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# The converter

converter: Final = cattrs.Converter(detailed_validation=True)
"""The one converter: protocol classes and user payload classes go through it."""

_PROTOCOL_CLASSES: Final[frozenset[type]] = frozenset(
    {
        _types.TaskMetadata,
        _types.Task,
        _types.TaskError,
        _types.TaskResult,
        _types.WorkerRegistration,
        _types.HeartbeatPayload,
        _types.BackpressureSignal,
        *DISPATCHER_MESSAGES,
        *WORKER_MESSAGES,
    }
)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _strict(kind: type[T], *accepted: type) -> Callable[[Any, Any], T]:
    accepted = accepted or (kind,)

    def structure(value: Any, _: Any) -> T:
        if isinstance(value, bool) and bool not in accepted:
            raise TypeError(f"expected {kind.__name__}, got bool")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {_type_name(value)}")
        return kind(value)  # type: ignore[call-arg]

    return structure


converter.register_structure_hook(int, _strict(int))
converter.register_structure_hook(float, _strict(float, float, int))
converter.register_structure_hook(str, _strict(str))
converter.register_structure_hook(bool, _strict(bool))


def _structure_str_tuple(value: Any, _: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {_type_name(value)}")
    return tuple(value)


def _is_str_tuple(tp: Any) -> bool:
    return bool(tp == tuple[str, ...])


converter.register_structure_hook_func(_is_str_tuple, _structure_str_tuple)
converter.register_unstructure_hook_func(_is_str_tuple, list)


def _structure_uuid(value: Any, _: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise TypeError(f"expected a UUID string, got {_type_name(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"not a UUID: {value[:64]!r}") from None


converter.register_structure_hook(uuid.UUID, _structure_uuid)
converter.register_unstructure_hook(uuid.UUID, str)


def _structure_datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 3339 timestamp, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _unstructure_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


converter.register_structure_hook(datetime, _structure_datetime)
converter.register_unstructure_hook(datetime, _unstructure_datetime)

_PRIORITIES: Final = {p.wire_name.lower(): p for p in Priority}
_STATUSES: Final = {s.value.lower(): s for s in TaskStatus}


def _enum_hook(table: Mapping[str, T], what: str) -> Callable[[Any, Any], T]:
    def structure(value: Any, _: Any) -> T:
        if isinstance(value, str):
            found = table.get(value.replace("_", "").lower())
            if found is not None:
                return found
            raise ValueError(f"unknown {what} {value[:64]!r}")
        raise TypeError(f"expected a {what} string, got {_type_name(value)}")

    return structure


converter.register_structure_hook(Priority, _enum_hook(_PRIORITIES, "priority"))
converter.register_unstructure_hook(Priority, lambda p: p.wire_name)
converter.register_structure_hook(TaskStatus, _enum_hook(_STATUSES, "task status"))
converter.register_unstructure_hook(TaskStatus, lambda s: s.value)


@attrs.frozen
class _Alias:
    """Normaliser: read the member *old* as *new* when *new* is absent."""

    old: str
    new: str

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.new not in data and self.old in data:
            data = {**data, self.new: data[self.old]}
        return data


def _alias(old: str, new: str) -> _Alias:
    return _Alias(old, new)


def _normalise_registration(data: dict[str, Any]) -> dict[str, Any]:
    language = data.get("language")
    if isinstance(language, dict) and len(language) == 1:
        data = {**data, "language": next(iter(language.values()))}
    return data


_NORMALISERS: Final[dict[type, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    _messages.Kill: _alias("task_id", "taskId"),
    _messages.WorkerRegistered: _alias("worker_id", "workerId"),
    _types.WorkerRegistration: _normalise_registration,
}


def _protocol_structure_factory(cls: type[T]) -> Callable[[Any, Any], T]:
    renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}  # type: ignore[arg-type]
    generated = make_dict_structure_fn(cls, converter, **renames)  # type: ignore[arg-type]
    normalise = _NORMALISERS.get(cls)

    def structure(value: Any, _: Any) -> T:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {_type_name(value)}")
        if normalise is not None:
            value = normalise(value)
        return generated(value, cls)

    return structure


def _protocol_unstructure_factory(cls: type[T]) -> Callable[[T], dict[str, Any]]:
    renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}  # type: ignore[arg-type]
    return make_dict_unstructure_fn(cls, converter, **renames)  # type: ignore[arg-type]


converter.register_structure_hook_factory(
    lambda cls: cls in _PROTOCOL_CLASSES, _protocol_structure_factory
)
converter.register_unstructure_hook_factory(
    lambda cls: cls in _PROTOCOL_CLASSES, _protocol_unstructure_factory
)


# ---------------------------------------------------------------------------
# encode / decode

_BY_TAG: Final[dict[str, type[Message]]] = {
    cls.TYPE.lower(): cls for cls in (*DISPATCHER_MESSAGES, *WORKER_MESSAGES)
}
_SNAKE_SEGMENT: Final = re.compile(r"(?<=\.)[a-z0-9]+(?:_[a-z0-9]+)+")


_JSON_ENCODER: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def encode(message: Message) -> str:
    """The canonical JSON text of *message* (compact, camelCase, every field).

    Raises :class:`ValueError` or :class:`TypeError` if a payload is not JSON.
    """
    if isinstance(message, TaskDispatch):
        return encode_dispatch(message.task)
    if isinstance(message, TaskResultMessage):
        text = _encode_result_fast(message.result)
        if text is not None:
            return text
    return _encode_reference(message)


def encode_dispatch(
    task: Task, *, timeout_ms: int | None = None, retry_count: int | None = None
) -> str:
    """``encode(TaskDispatch(task))``, with the metadata's ``timeoutMs`` and
    ``retryCount`` replaced when given (the dispatcher's hot path: no copy of the task).
    """
    metadata = task.metadata
    timeout = metadata.timeout_ms if timeout_ms is None else timeout_ms
    retries = metadata.retry_count if retry_count is None else retry_count
    text = _encode_dispatch_fast(task, timeout, retries)
    if text is not None:
        return text
    if timeout != metadata.timeout_ms or retries != metadata.retry_count:
        metadata = attrs.evolve(metadata, timeout_ms=timeout, retry_count=retries)
        task = attrs.evolve(task, metadata=metadata)
    return _encode_reference(TaskDispatch(task))


def _encode_reference(message: Message) -> str:
    data = converter.unstructure(message)
    return _JSON_ENCODER.encode({"type": message.TYPE, **data})


def _camel_path(error: str) -> str:
    """camelCase the path after the last " @ " (not the quoted value before it)."""
    message, at, path = error.rpartition(" @ ")
    return message + at + _SNAKE_SEGMENT.sub(lambda m: _camel(m.group()), path)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def _format_error(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, TypeError | ValueError | OverflowError) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, _type)


def describe_structure_error(exc: Exception, *, path: str = "$") -> list[str]:
    """What :data:`converter` found wrong, one line per problem, each ending with the
    path of the bad value (``expected int, got str @ $.depth``)."""
    return cattrs.transform_error(exc, path=path, format_exception=_format_error)


def decode(data: str | bytes, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> Message:
    """Parse one frame into a message. Raises only :class:`ProtocolError`."""
    if len(data) > max_size:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the limit of {max_size}")
    message = _decode_fast(data)
    if message is not None:
        return message
    return _decode_reference(data)


def _decode_reference(data: str | bytes) -> Message:
    try:
        obj = json.loads(data, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError:
        raise ProtocolError("not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object, got {_type_name(obj)}")
    tag = obj.get("type")
    if not isinstance(tag, str):
        raise ProtocolError(
            "missing message type" if tag is None else "message type must be a string"
        )
    cls = _BY_TAG.get(tag.lower())
    if cls is None:
        raise ProtocolError(f"unknown message type {tag[:64]!r}")
    try:
        return converter.structure(obj, cls)
    except RecursionError:
        raise ProtocolError(f"invalid {cls.TYPE}: nested too deeply") from None
    except Exception as exc:
        details = "; ".join(_camel_path(e) for e in describe_structure_error(exc))
        raise ProtocolError(f"invalid {cls.TYPE}: {details}") from None


# ---------------------------------------------------------------------------
# Fast paths
#
# orjson writes and reads JSON ~10x faster than the standard library, but not always
# the same way: it writes NaN as null, some floats in another form (0.00001 for
# 1e-05), enums, UUIDs and dataclasses natively; it reads integers beyond 64 bits as
# floats. So a fast path is taken only for documents that hold nothing of that kind,
# and for the canonical shape of the hot messages (TaskResult's optional fields may
# be left out); every other document, and every error, goes the reference way, which
# therefore still decides every rule. (tests/test_protocol_fast.py checks that both
# ways agree.)

_FLOAT_FORM_DIFFERS: Final = (1e-10, 1e-4)  # orjson: 1e-9 -> "1e-9", repr "1e-09"
_INT_RANGE: Final = range(-(2**63), 2**64)


def _written_alike(value: Any) -> bool:
    """Whether orjson writes *value* exactly as the reference encoder would: only
    str, bool, None, 64-bit ints, finite floats of common form, and lists and
    str-keyed dicts of these (exact types: subclasses may have their own hooks)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return value in _INT_RANGE
    if kind is float:
        low, high = _FLOAT_FORM_DIFFERS
        return math.isfinite(value) and not low <= abs(value) < high
    if kind is list:
        return all(map(_written_alike, value))
    if kind is dict:
        return all(type(key) is str for key in value) and all(
            map(_written_alike, value.values())
        )
    return False


def _read_alike(value: Any) -> bool:
    """Whether orjson's reading of *value* is what the standard library reads: a
    float this large may have been an integer beyond 64 bits."""
    kind = type(value)
    if kind is float:
        return bool(abs(value) < 2.0**63)
    if kind is list:
        return all(map(_read_alike, value))
    if kind is dict:
        return all(map(_read_alike, value.values()))
    return True


def encode_completed(
    task_id: uuid.UUID, payload: Any, *, duration_ms: int, worker_id: str
) -> str | None:
    """``encode`` of a ``Completed`` result without building the message (a worker's
    hot path); None when that fast path does not apply: then build the message and
    ``encode`` it, which also says why a payload cannot be written."""
    if type(task_id) is not uuid.UUID or type(worker_id) is not str:
        return None
    document = {
        "type": _messages.TaskResultMessage.TYPE,
        "result": {
            "taskId": task_id,
            "status": _types.TaskStatus.COMPLETED.value,
            "payload": payload,
            "error": None,
            "durationMs": duration_ms,
            "workerId": worker_id,
        },
    }
    return _dumps(document, payload)


def _dumps(document: dict[str, Any], payload: Any) -> str | None:
    """orjson's text for *document*, whose only free-form part is *payload*, when it
    is exactly the reference text; None otherwise. UUIDs and UTC datetimes in the
    document are written by orjson as the reference hooks write them."""
    try:
        if not _written_alike(payload):
            return None
        return orjson.dumps(document, option=orjson.OPT_UTC_Z).decode()
    except (TypeError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        return None  # e.g. a lone surrogate, or nested too deeply


def _is_str(*values: object) -> bool:
    # A loop, not all() over a generator: the hot messages' checks cost half as much.
    for value in values:  # noqa: SIM110
        if type(value) is not str:
            return False
    return True


def _is_int64(*values: object) -> bool:
    """Whether every value is an int that orjson reads and writes as it is."""
    for value in values:  # noqa: SIM110 (as in _is_str)
        if type(value) is not int or value not in _INT_RANGE:
            return False
    return True


def _encode_dispatch_fast(task: Task, timeout_ms: int, retry_count: int) -> str | None:
    metadata = task.metadata
    trace_id = metadata.trace_id
    if not (
        type(task.id) is uuid.UUID
        and _is_str(task.task_type)
        and (trace_id is None or _is_str(trace_id))
        and _is_int64(timeout_ms, retry_count, metadata.max_retries)
        and type(metadata.priority) is Priority
        and type(metadata.created_at) is datetime
        and metadata.created_at.tzinfo is UTC
    ):
        return None
    document = {
        "type": "TaskDispatch",
        "task": {
            "id": task.id,
            "taskType": task.task_type,
            "payload": task.payload,
            "metadata": {
                "createdAt": metadata.created_at,
                "timeoutMs": timeout_ms,
                "priority": metadata.priority.wire_name,
                "retryCount": retry_count,
                "maxRetries": metadata.max_retries,
                "traceId": trace_id,
            },
        },
    }
    return _dumps(document, task.payload)


def _encode_result_fast(result: TaskResult) -> str | None:
    error = result.error
    if not (
        type(result.task_id) is uuid.UUID
        and type(result.status) is TaskStatus
        and _is_int64(result.duration_ms)
        and _is_str(result.worker_id)
        and (
            error is None
            or (
                type(error) is TaskError
                and _is_str(error.code, error.message)
                and type(error.retryable) is bool
            )
        )
    ):
        return None
    document = {
        "type": "TaskResult",
        "result": {
            "taskId": result.task_id,
            "status": result.status.value,
            "payload": result.payload,
            "error": None
            if error is None
            else {
                "code": error.code,
                "message": error.message,
                "retryable": error.retryable,
            },
            "durationMs": result.duration_ms,
            "workerId": result.worker_id,
        },
    }
    return _dumps(document, result.payload)


_EXACT_PRIORITIES: Final = {p.wire_name: p for p in Priority}
_EXACT_STATUSES: Final = {s.value: s for s in TaskStatus}


def _decode_fast(data: str | bytes) -> Message | None:
    """The message, if *data* is a canonical ``TaskDispatch`` or ``TaskResult``
    that orjson reads as the standard library does; None otherwise."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    tag = obj.get("type")
    structure = _FAST_STRUCTURE.get(tag) if type(tag) is str else None
    if structure is None:
        return None
    try:
        return structure(obj)
    except Exception:  # a field missing, mistyped, out of range: as the reference
        return None  # path catches every exception, it decides and says which


def _structure_dispatch_fast(obj: dict[str, Any]) -> TaskDispatch | None:
    task = obj["task"]
    metadata = task["metadata"]
    task_id, task_type, created_at, trace_id = (
        task["id"],
        task["taskType"],
        metadata["createdAt"],
        metadata["traceId"],
    )
    timeout_ms, retry_count, max_retries = (
        metadata["timeoutMs"],
        metadata["retryCount"],
        metadata["maxRetries"],
    )
    payload = task.get("payload")
    if not (
        _is_str(task_id, task_type, created_at)
        and (trace_id is None or _is_str(trace_id))
        and _is_int64(timeout_ms, retry_count, max_retries)
        and _read_alike(payload)
    ):
        return None
    return TaskDispatch(
        Task(
            id=uuid.UUID(task_id),
            task_type=task_type,
            payload=payload,
            metadata=TaskMetadata(
                created_at=_structure_datetime(created_at, datetime),
                timeout_ms=timeout_ms,
                priority=_EXACT_PRIORITIES[metadata["priority"]],
                retry_count=retry_count,
                max_retries=max_retries,
                trace_id=trace_id,
            ),
        )
    )


def _structure_result_fast(obj: dict[str, Any]) -> TaskResultMessage | None:
    result = obj["result"]
    task_id = result["taskId"]
    worker_id, duration_ms = result.get("workerId", ""), result.get("durationMs", 0)
    payload, error = result.get("payload"), result.get("error")
    if not (
        _is_str(task_id, worker_id) and _is_int64(duration_ms) and _read_alike(payload)
    ):
        return None
    return TaskResultMessage(
        TaskResult(
            task_id=uuid.UUID(task_id),
            status=_EXACT_STATUSES[result["status"]],
            payload=payload,
            error=None if error is None else _structure_error_fast(error),
            duration_ms=duration_ms,
            worker_id=worker_id,
        )
    )


def _structure_error_fast(error: dict[str, Any]) -> TaskError:
    code, message, retryable = error["code"], error["message"], error["retryable"]
    if not (_is_str(code, message) and type(retryable) is bool):
        raise TypeError("not the canonical form")
    return TaskError(code, message, retryable)


def _structure_backpressure_fast(obj: dict[str, Any]) -> Backpressure | None:
    signal = obj["signal"]
    worker_id, load, throttle = (
        signal["workerId"],
        signal["currentLoad"],
        signal["shouldThrottle"],
    )
    if not (
        _is_str(worker_id)
        and type(load) is float
        and _read_alike(load)
        and type(throttle) is bool
    ):
        return None
    return Backpressure(BackpressureSignal(worker_id, load, throttle))


_FAST_STRUCTURE: Final[dict[str, Callable[[dict[str, Any]], Message | None]]] = {
    "TaskDispatch": _structure_dispatch_fast,
    "TaskResult": _structure_result_fast,
    "Backpressure": _structure_backpressure_fast,  # a saturated worker sends many
}
