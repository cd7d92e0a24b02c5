"""Generate the shared test vectors in spec/vectors/ from the Python codec.

    python spec/generate_vectors.py            # (re)write spec/vectors/*.json
    python spec/generate_vectors.py --check    # exit 1, with a diff, if they differ

Every vector is checked against ``trio_pipe.protocol`` as it is generated: a valid
message is built from the protocol classes and written by ``encode``; a lenient input's
canonical form is what ``encode(decode(input))`` really produces; an invalid input must
raise ``ProtocolError`` whose reason contains the expected text. See spec/README.md.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatAck,
    HeartbeatPayload,
    Kill,
    Message,
    Priority,
    ProtocolError,
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
    decode,
    encode,
)

VECTORS = Path(__file__).resolve().parent / "vectors"

ID = uuid.UUID("3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f")
OTHER_ID = uuid.UUID("9e8d7c6b-5a49-4382-a716-0f1e2d3c4b5a")
CREATED = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
MAX_INT = 2**53 - 1  # the largest integer every SDK's JSON reads exactly
LONGEST_WORKER_ID = "W" + "orker.id_-0123456789" * 6 + "abcdefg"  # 128 characters
TRICKY_TEXT = (
    'quote " backslash \\ slash / tab \t newline \n nul \x00 del \x7f <b>&amp;</b>'
)
UNICODE_TEXT = "héllo wörld, 日本語, Ελληνικά, emoji 🐍🎉 (outside the BMP)"


# -- valid: canonical messages -------------------------------------------------------


def _metadata(**changes: Any) -> TaskMetadata:
    return TaskMetadata(**{"created_at": CREATED, **changes})


def _task(task_type: str = "resize-image", payload: Any = None, **metadata: Any) -> Task:
    return Task(id=ID, task_type=task_type, payload=payload, metadata=_metadata(**metadata))


def _result(status: TaskStatus, **changes: Any) -> TaskResultMessage:
    fields: dict[str, Any] = {"task_id": ID, "status": status, "worker_id": "img-worker-1"}
    return TaskResultMessage(TaskResult(**{**fields, **changes}))


NESTED_PAYLOAD = {
    "array": [1, -1, 0, [], {}, [[["deep"]]], None, True, False],
    "bigNegative": -MAX_INT,
    "bigPositive": MAX_INT,
    "empty": "",
    "floats": [0.5, -2.25, 3.14159, 0.001, 9999999.5],
    "nested": {"a": {"b": {"c": {"d": {"e": [None, {"f": "g"}]}}}}},
    "null": None,
    "zero": 0,
}

VALID: list[tuple[str, Message]] = [
    # TaskDispatch: every Priority value, defaults, edges
    (
        "TaskDispatch: typical (priority High, traceId)",
        TaskDispatch(
            _task(
                payload={"url": "https://example.com/cat.png", "width": 320},
                timeout_ms=30_000,
                priority=Priority.HIGH,
                trace_id="req-7f3a",
            )
        ),
    ),
    ("TaskDispatch: every optional field at its default", TaskDispatch(_task("ping"))),
    (
        "TaskDispatch: the extensions (idempotencyKey, attempt, epoch)",
        TaskDispatch(
            _task(
                "charge",
                payload={"order": 42},
                retry_count=2,
                idempotency_key="order-42",
                attempt=3,
                epoch=7,
            )
        ),
    ),
    (
        "TaskDispatch: priority Low, a retry, microseconds in createdAt",
        TaskDispatch(
            _task(
                payload=[1, 2, 3],
                priority=Priority.LOW,
                retry_count=1,
                timeout_ms=12_500,
                created_at=datetime(2025, 3, 14, 9, 26, 53, 250_000, tzinfo=UTC),
            )
        ),
    ),
    (
        "TaskDispatch: priority Critical, zero timeout and retries",
        TaskDispatch(
            _task(payload=True, priority=Priority.CRITICAL, timeout_ms=0, max_retries=0)
        ),
    ),
    (
        "TaskDispatch: max integers (2^53-1)",
        TaskDispatch(
            _task(
                payload=MAX_INT,
                timeout_ms=MAX_INT,
                retry_count=MAX_INT,
                max_retries=MAX_INT,
            )
        ),
    ),
    (
        "TaskDispatch: latest timestamp",
        TaskDispatch(
            _task(created_at=datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
        ),
    ),
    (
        "TaskDispatch: year 1",
        TaskDispatch(_task(created_at=datetime(1, 1, 1, tzinfo=UTC), payload="year one")),
    ),
    (
        "TaskDispatch: unicode task type, payload and traceId",
        TaskDispatch(
            _task(
                "résumé-パース",
                payload={"text": UNICODE_TEXT, "ключ": "значение", "🔑": "🗝"},
                trace_id="trace-ü-✓",
            )
        ),
    ),
    (
        "TaskDispatch: strings that need escaping",
        TaskDispatch(_task("escape", payload={"text": TRICKY_TEXT}, trace_id=TRICKY_TEXT)),
    ),
    ("TaskDispatch: nested payload", TaskDispatch(_task("nested", payload=NESTED_PAYLOAD))),
    (
        "TaskDispatch: payload a string",
        TaskDispatch(_task("echo", payload="just a string")),
    ),
    ("TaskDispatch: payload an empty object", TaskDispatch(_task("echo", payload={}))),
    # Kill
    (
        "Kill: with a reason",
        Kill(task_id=ID, reason="timed out"),
    ),
    ("Kill: empty reason", Kill(task_id=OTHER_ID)),
    ("Kill: unicode reason", Kill(task_id=ID, reason="annulé par l'appelant ✋")),
    # Shutdown
    ("Shutdown: graceful", Shutdown(graceful=True)),
    ("Shutdown: not graceful", Shutdown(graceful=False)),
    # WorkerRegistered
    ("WorkerRegistered: typical", WorkerRegistered(worker_id="img-worker-1")),
    ("WorkerRegistered: longest worker id", WorkerRegistered(worker_id=LONGEST_WORKER_ID)),
    # HeartbeatAck
    ("HeartbeatAck", HeartbeatAck()),
    # WorkerRegister
    (
        "WorkerRegister: typical",
        WorkerRegister(
            WorkerRegistration(
                worker_id="img-worker-1",
                supported_tasks=("resize-image", "ping"),
                max_concurrency=4,
                language="Python",
                tags=("gpu", "eu-west"),
            )
        ),
    ),
    (
        "WorkerRegister: every optional field at its default",
        WorkerRegister(WorkerRegistration(worker_id="w1", supported_tasks=("hash",))),
    ),
    (
        "WorkerRegister: a limit per task type (maxConcurrencyByType)",
        WorkerRegister(
            WorkerRegistration(
                worker_id="w1",
                supported_tasks=("render", "fetch"),
                max_concurrency=52,
                language="Go",
                max_concurrency_by_type={
                    "fetch": 50,
                    "render": 2,
                },  # members in any order; sorted here, as Go writes them
            )
        ),
    ),
    (
        "WorkerRegister: a language rust-pipe v0.1 has no name for (Java)",
        WorkerRegister(
            WorkerRegistration(
                worker_id="w1",
                supported_tasks=("echo",),
                max_concurrency=2,
                language="Java",
            )
        ),
    ),
    (
        "WorkerRegister: edges (longest id, no task types, max concurrency, unicode)",
        WorkerRegister(
            WorkerRegistration(
                worker_id=LONGEST_WORKER_ID,
                supported_tasks=(),
                max_concurrency=MAX_INT,
                language="Go 🐹",
                tags=("ünïcödé", "", "with space"),
            )
        ),
    ),
    # Heartbeat
    (
        "Heartbeat: typical",
        Heartbeat(
            HeartbeatPayload(
                "img-worker-1", active_tasks=2, capacity=4, uptime_seconds=3600
            )
        ),
    ),
    ("Heartbeat: every optional field at its default", Heartbeat(HeartbeatPayload("w1"))),
    (
        "Heartbeat: max integers (2^53-1)",
        Heartbeat(
            HeartbeatPayload(
                "w1", active_tasks=MAX_INT, capacity=MAX_INT, uptime_seconds=MAX_INT
            )
        ),
    ),
    # TaskResult: every TaskStatus value
    (
        "TaskResult: Completed",
        _result(
            TaskStatus.COMPLETED,
            payload={"thumbnail": "https://example.com/cat-320.png"},
            duration_ms=412,
        ),
    ),
    (
        "TaskResult: Completed with a nested unicode payload",
        _result(
            TaskStatus.COMPLETED,
            payload={"items": [{"name": "ß", "score": 0.75}, None], "text": UNICODE_TEXT},
            duration_ms=MAX_INT,
        ),
    ),
    (
        "TaskResult: Failed, retryable",
        _result(
            TaskStatus.FAILED,
            error=TaskError(
                "HANDLER_ERROR", "ConnectionError: image host unreachable", True
            ),
            duration_ms=5003,
        ),
    ),
    (
        "TaskResult: Failed, not retryable, with a payload",
        _result(
            TaskStatus.FAILED,
            payload={"partial": [1, 2]},
            error=TaskError("UNKNOWN_TASK_TYPE", "no handler for task type 'mystery'"),
        ),
    ),
    (
        "TaskResult: TimedOut",
        _result(
            TaskStatus.TIMED_OUT,
            error=TaskError("TIMEOUT", "timeoutMs of 30000 ran out"),
            duration_ms=30_000,
        ),
    ),
    (
        "TaskResult: Cancelled by Kill",
        _result(
            TaskStatus.CANCELLED,
            error=TaskError("KILLED", "timed out"),
            duration_ms=30_001,
        ),
    ),
    ("TaskResult: Running (progress report)", _result(TaskStatus.RUNNING, duration_ms=150)),
    (
        "TaskResult: Running with progress and a message",
        _result(
            TaskStatus.RUNNING,
            duration_ms=1200,
            progress=TaskProgress(fraction=0.4, message="stage 2"),
        ),
    ),
    (
        "TaskResult: Running with progress, fraction 1.0 and no message",
        _result(TaskStatus.RUNNING, progress=TaskProgress(fraction=1.0)),
    ),
    (
        "TaskResult: Running with progress, a message only",
        _result(TaskStatus.RUNNING, progress=TaskProgress(message="downloading ✓")),
    ),
    (
        "TaskResult: Running with extendMs (a deadline extension)",
        _result(TaskStatus.RUNNING, duration_ms=29_000, extend_ms=60_000),
    ),
    (
        "TaskResult: Running with progress and extendMs",
        _result(
            TaskStatus.RUNNING,
            progress=TaskProgress(fraction=0.75, message=None),
            extend_ms=MAX_INT,
        ),
    ),
    ("TaskResult: Dispatched", _result(TaskStatus.DISPATCHED)),
    (
        "TaskResult: Pending (decodes; the session rules refuse it from a worker)",
        _result(TaskStatus.PENDING),
    ),
    (
        "TaskResult: every optional field at its default",
        TaskResultMessage(TaskResult(task_id=OTHER_ID, status=TaskStatus.COMPLETED)),
    ),
    (
        "TaskResult: error with unicode and escapes",
        _result(
            TaskStatus.FAILED,
            error=TaskError("CUSTOM_CODE_✓", TRICKY_TEXT, True),
        ),
    ),
    # Backpressure
    (
        "Backpressure: throttle, full",
        Backpressure(
            BackpressureSignal("img-worker-1", current_load=1.0, should_throttle=True)
        ),
    ),
    (
        "Backpressure: released",
        Backpressure(BackpressureSignal("img-worker-1", current_load=0.75)),
    ),
    (
        "Backpressure: every optional field at its default",
        Backpressure(BackpressureSignal("w1")),
    ),
    (
        "Backpressure: draining",
        Backpressure(
            BackpressureSignal("w1", current_load=0.5, should_throttle=True, draining=True)
        ),
    ),
    (
        "Backpressure: a load with all 16 digits",
        Backpressure(BackpressureSignal("w1", current_load=1 / 3, should_throttle=True)),
    ),
]


# -- lenient: liberal inputs and their canonical form --------------------------------

_TASK = '"id":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f","taskType":"ping"'
_CREATED = '"createdAt":"2025-03-14T09:26:53Z"'


def _dispatch(metadata: str, task: str = _TASK) -> str:
    return '{"type":"TaskDispatch","task":{%s,"metadata":{%s}}}' % (task, metadata)


def _created(timestamp: str) -> str:
    return _dispatch(f'"createdAt":"{timestamp}"')


def _status(status: str) -> str:
    return (
        '{"type":"TaskResult","result":{"taskId":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f",'
        f'"status":"{status}"}}}}'
    )


def _priority(priority: str) -> str:
    return _dispatch(f'{_CREATED},"priority":"{priority}"')


def _kill(task_id: str) -> str:
    return '{"type":"Kill","taskId":"%s","reason":"r"}' % task_id


LENIENT: list[tuple[str, str]] = [
    # The type tag ignores case
    ("type tag: lower case", '{"type":"heartbeatack"}'),
    ("type tag: upper case", '{"type":"SHUTDOWN","graceful":false}'),
    ("type tag: mixed case", _status("Completed").replace("TaskResult", "taskRESULT", 1)),
    # Enums ignore case and underscores
    *[(f"TaskStatus: {s!r}", _status(s)) for s in ["completed", "COMPLETED", "cancelled"]],
    *[
        (f"TaskStatus: {s!r}", _status(s))
        for s in ["timed_out", "TIMED_OUT", "timedout", "TIMEDOUT", "timedOut", "Timed_Out"]
    ],
    *[(f"TaskStatus: {s!r}", _status(s)) for s in ["pending", "dispatched", "running"]],
    ("TaskStatus: 'failed' (rust-pipe's TypeScript SDK)", _status("failed")),
    *[(f"Priority: {p!r}", _priority(p)) for p in ["low", "NORMAL", "high", "critical"]],
    # Missing optional fields take their defaults (never a time-dependent one here:
    # a TaskDispatch without metadata or createdAt gets the time it is decoded)
    ("defaults: Task without payload, metadata with only createdAt", _dispatch(_CREATED)),
    ("defaults: Kill without reason", '{"type":"Kill","taskId":"%s"}' % ID),
    ("defaults: Shutdown without graceful", '{"type":"Shutdown"}'),
    (
        "defaults: WorkerRegister without maxConcurrency, language, tags",
        '{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":["x"]}}',
    ),
    (
        "defaults: Heartbeat with only workerId",
        '{"type":"Heartbeat","payload":{"workerId":"w1"}}',
    ),
    (
        "defaults: Heartbeat without uptimeSeconds (rust-pipe's examples)",
        '{"type":"Heartbeat","payload":{"workerId":"w1","activeTasks":0,"capacity":4}}',
    ),
    ("defaults: TaskResult with only taskId and status", _status("Completed")),
    (
        "defaults: TaskResult, rust-pipe's TypeScript SDK (lower case, no durationMs)",
        '{"type":"TaskResult","result":{"taskId":"%s","status":"completed","payload":42}}'
        % ID,
    ),
    (
        "defaults: TaskError without retryable",
        '{"type":"TaskResult","result":{"taskId":"%s","status":"Failed",'
        '"error":{"code":"E","message":"m"}}}' % ID,
    ),
    (
        "defaults: Backpressure with only workerId",
        '{"type":"Backpressure","signal":{"workerId":"w1"}}',
    ),
    # rust-pipe's snake_case ids
    ("alias: Kill task_id", '{"type":"Kill","task_id":"%s","reason":"timed out"}' % ID),
    ("alias: WorkerRegistered worker_id", '{"type":"WorkerRegistered","worker_id":"w1"}'),
    (
        "alias: Kill with taskId and task_id, taskId wins",
        '{"type":"Kill","task_id":"%s","taskId":"%s"}' % (OTHER_ID, ID),
    ),
    (
        "alias: WorkerRegistered with workerId and worker_id, workerId wins",
        '{"type":"WorkerRegistered","worker_id":"old","workerId":"new"}',
    ),
    # WorkerRegistration's language and tags
    (
        'language: {"Other": ...} (rust-pipe)',
        '{"type":"WorkerRegister","registration":{"workerId":"wasm-7",'
        '"supportedTasks":["hash"],"language":{"Other":"wasm"},"tags":null}}',
    ),
    (
        'language: {"Other": ...} of a name rust-pipe knows is written as the name',
        '{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":[],'
        '"language":{"Other":"Go"}}}',
    ),
    (
        'language: another name as a plain string is written as {"Other": ...}',
        '{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":[],'
        '"language":"Java"}}',
    ),
    (
        "language: any single-member object",
        '{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":[],'
        '"language":{"Custom":"Zig"}}}',
    ),
    (
        "tags: null means []",
        '{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":["x"],'
        '"maxConcurrency":2,"language":"Go","tags":null}}',
    ),
    # Unknown members are ignored, at every level
    ("unknown fields: top level", '{"type":"HeartbeatAck","version":2,"extra":{"a":[1]}}'),
    (
        "unknown fields: nested in task and metadata",
        _dispatch(f'{_CREATED},"deadline":"soon"', task=f'{_TASK},"attempt":{{"n":1}}'),
    ),
    (
        "unknown fields: in a registration",
        '{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":["x"],'
        '"runtime":{"name":"node","version":"20"},"maxConcurrency":3}}',
    ),
    (
        "unknown fields: in a Heartbeat payload",
        '{"type":"Heartbeat","payload":{"workerId":"w1","memoryMb":512,"activeTasks":1}}',
    ),
    (
        "unknown fields: in result and error",
        '{"type":"TaskResult","result":{"taskId":"%s","status":"Failed","percent":0.5,'
        '"error":{"code":"E","message":"m","retryable":true,"stack":["a","b"]}}}' % ID,
    ),
    (
        "unknown fields: in signal",
        '{"type":"Backpressure","signal":{"workerId":"w1","shouldThrottle":true,"why":"mem"}}',
    ),
    # Extension fields (draining, progress, extendMs, maxConcurrencyByType): written
    # only when they hold something; meaningless in a terminal result
    (
        "extensions: draining false is left out",
        '{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":0.5,'
        '"shouldThrottle":true,"draining":false}}',
    ),
    (
        "extensions: progress and extendMs null are left out",
        '{"type":"TaskResult","result":{"taskId":"%s","status":"Running",'
        '"progress":null,"extendMs":null}}' % ID,
    ),
    (
        "extensions: an empty maxConcurrencyByType is left out",
        '{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":["x"],'
        '"maxConcurrencyByType":{}}}',
    ),
    (
        "extensions: progress and extendMs of a terminal result are dropped",
        '{"type":"TaskResult","result":{"taskId":"%s","status":"Completed","payload":1,'
        '"progress":{"fraction":1},"extendMs":1000}}' % ID,
    ),
    (
        "extensions: progress with a fraction only, an integer written as a float",
        '{"type":"TaskResult","result":{"taskId":"%s","status":"running",'
        '"progress":{"fraction":1}}}' % ID,
    ),
    (
        "extensions: an empty progress object",
        '{"type":"TaskResult","result":{"taskId":"%s","status":"Running",'
        '"progress":{}}}' % ID,
    ),
    # Timestamps: any offset, converted to UTC; extra digits truncated; no offset = UTC
    ("timestamp: +01:00 offset", _created("2025-03-14T10:26:53+01:00")),
    ("timestamp: -10:30 offset, the day before", _created("2025-03-13T22:56:53-10:30")),
    ("timestamp: +00:00 instead of Z", _created("2025-03-14T09:26:53+00:00")),
    (
        "timestamp: nanoseconds truncated to microseconds",
        _created("2025-03-14T09:26:53.123456789Z"),
    ),
    (
        "timestamp: nanoseconds and an offset",
        _created("2025-03-14T11:26:53.999999999+02:00"),
    ),
    ("timestamp: milliseconds padded to microseconds", _created("2025-03-14T09:26:53.25Z")),
    ("timestamp: zero fraction dropped", _created("2025-03-14T09:26:53.000Z")),
    ("timestamp: no offset is UTC", _created("2025-03-14T09:26:53")),
    ("timestamp: lower-case t and z", _created("2025-03-14t09:26:53.5z")),
    # UUIDs: other spellings
    ("UUID: upper case", _kill(str(ID).upper())),
    ("UUID: braces", _kill("{%s}" % ID)),
    ("UUID: urn:uuid: prefix", _kill(f"urn:uuid:{ID}")),
    ("UUID: 32 bare hex digits", _kill(ID.hex)),
    # Numbers: a float field takes any JSON number
    (
        "number: integer currentLoad written as a float",
        '{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":1,"shouldThrottle":true}}',
    ),
    (
        "number: exponent form",
        '{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":7.5E-1}}',
    ),
    # JSON text: any whitespace, member order, escapes
    (
        "JSON: whitespace and newlines between tokens",
        '{\n  "type" : "Shutdown" ,\r\n\t"graceful" : true\n}\n',
    ),
    ("JSON: members in any order", '{"graceful":false,"type":"Shutdown"}'),
    (
        "JSON: fields of a type in any order",
        '{"type":"Heartbeat","payload":{"uptimeSeconds":9,"capacity":4,"workerId":"w1",'
        '"activeTasks":2}}',
    ),
    (
        "JSON: escaped characters written raw",
        '{"type":"Kill","taskId":"%s","reason":"caf\\u00e9 \\ud83d\\udc0d \\/ \\u0041"}'
        % ID,
    ),
]


# -- invalid: rejected inputs, with the reason ------------------------------------

_ID = str(ID)


def _registration(body: str) -> str:
    return '{"type":"WorkerRegister","registration":{%s}}' % body


def _heartbeat(body: str) -> str:
    return '{"type":"Heartbeat","payload":{"workerId":"w1",%s}}' % body


def _result_body(body: str) -> str:
    return '{"type":"TaskResult","result":{%s}}' % body


# Near misses of the spellings receivers accept (docs/protocol.md, "Enum" and the
# "type" tag): each differs from an accepted spelling by a separator, an underscore
# out of place, a letter too few or too many, or a non-ASCII letter that a Unicode
# case mapping (Go's strings.ToLower, Java's equalsIgnoreCase, Unicode case folding)
# would turn into the ASCII one. Each is checked to decode once spelled right.

_ENUMS = {  # what: (enum, frame for a value, path of the value)
    "task status": ("TaskStatus", _status, "$.result.status"),
    "priority": ("Priority", _priority, "$.task.metadata.priority"),
}
_SNAKE = {"TimedOut": "timed_out"}  # the one enum value of several words


def _near_enum(what: str, why: str, value: str, meant: str) -> tuple[str, str, str, str]:
    enum, frame, path = _ENUMS[what]
    decode(frame(meant))  # the frame is valid but for the spelling
    accepted = " or ".join(repr(s) for s in (meant, _SNAKE.get(meant)) if s)
    reason = f"unknown {what} {value!r} (did you mean {meant}? accepted: {accepted}, in any ASCII case) @ {path}"
    return (f"{enum} near miss, {why}: {value!r}", "bad enum value", frame(value), reason)


_BODIES = {  # the members of a valid message of each type, but for its type tag
    "TaskDispatch": ',"task":{"id":"%s","taskType":"ping"}' % ID,
    "Kill": ',"taskId":"%s"' % ID,
    "Shutdown": ',"graceful":true',
    "HeartbeatAck": "",
    "TaskResult": ',"result":{"taskId":"%s","status":"Completed"}' % ID,
    "Backpressure": ',"signal":{"workerId":"w1","shouldThrottle":true}',
}


def _tagged(tag: str, meant: str) -> str:
    return '{"type":"%s"%s}' % (tag, _BODIES[meant])


def _near_tag(why: str, tag: str, meant: str) -> tuple[str, str, str, str]:
    decode(_tagged(meant, meant))
    name = f"type tag near miss, {why}: {tag!r}"
    return (name, "unknown type", _tagged(tag, meant), f"unknown message type {tag!r}")


NEAR_MISSES: list[tuple[str, str, str, str]] = [
    _near_enum("task status", "hyphenated", "timed-out", "TimedOut"),
    _near_enum("task status", "hyphenated, upper case", "TIMED-OUT", "TimedOut"),
    _near_enum("task status", "with a space", "timed out", "TimedOut"),
    _near_enum("task status", "a trailing space", "Completed ", "Completed"),
    _near_enum("task status", "a leading space", " Running", "Running"),
    _near_enum("task status", "underscore inside a word", "Pend_ing", "Pending"),
    _near_enum("task status", "underscore inside a word", "time_dout", "TimedOut"),
    _near_enum("task status", "leading underscore", "_TimedOut", "TimedOut"),
    _near_enum("task status", "trailing underscore", "TIMED_OUT_", "TimedOut"),
    _near_enum("task status", "two underscores", "timed__out", "TimedOut"),
    _near_enum("task status", "underscore between every letter", "F_A_I_L_E_D", "Failed"),
    _near_enum("task status", "truncated", "TimedOu", "TimedOut"),
    _near_enum("task status", "truncated", "Dispatch", "Dispatched"),
    _near_enum("task status", "an extra letter", "TimedOutt", "TimedOut"),
    _near_enum("task status", "a letter missing", "Canceled", "Cancelled"),
    _near_enum("task status", "dotted capital I (U+0130)", "T\u0130medOut", "TimedOut"),
    _near_enum("task status", "dotless small i (U+0131)", "fa\u0131led", "Failed"),
    _near_enum("task status", "long s (U+017F)", "Di\u017fpatched", "Dispatched"),
    _near_enum("priority", "hyphenated", "Crit-ical", "Critical"),
    _near_enum("priority", "with a space", "Nor mal", "Normal"),
    _near_enum("priority", "a trailing space", "High ", "High"),
    _near_enum("priority", "underscore inside a word", "Hi_gh", "High"),
    _near_enum("priority", "leading underscore", "_Low", "Low"),
    _near_enum("priority", "trailing underscore", "CRITICAL_", "Critical"),
    _near_enum("priority", "truncated", "Norm", "Normal"),
    _near_enum("priority", "an extra letter", "Highh", "High"),
    _near_enum("priority", "dotted capital I (U+0130)", "Cr\u0130t\u0130cal", "Critical"),
    _near_tag("hyphenated", "Task-Result", "TaskResult"),
    _near_tag("underscored", "task_result", "TaskResult"),
    _near_tag("underscored", "Heartbeat_Ack", "HeartbeatAck"),
    _near_tag("with a space", "Task Dispatch", "TaskDispatch"),
    _near_tag("a trailing space", "Shutdown ", "Shutdown"),
    _near_tag("truncated", "HeartbeatAc", "HeartbeatAck"),
    _near_tag("an extra letter", "Shutdownn", "Shutdown"),
    _near_tag("Kelvin sign (U+212A)", "\u212aill", "Kill"),
    _near_tag("dotted capital I (U+0130)", "K\u0130ll", "Kill"),
    _near_tag("hyphenated", "Back-pressure", "Backpressure"),
    _near_tag("underscored", "Back_Pressure", "Backpressure"),
    _near_tag("truncated", "Backpressur", "Backpressure"),
    _near_tag("Kelvin sign (U+212A)", "Bac\u212apressure", "Backpressure"),
]

INVALID: list[tuple[str, str, str, str]] = [
    # (name, class, input, reason_contains)
    ("empty frame", "not JSON", "", "not JSON"),
    ("plain text", "not JSON", "hello", "not JSON"),
    ("truncated object", "not JSON", '{"type":"Shutdown"', "not JSON"),
    ("trailing comma", "not JSON", '{"type":"Shutdown",}', "not JSON"),
    ("single quotes", "not JSON", "{'type':'Shutdown'}", "not JSON"),
    ("two objects in one frame", "not JSON", '{"type":"HeartbeatAck"}{"type":"HeartbeatAck"}', "not JSON"),
    ("NaN", "not JSON", '{"type":"Backpressure","signal":{"workerId":"w","currentLoad":NaN}}', "NaN is not valid JSON"),
    ("Infinity", "not JSON", '{"type":"Backpressure","signal":{"workerId":"w","currentLoad":Infinity}}', "Infinity is not valid JSON"),
    ("-Infinity", "not JSON", '{"type":"Backpressure","signal":{"workerId":"w","currentLoad":-Infinity}}', "-Infinity is not valid JSON"),
    ("number overflow 1e999", "not JSON", '{"type":"Backpressure","signal":{"workerId":"w","currentLoad":1e999}}', "out of range"),
    ("number overflow -1e999 in a payload", "not JSON", '{"type":"TaskResult","result":{"taskId":"%s","status":"Completed","payload":[-1e999]}}' % _ID, "out of range"),
    ("array", "not an object", '[{"type":"HeartbeatAck"}]', "expected a JSON object, got list"),
    ("string", "not an object", '"HeartbeatAck"', "expected a JSON object, got str"),
    ("null", "not an object", "null", "expected a JSON object, got null"),
    ("number", "not an object", "42", "expected a JSON object, got int"),
    ("empty object", "missing type", "{}", "missing message type"),
    ("no type, other fields", "missing type", '{"taskId":"%s"}' % _ID, "missing message type"),
    ("type null", "missing type", '{"type":null}', "missing message type"),
    ("type a number", "type not a string", '{"type":7}', "message type must be a string"),
    ("type an object", "type not a string", '{"type":{"Kill":{}}}', "message type must be a string"),
    ("unknown type", "unknown type", '{"type":"Hello"}', "unknown message type 'Hello'"),
    ("empty type", "unknown type", '{"type":""}', "unknown message type ''"),
    ("TaskDispatch without task", "missing field", '{"type":"TaskDispatch"}', "required field missing @ $.task"),
    ("Task without id", "missing field", '{"type":"TaskDispatch","task":{"taskType":"x"}}', "required field missing @ $.task.id"),
    ("Task without taskType", "missing field", '{"type":"TaskDispatch","task":{"id":"%s"}}' % _ID, "required field missing @ $.task.taskType"),
    ("Kill without taskId", "missing field", '{"type":"Kill","reason":"r"}', "required field missing @ $.taskId"),
    ("WorkerRegistered without workerId", "missing field", '{"type":"WorkerRegistered"}', "required field missing @ $.workerId"),
    ("WorkerRegister without registration", "missing field", '{"type":"WorkerRegister"}', "required field missing @ $.registration"),
    ("registration without workerId", "missing field", _registration('"supportedTasks":[]'), "required field missing @ $.registration.workerId"),
    ("registration without supportedTasks", "missing field", _registration('"workerId":"w1"'), "required field missing @ $.registration.supportedTasks"),
    ("Heartbeat without payload", "missing field", '{"type":"Heartbeat"}', "required field missing @ $.payload"),
    ("Heartbeat payload without workerId", "missing field", '{"type":"Heartbeat","payload":{"activeTasks":1}}', "required field missing @ $.payload.workerId"),
    ("TaskResult without result", "missing field", '{"type":"TaskResult"}', "required field missing @ $.result"),
    ("TaskResult without taskId", "missing field", _result_body('"status":"Completed"'), "required field missing @ $.result.taskId"),
    ("TaskResult without status", "missing field", _result_body('"taskId":"%s"' % _ID), "required field missing @ $.result.status"),
    ("TaskError without code", "missing field", _result_body('"taskId":"%s","status":"Failed","error":{"message":"m"}' % _ID), "required field missing @ $.result.error.code"),
    ("TaskError without message", "missing field", _result_body('"taskId":"%s","status":"Failed","error":{"code":"E"}' % _ID), "required field missing @ $.result.error.message"),
    ("Backpressure without signal", "missing field", '{"type":"Backpressure"}', "required field missing @ $.signal"),
    ("Backpressure signal without workerId", "missing field", '{"type":"Backpressure","signal":{"shouldThrottle":true}}', "required field missing @ $.signal.workerId"),
    ("snake_case field (only Kill and WorkerRegistered have aliases)", "missing field", _result_body('"task_id":"%s","status":"Completed"' % _ID), "required field missing @ $.result.taskId"),
    ("integer as a string", "mistyped field", _heartbeat('"activeTasks":"3"'), "expected int, got str @ $.payload.activeTasks"),
    ("integer with a fraction", "mistyped field", _heartbeat('"activeTasks":3.0'), "expected int, got float @ $.payload.activeTasks"),
    ("integer with an exponent", "mistyped field", _heartbeat('"activeTasks":1e3'), "expected int, got float @ $.payload.activeTasks"),
    ("integer as a boolean", "mistyped field", _heartbeat('"capacity":true'), "expected int, got bool @ $.payload.capacity"),
    ("integer null", "mistyped field", _heartbeat('"uptimeSeconds":null'), "expected int, got null @ $.payload.uptimeSeconds"),
    ("boolean as a string", "mistyped field", '{"type":"Shutdown","graceful":"yes"}', "expected bool, got str @ $.graceful"),
    ("boolean as a number", "mistyped field", '{"type":"Backpressure","signal":{"workerId":"w1","shouldThrottle":1}}', "expected bool, got int @ $.signal.shouldThrottle"),
    ("number as a string", "mistyped field", '{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":"0.5"}}', "expected float, got str @ $.signal.currentLoad"),
    ("string as a number", "mistyped field", '{"type":"WorkerRegistered","workerId":7}', "expected str, got int @ $.workerId"),
    ("traceId a number", "mistyped field", _dispatch(f'{_CREATED},"traceId":7'), "expected str, got int @ $.task.metadata.traceId"),
    ("task null", "mistyped field", '{"type":"TaskDispatch","task":null}', "expected an object, got null @ $.task"),
    ("payload of a Heartbeat an array", "mistyped field", '{"type":"Heartbeat","payload":[]}', "expected an object, got list @ $.payload"),
    ("error a string", "mistyped field", _result_body('"taskId":"%s","status":"Failed","error":"boom"' % _ID), "expected an object, got str @ $.result.error"),
    ("supportedTasks a string", "mistyped field", _registration('"workerId":"w1","supportedTasks":"ping"'), "expected a list of strings, got str @ $.registration.supportedTasks"),
    ("supportedTasks with a number", "mistyped field", _registration('"workerId":"w1","supportedTasks":["ping",1]'), "expected a list of strings, got list @ $.registration.supportedTasks"),
    ("tags an object", "mistyped field", _registration('"workerId":"w1","supportedTasks":[],"tags":{}'), "expected a list of strings, got dict @ $.registration.tags"),
    ("language a number", "mistyped field", _registration('"workerId":"w1","supportedTasks":[],"language":5'), "expected str, got int @ $.registration.language"),
    ("language an object of two members", "mistyped field", _registration('"workerId":"w1","supportedTasks":[],"language":{"Other":"a","More":"b"}'), "expected str, got dict @ $.registration.language"),
    ("status a number", "mistyped field", _result_body('"taskId":"%s","status":3' % _ID), "expected a task status string, got int @ $.result.status"),
    ("unknown status", "bad enum value", _status("done"), "unknown task status 'done' @ $.result.status"),
    ("empty status", "bad enum value", _status(""), "unknown task status '' @ $.result.status"),
    ("unknown priority", "bad enum value", _priority("urgent"), "unknown priority 'urgent' @ $.task.metadata.priority"),
    *NEAR_MISSES,
    ("negative timeoutMs", "out of range", _dispatch(f'{_CREATED},"timeoutMs":-1'), "timeoutMs must be >= 0, got -1"),
    ("negative retryCount", "out of range", _dispatch(f'{_CREATED},"retryCount":-1'), "retryCount must be >= 0, got -1"),
    ("attempt 0", "out of range", _dispatch(f'{_CREATED},"attempt":0'), "attempt must be >= 1, got 0"),
    ("negative epoch", "out of range", _dispatch(f'{_CREATED},"epoch":-1'), "epoch must be >= 0, got -1"),
    ("negative maxRetries", "out of range", _dispatch(f'{_CREATED},"maxRetries":-3'), "maxRetries must be >= 0, got -3"),
    ("negative durationMs", "out of range", _result_body('"taskId":"%s","status":"Completed","durationMs":-5' % _ID), "durationMs must be >= 0, got -5"),
    ("negative activeTasks", "out of range", _heartbeat('"activeTasks":-1'), "activeTasks must be >= 0, got -1"),
    ("negative capacity", "out of range", _heartbeat('"capacity":-1'), "capacity must be >= 0, got -1"),
    ("negative uptimeSeconds", "out of range", _heartbeat('"uptimeSeconds":-1'), "uptimeSeconds must be >= 0, got -1"),
    ("maxConcurrency 0", "out of range", _registration('"workerId":"w1","supportedTasks":[],"maxConcurrency":0'), "maxConcurrency must be >= 1, got 0"),
    ("maxConcurrencyByType limit 0", "out of range", _registration('"workerId":"w1","supportedTasks":["render"],"maxConcurrency":2,"maxConcurrencyByType":{"render":0}'), "maxConcurrencyByType['render'] must be >= 1, got 0"),
    ("maxConcurrencyByType limit above maxConcurrency", "out of range", _registration('"workerId":"w1","supportedTasks":["render"],"maxConcurrency":2,"maxConcurrencyByType":{"render":3}'), "maxConcurrencyByType['render'] must be <= maxConcurrency (2), got 3"),
    ("maxConcurrencyByType an array", "mistyped field", _registration('"workerId":"w1","supportedTasks":[],"maxConcurrencyByType":[["render",2]]'), "expected an object of integers, got list @ $.registration.maxConcurrencyByType"),
    ("maxConcurrencyByType limit a string", "mistyped field", _registration('"workerId":"w1","supportedTasks":[],"maxConcurrencyByType":{"render":"2"}'), "expected an integer for 'render', got str @ $.registration.maxConcurrencyByType"),
    ("maxConcurrencyByType limit with a fraction", "mistyped field", _registration('"workerId":"w1","supportedTasks":[],"maxConcurrency":4,"maxConcurrencyByType":{"render":2.0}'), "expected an integer for 'render', got float @ $.registration.maxConcurrencyByType"),
    ("draining a string", "mistyped field", '{"type":"Backpressure","signal":{"workerId":"w1","draining":"yes"}}', "expected bool, got str @ $.signal.draining"),
    ("draining null", "mistyped field", '{"type":"Backpressure","signal":{"workerId":"w1","draining":null}}', "expected bool, got null @ $.signal.draining"),
    ("extendMs 0", "out of range", _result_body('"taskId":"%s","status":"Running","extendMs":0' % _ID), "extendMs must be >= 1, got 0"),
    ("extendMs with a fraction", "mistyped field", _result_body('"taskId":"%s","status":"Running","extendMs":1.5' % _ID), "expected int, got float @ $.result.extendMs"),
    ("extendMs a string", "mistyped field", _result_body('"taskId":"%s","status":"Running","extendMs":"1000"' % _ID), "expected int, got str @ $.result.extendMs"),
    ("progress a number", "mistyped field", _result_body('"taskId":"%s","status":"Running","progress":0.5' % _ID), "expected an object, got float @ $.result.progress"),
    ("progress fraction above 1", "out of range", _result_body('"taskId":"%s","status":"Running","progress":{"fraction":1.5}' % _ID), "fraction must be from 0 to 1, got 1.5"),
    ("progress fraction negative", "out of range", _result_body('"taskId":"%s","status":"Running","progress":{"fraction":-0.1}' % _ID), "fraction must be from 0 to 1, got -0.1"),
    ("progress fraction a string", "mistyped field", _result_body('"taskId":"%s","status":"Running","progress":{"fraction":"40%%"}' % _ID), "expected float, got str @ $.result.progress.fraction"),
    ("progress message a number", "mistyped field", _result_body('"taskId":"%s","status":"Running","progress":{"message":2}' % _ID), "expected str, got int @ $.result.progress.message"),
    ("worker id starting with a hyphen", "bad worker id", _registration('"workerId":"-w1","supportedTasks":[]'), "invalid worker id '-w1'"),
    ("empty worker id", "bad worker id", _registration('"workerId":"","supportedTasks":[]'), "invalid worker id ''"),
    ("worker id with a space", "bad worker id", _registration('"workerId":"my worker","supportedTasks":[]'), "invalid worker id 'my worker'"),
    ("worker id with a slash", "bad worker id", _registration('"workerId":"a/b","supportedTasks":[]'), "invalid worker id 'a/b'"),
    ("worker id of 129 characters", "bad worker id", _registration('"workerId":"%s","supportedTasks":[]' % (LONGEST_WORKER_ID + "x")), "invalid worker id"),
    ("UUID not hex", "bad UUID", _kill("not-a-uuid"), "not a UUID: 'not-a-uuid' @ $.taskId"),
    ("UUID too short", "bad UUID", _kill(_ID[:-1]), "not a UUID: '%s' @ $.taskId" % _ID[:-1]),
    ("UUID empty", "bad UUID", _kill(""), "not a UUID: '' @ $.taskId"),
    ("UUID a number", "bad UUID", '{"type":"Kill","taskId":42}', "expected a UUID string, got int @ $.taskId"),
    ("task id not a UUID", "bad UUID", '{"type":"TaskDispatch","task":{"id":"task-1","taskType":"x"}}', "not a UUID: 'task-1' @ $.task.id"),
    ("timestamp in words", "bad timestamp", _created("yesterday"), "not an RFC 3339 timestamp: 'yesterday' @ $.task.metadata.createdAt"),
    ("timestamp month 13", "bad timestamp", _created("2025-13-01T00:00:00Z"), "not an RFC 3339 timestamp: '2025-13-01T00:00:00Z'"),
    ("timestamp hour 24", "bad timestamp", _created("2025-03-14T24:00:01Z"), "not an RFC 3339 timestamp"),
    ("timestamp a number (Unix time)", "bad timestamp", _dispatch('"createdAt":1741944413'), "expected an RFC 3339 timestamp, got int @ $.task.metadata.createdAt"),
    ("timestamp before year 1 in UTC", "bad timestamp", _created("0001-01-01T00:00:00+01:00"), "date value out of range @ $.task.metadata.createdAt"),
]  # fmt: skip


# -- checks and output ---------------------------------------------------------------

_INDEX_KEY = re.compile(r"0|[1-9][0-9]*")
_HEX_CONTROL = {chr(c) for c in range(0x20)} - {
    chr(c) for c in [*range(10), *range(16, 26)]
}
_SHORT_ESCAPES = {"\b", "\t", "\n", "\f", "\r"}


def _portable_text(text: str, where: str) -> None:
    """Strings every SDK's JSON writer can reproduce byte for byte (README: canonical
    text): no U+2028/U+2029 (Go escapes them), no control character whose \\u escape
    has hex letters (Jackson writes them upper case)."""
    bad = {"\u2028", "\u2029"} | (_HEX_CONTROL - _SHORT_ESCAPES)
    if any(char in bad for char in text):
        raise AssertionError(f"{where}: {text!r} has a character SDKs cannot write alike")


def _portable(value: Any, where: str) -> None:
    """A payload every SDK reproduces byte for byte, even through a map or a double:
    object keys sorted and not array indexes (JavaScript), integers within 2^53-1,
    floats non-integral and written without an exponent by every language."""
    if isinstance(value, dict):
        keys = list(value)
        if keys != sorted(keys) or any(_INDEX_KEY.fullmatch(k) for k in keys):
            raise AssertionError(f"{where}: keys {keys} are not sorted non-index keys")
        for key, item in value.items():
            _portable_text(key, where)
            _portable(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _portable(item, f"{where}[{index}]")
    elif isinstance(value, str):
        _portable_text(value, where)
    elif isinstance(value, float):
        if value.is_integer() or not 1e-3 <= abs(value) < 1e7:
            raise AssertionError(f"{where}: {value!r} is not written alike everywhere")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise AssertionError(f"{where}: {value} is beyond 2^53-1")


def _portable_message(document: dict[str, Any], where: str) -> None:
    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "payload" and path in ("$.task", "$.result"):
                    _portable(item, f"{where} {path}.payload")
                else:
                    walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for item in value:
                walk(item, path)
        elif isinstance(value, str):
            _portable_text(value, f"{where} {path}")
        elif isinstance(value, int) and not isinstance(value, bool) and value > MAX_INT:
            raise AssertionError(f"{where} {path}: {value} is beyond 2^53-1")

    walk(document, "$")


def valid_vectors() -> list[dict[str, Any]]:
    vectors = []
    for name, message in VALID:
        text = encode(message)
        if encode(decode(text)) != text:
            raise AssertionError(f"{name}: does not round-trip")
        document = json.loads(text)
        _portable_message(document, name)
        vectors.append({"name": name, "message": text, "decoded": document})
    return vectors


def lenient_vectors() -> list[dict[str, Any]]:
    vectors = []
    for name, text in LENIENT:
        canonical = encode(decode(text))
        if canonical == text:
            raise AssertionError(f"{name}: the input is already canonical")
        if encode(decode(canonical)) != canonical:
            raise AssertionError(f"{name}: the canonical form does not round-trip")
        _portable_message(json.loads(canonical), name)
        vectors.append({"name": name, "input": text, "canonical": canonical})
    return vectors


def invalid_vectors() -> list[dict[str, Any]]:
    vectors = []
    for name, kind, text, reason_contains in INVALID:
        try:
            decode(text)
        except ProtocolError as exc:
            if reason_contains not in exc.reason:
                raise AssertionError(
                    f"{name}: reason {exc.reason!r} lacks {reason_contains!r}"
                ) from None
        else:
            raise AssertionError(f"{name}: decodes, but should be rejected")
        vectors.append(
            {"name": name, "class": kind, "input": text, "reason_contains": reason_contains}
        )
    return vectors


def _unique(vectors: list[dict[str, Any]], file: str) -> list[dict[str, Any]]:
    names = [v["name"] for v in vectors]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise AssertionError(f"{file}: duplicate names {sorted(duplicates)}")
    return vectors


def vector_files() -> dict[str, str]:
    """The files of spec/vectors/, by name, with their exact text."""
    files = {
        "valid.json": valid_vectors(),
        "lenient.json": lenient_vectors(),
        "invalid.json": invalid_vectors(),
    }
    return {
        name: json.dumps(_unique(vectors, name), indent=2, ensure_ascii=False) + "\n"
        for name, vectors in files.items()
    }


def check(directory: Path = VECTORS) -> list[str]:
    """How the files in *directory* differ from :func:`vector_files` (empty: alike)."""
    problems = []
    for name, text in vector_files().items():
        path = directory / name
        if not path.is_file():
            problems.append(f"missing: {path}")
            continue
        committed = path.read_text(encoding="utf-8")
        if committed != text:
            diff = difflib.unified_diff(
                committed.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (committed)",
                tofile=f"{path} (generated)",
            )
            problems.append("".join(diff))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(
                "spec/vectors is out of date: run python spec/generate_vectors.py",
                file=sys.stderr,
            )
            return 1
        print("spec/vectors matches the codec")
        return 0
    VECTORS.mkdir(exist_ok=True)
    for name, text in vector_files().items():
        (VECTORS / name).write_text(text, encoding="utf-8")
        print(f"wrote {VECTORS / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
