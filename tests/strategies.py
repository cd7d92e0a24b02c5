"""Hypothesis strategies for the protocol: every value type, all nine messages, and
frames (valid, mutated and garbage) for fuzzing the decoder."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from hypothesis import strategies as st

from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatAck,
    HeartbeatPayload,
    Kill,
    Message,
    Priority,
    Shutdown,
    Task,
    TaskDispatch,
    TaskError,
    TaskMetadata,
    TaskProgress,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    encode,
)

# -- JSON ------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value (no NaN or infinity), nested a few levels."""
    return st.recursive(
        json_scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


# -- scalars of the protocol -----------------------------------------------

uuids = st.uuids()
utc_datetimes = st.datetimes(timezones=st.just(UTC))  # microseconds included
priorities = st.sampled_from(Priority)
statuses = st.sampled_from(TaskStatus)
terminal_statuses = st.sampled_from([s for s in TaskStatus if s.is_terminal])
counts = st.integers(min_value=0, max_value=2**64 - 1)  # the Rust side's u64
worker_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def str_tuples() -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.text(), max_size=4).map(tuple)


# -- value types -------------------------------------------------------------

task_metadata = st.builds(
    TaskMetadata,
    created_at=utc_datetimes,
    timeout_ms=counts,
    priority=priorities,
    retry_count=counts,
    max_retries=counts,
    trace_id=optional(st.text()),
)
tasks = st.builds(
    Task, id=uuids, task_type=st.text(), payload=json_values(), metadata=task_metadata
)
task_errors = st.builds(
    TaskError, code=st.text(), message=st.text(), retryable=st.booleans()
)
task_progress = st.builds(
    TaskProgress,
    fraction=optional(st.floats(min_value=0, max_value=1)),
    message=optional(st.text()),
)


@st.composite
def _task_results(draw: st.DrawFn) -> TaskResult:
    """A result; a non-terminal one may carry progress and a deadline extension."""
    status = draw(statuses)
    extensions = {}
    if not status.is_terminal:
        extensions = {
            "progress": draw(optional(task_progress)),
            "extend_ms": draw(optional(st.integers(min_value=1, max_value=2**64 - 1))),
        }
    return TaskResult(
        task_id=draw(uuids),
        status=status,
        payload=draw(json_values()),
        error=draw(optional(task_errors)),
        duration_ms=draw(counts),
        worker_id=draw(st.text()),
        **extensions,
    )


task_results = _task_results()


@st.composite
def _registrations(draw: st.DrawFn) -> WorkerRegistration:
    max_concurrency = draw(st.integers(min_value=1, max_value=2**32))
    limits = st.integers(min_value=1, max_value=max_concurrency)
    return WorkerRegistration(
        worker_id=draw(worker_ids),
        supported_tasks=draw(str_tuples()),
        max_concurrency=max_concurrency,
        language=draw(st.text()),
        tags=draw(str_tuples()),
        max_concurrency_by_type=draw(st.dictionaries(st.text(), limits, max_size=3)),
    )


registrations = _registrations()
heartbeat_payloads = st.builds(
    HeartbeatPayload,
    worker_id=st.text(),
    active_tasks=counts,
    capacity=counts,
    uptime_seconds=counts,
)
backpressure_signals = st.builds(
    BackpressureSignal,
    worker_id=st.text(),
    current_load=finite_floats,
    should_throttle=st.booleans(),
    draining=st.booleans(),
)

# -- the nine messages -------------------------------------------------------

MESSAGE_STRATEGIES: dict[type[Message], st.SearchStrategy[Any]] = {
    # dispatcher -> worker
    TaskDispatch: st.builds(TaskDispatch, task=tasks),
    Kill: st.builds(Kill, task_id=uuids, reason=st.text()),
    Shutdown: st.builds(Shutdown, graceful=st.booleans()),
    WorkerRegistered: st.builds(WorkerRegistered, worker_id=st.text()),
    HeartbeatAck: st.just(HeartbeatAck()),
    # worker -> dispatcher
    WorkerRegister: st.builds(WorkerRegister, registration=registrations),
    Heartbeat: st.builds(Heartbeat, payload=heartbeat_payloads),
    TaskResultMessage: st.builds(TaskResultMessage, result=task_results),
    Backpressure: st.builds(Backpressure, signal=backpressure_signals),
}

messages: st.SearchStrategy[Message] = st.one_of(*MESSAGE_STRATEGIES.values())

TYPE_TAGS = sorted(cls.TYPE for cls in MESSAGE_STRATEGIES)

# -- frames for fuzzing the decoder ----------------------------------------

FIELD_NAMES = [
    "task", "id", "taskType", "payload", "metadata", "createdAt", "timeoutMs",
    "priority", "retryCount", "maxRetries", "traceId", "taskId", "task_id", "reason",
    "graceful", "workerId", "worker_id", "registration", "supportedTasks",
    "maxConcurrency", "language", "tags", "activeTasks", "capacity", "uptimeSeconds",
    "result", "status", "error", "code", "message", "retryable", "durationMs",
    "signal", "currentLoad", "shouldThrottle", "draining", "progress", "fraction",
    "extendMs", "maxConcurrencyByType",
]  # fmt: skip

field_names = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)

# Values chosen to be wrong in interesting ways for some field or other.
near_misses = st.sampled_from(
    [
        None, True, False, 0, -1, 1.5, -0.0, 2**64, 10**30, 1e300, "", "x", "-1",
        "Completed", "completed", "LOW", "00000000-0000-0000-0000-00000000000z",
        "2024-13-01T00:00:00Z", "0001-01-01T00:00:00+01:00", [], [1], ["a"], {},
        {"Other": 1}, {"Other": "wasm", "More": "x"},
    ]
)  # fmt: skip


def tagged_objects() -> st.SearchStrategy[dict[str, Any]]:
    """An object with a valid ``"type"`` tag and garbage fields."""
    fields = st.dictionaries(field_names, near_misses | json_values(), max_size=6)
    return st.builds(
        lambda tag, rest: {**rest, "type": tag}, st.sampled_from(TYPE_TAGS), fields
    )


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*prefix, index))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(copy[head] if rest else None, tuple(rest), value)
    return copy


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    head, *rest = path
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    if rest:
        copy[head] = _delete(doc[head], tuple(rest))
    else:
        del copy[head]
    return copy


@st.composite
def mutated_objects(draw: st.DrawFn) -> Any:
    """A valid message's JSON with one to three parts replaced, deleted or added."""
    doc = json.loads(encode(draw(messages)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(doc)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and path:
            doc = _delete(doc, path)
        elif action == "add" and isinstance(_get(doc, path), dict):
            key = draw(field_names)
            doc = _replace(doc, (*path, key), draw(near_misses | json_values()))
        else:
            doc = _replace(doc, path, draw(near_misses | json_values()))
    return doc


def as_frame(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False)
