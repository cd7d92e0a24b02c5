"""The fast paths of the hot messages: orjson, and hand-written structure and
unstructure for the canonical ``TaskDispatch``, ``TaskResult`` and ``Backpressure``.
A progress report that carries ``progress`` or ``extendMs`` is no hot message: it goes
the reference way, as does a ``Backpressure`` whose ``draining`` is not a boolean.

orjson writes and reads JSON ~10x faster than the standard library, but not always
the same way: it writes NaN as null, some floats in another form (0.00001 for
1e-05), enums, UUIDs and dataclasses natively; it reads integers beyond 64 bits as
floats. So a fast path is taken only for documents that hold nothing of that kind,
and for the canonical shape of the hot messages (TaskResult's optional fields may
be left out); every other document, and every error, goes the reference way, which
therefore still decides every rule. (tests/test_protocol_fast.py checks that both
ways agree.)

Each entry point here returns None when its fast path does not apply; :mod:`._codec`
then takes the reference path.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from . import _messages, _types
from ._converter import _PRIORITIES, _STATUSES, _structure_datetime
from ._messages import Backpressure, Message, TaskDispatch, TaskResultMessage
from ._types import (
    BackpressureSignal,
    Priority,
    Task,
    TaskError,
    TaskMetadata,
    TaskResult,
    TaskStatus,
)

__all__ = ["encode_completed"]

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


def _encode_dispatch_fast(
    task: Task, timeout_ms: int, retry_count: int, attempt: int | None, epoch: int | None
) -> str | None:
    metadata = task.metadata
    trace_id, key = metadata.trace_id, metadata.idempotency_key
    if not (
        type(task.id) is uuid.UUID
        and _is_str(task.task_type)
        and (trace_id is None or _is_str(trace_id))
        and (key is None or _is_str(key))
        and (attempt is None or _is_int64(attempt))
        and (epoch is None or _is_int64(epoch))
        and _is_int64(timeout_ms, retry_count, metadata.max_retries)
        and type(metadata.priority) is Priority
        and type(metadata.created_at) is datetime
        and metadata.created_at.tzinfo is UTC
    ):
        return None
    fields = {
        "createdAt": metadata.created_at,
        "timeoutMs": timeout_ms,
        "priority": metadata.priority.wire_name,
        "retryCount": retry_count,
        "maxRetries": metadata.max_retries,
        "traceId": trace_id,
    }
    # The extensions, each only when it has a value (as the reference path writes them).
    if key is not None:
        fields["idempotencyKey"] = key
    if attempt is not None:
        fields["attempt"] = attempt
    if epoch is not None:
        fields["epoch"] = epoch
    document = {
        "type": "TaskDispatch",
        "task": {
            "id": task.id,
            "taskType": task.task_type,
            "payload": task.payload,
            "metadata": fields,
        },
    }
    return _dumps(document, task.payload)


def _encode_result_fast(result: TaskResult) -> str | None:
    error = result.error
    if not (
        result.progress is None
        and result.extend_ms is None
        and type(result.task_id) is uuid.UUID
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


def _decode_fast(obj: Any) -> Message | None:
    """The message, if *obj* (what orjson read) is a canonical ``TaskDispatch`` or
    ``TaskResult`` that orjson reads as the standard library does; None otherwise."""
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
    key, attempt, epoch = (
        metadata.get("idempotencyKey"),
        metadata.get("attempt"),
        metadata.get("epoch"),
    )
    if not (
        _is_str(task_id, task_type, created_at)
        and (trace_id is None or _is_str(trace_id))
        and _is_int64(timeout_ms, retry_count, max_retries)
        and _read_alike(payload)
        and (key is None or _is_str(key))
        and (attempt is None or _is_int64(attempt))
        and (epoch is None or _is_int64(epoch))
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
                priority=_PRIORITIES[metadata["priority"]],
                retry_count=retry_count,
                max_retries=max_retries,
                trace_id=trace_id,
                idempotency_key=key,
                attempt=attempt,
                epoch=epoch,
            ),
        )
    )


def _structure_result_fast(obj: dict[str, Any]) -> TaskResultMessage | None:
    result = obj["result"]
    if "progress" in result or "extendMs" in result:
        return None
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
            status=_STATUSES[result["status"]],
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
    worker_id, load, throttle, draining = (
        signal["workerId"],
        signal["currentLoad"],
        signal["shouldThrottle"],
        signal.get("draining", False),
    )
    if not (
        _is_str(worker_id)
        and type(load) is float
        and _read_alike(load)
        and type(throttle) is bool
        and type(draining) is bool
    ):
        return None
    return Backpressure(BackpressureSignal(worker_id, load, throttle, draining))


_FAST_STRUCTURE: Final[dict[str, Callable[[dict[str, Any]], Message | None]]] = {
    "TaskDispatch": _structure_dispatch_fast,
    "TaskResult": _structure_result_fast,
    "Backpressure": _structure_backpressure_fast,  # a saturated worker sends many
}
