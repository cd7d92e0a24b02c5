"""The codec: ``encode``/``decode`` between the nine messages and JSON text.

Exact on output (compact JSON, camelCase keys, PascalCase enums, every field written),
liberal on input (case-insensitive enums, defaults for missing optional fields, snake_case
aliases), and ``decode`` raises nothing but ``ProtocolError``, with a reason that says
precisely what is wrong and where.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    MESSAGE_STRATEGIES,
    as_frame,
    json_values,
    messages,
    mutated_objects,
    tagged_objects,
)

from trio_pipe.protocol import (
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_MS,
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatAck,
    HeartbeatPayload,
    Kill,
    Message,
    NotAMessage,
    Priority,
    ProtocolError,
    RemoteProtocolError,
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
from trio_pipe.protocol._codec import parse_json_value

U = "6f1c2a4e-9b3d-4c8a-a1e2-3b4c5d6e7f80"
TASK_ID = uuid.UUID(U)
CREATED = "2024-05-06T07:08:09.123456Z"
CREATED_AT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
MESSAGE_TYPES = list(MESSAGE_STRATEGIES)

fuzz = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def decodes_or_raises_protocol_error(frame: str | bytes) -> Message | None:
    """Decode *frame*; ``None`` if it was rejected. Any other exception propagates."""
    try:
        return decode(frame)
    except ProtocolError:
        return None


# ---------------------------------------------------------------------------
# Round trip


@pytest.mark.parametrize("message_type", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@settings(deadline=None)
@given(data=st.data())
def test_decode_inverts_encode_for_every_message_type(
    message_type: type[Message], data: st.DataObject
) -> None:
    message = data.draw(MESSAGE_STRATEGIES[message_type])
    assert decode(encode(message)) == message


@settings(deadline=None)
@given(messages)
def test_decode_accepts_encoded_frames_as_utf8_bytes(message: Message) -> None:
    assert decode(encode(message).encode("utf-8")) == message


@settings(deadline=None)
@given(messages)
def test_encoding_is_canonical(message: Message) -> None:
    text = encode(message)
    assert encode(decode(text)) == text


# ---------------------------------------------------------------------------
# Decode fuzzing: nothing but ProtocolError, whatever arrives


@fuzz
@given(st.binary())
def test_decoding_arbitrary_bytes_raises_only_protocol_error(frame: bytes) -> None:
    decodes_or_raises_protocol_error(frame)


@fuzz
@given(st.text())
def test_decoding_arbitrary_text_raises_only_protocol_error(frame: str) -> None:
    decodes_or_raises_protocol_error(frame)


@fuzz
@given(json_values(max_leaves=30))
def test_decoding_arbitrary_json_raises_only_protocol_error(value: Any) -> None:
    decodes_or_raises_protocol_error(as_frame(value))


@fuzz
@given(tagged_objects())
def test_decoding_a_valid_type_tag_with_garbage_fields_raises_only_protocol_error(
    value: dict[str, Any],
) -> None:
    decodes_or_raises_protocol_error(as_frame(value))


@fuzz
@given(mutated_objects())
def test_decoding_a_mutated_valid_message_raises_only_protocol_error(value: Any) -> None:
    decodes_or_raises_protocol_error(as_frame(value))


@fuzz
@given(st.one_of(mutated_objects(), tagged_objects()))
def test_whatever_decode_accepts_encodes_back_to_the_same_message(value: Any) -> None:
    message = decodes_or_raises_protocol_error(as_frame(value))
    if message is not None:
        assert decode(encode(message)) == message


DEEP = 100_000


@pytest.mark.parametrize(
    "frame",
    [
        "[" * DEEP,
        "[" * DEEP + "]" * DEEP,
        '{"a":' * DEEP + "1" + "}" * DEEP,
        '{{"type":"TaskDispatch","task":{{"id":"{}","taskType":"t","payload":{}}}}}'.format(
            U, "[" * DEEP + "]" * DEEP
        ),
    ],
    ids=["unclosed-arrays", "closed-arrays", "objects", "in-a-payload"],
)
def test_deeply_nested_json_is_a_protocol_error(frame: str) -> None:
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode(frame)


def nested_payload(depth: int) -> str:
    """A TaskResult whose frame nests *depth* levels (its envelope takes two)."""
    payload = "[" * (depth - 2) + "]" * (depth - 2)
    return (
        f'{{"type":"TaskResult","result":{{"taskId":"{U}","status":"Completed",'
        f'"payload":{payload}}}}}'
    )


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_nesting_up_to_max_depth_is_read_and_one_level_more_is_refused(
    as_bytes: bool,
) -> None:
    def frame(depth: int) -> str | bytes:
        text = nested_payload(depth)
        return text.encode() if as_bytes else text

    assert isinstance(decode(frame(10), max_depth=10), TaskResultMessage)
    with pytest.raises(RemoteProtocolError) as refused:
        decode(frame(11), max_depth=10)
    assert refused.value.reason == "JSON nested too deeply (more than 10 levels)"
    assert not isinstance(refused.value, NotAMessage)


def test_the_depth_limit_holds_on_the_reference_path_too() -> None:
    # A lone surrogate sends the frame past orjson, to the standard library's json.
    frame = nested_payload(20).replace('"Completed"', '"Completed","x":"\\ud800"')
    with pytest.raises(RemoteProtocolError, match="more than 10 levels"):
        decode(frame, max_depth=10)


def test_the_default_depth_limit_admits_deep_payloads_short_of_it() -> None:
    assert isinstance(decode(nested_payload(DEFAULT_MAX_JSON_DEPTH)), TaskResultMessage)
    with pytest.raises(RemoteProtocolError, match="nested too deeply"):
        decode(nested_payload(DEFAULT_MAX_JSON_DEPTH + 1))


def test_many_brackets_in_strings_do_not_count_as_depth() -> None:
    frame = nested_payload(4).replace('"Completed"', '"Completed","x":"' + "[" * 500 + '"')
    assert isinstance(decode(frame, max_depth=4), TaskResultMessage)


@pytest.mark.parametrize(
    "text",
    ["hello", "NaN", '{"a":-Infinity}', "[1e400]", "[" * DEEP + "]" * DEEP, b'"\xff"'],
    ids=["not-json", "nan", "infinity", "beyond-float", "too-deep", "not-utf8"],
)
def test_parse_json_value_refuses_what_decode_refuses_for_the_same_reason(
    text: str | bytes,
) -> None:
    # The one reading of JSON that the codec shares (the WASM host reads a module's
    # output with it).
    with pytest.raises(ValueError) as refused:
        parse_json_value(text)
    with pytest.raises(NotAMessage) as rejected:
        decode(text)
    assert rejected.value.reason == f"not JSON: {refused.value}"


# ---------------------------------------------------------------------------
# Precise reasons


def _dispatch(task: str) -> str:
    return f'{{"type":"TaskDispatch","task":{task}}}'


def _metadata(fields: str) -> str:
    return _dispatch(f'{{"id":"{U}","taskType":"t","metadata":{{{fields}}}}}')


def _result(fields: str) -> str:
    return f'{{"type":"TaskResult","result":{{"taskId":"{U}",{fields}}}}}'


def _register(fields: str) -> str:
    return f'{{"type":"WorkerRegister","registration":{{"workerId":"w1",{fields}}}}}'


def bad(name: str, frame: str | bytes, reason: str, max_size: int | None = None) -> Any:
    return pytest.param(frame, reason, max_size, id=name)


BAD_FRAMES = [
    # framing
    bad("not-json", "hello from the worker's logger", "not JSON"),
    bad("not-utf8", b'{"type":"\xff"}', "not JSON"),
    bad("nan-literal", _result('"status":"Completed","payload":NaN'), "not JSON"),
    bad(
        "infinity-literal", _result('"status":"Completed","payload":-Infinity'), "not JSON"
    ),
    bad("number-beyond-float", _result('"status":"Completed","payload":1e400'), "not JSON"),
    bad("array", "[]", "expected a JSON object, got list"),
    bad("string", '"TaskDispatch"', "expected a JSON object, got str"),
    bad("null", "null", "expected a JSON object, got null"),
    bad("missing-type", '{"task":{}}', "missing message type"),
    bad("null-type", '{"type":null}', "missing message type"),
    bad("type-not-string", '{"type":["Kill"]}', "message type must be a string"),
    bad("unknown-type", '{"type":"Progress"}', "unknown message type 'Progress'"),
    bad("too-large-str", '{"type":"HeartbeatAck"}', "exceeds the limit of 22", max_size=22),
    bad("too-large-bytes", b'{"type":"HeartbeatAck"}', "frame of 23 bytes", max_size=10),
    # missing required fields
    bad("missing-task", '{"type":"TaskDispatch"}', "required field missing @ $.task"),
    bad(
        "missing-taskType",
        _dispatch(f'{{"id":"{U}"}}'),
        "invalid TaskDispatch: required field missing @ $.task.taskType",
    ),
    bad("missing-taskId", '{"type":"Kill"}', "required field missing @ $.taskId"),
    bad(
        "missing-status", _result('"payload":1'), "required field missing @ $.result.status"
    ),
    bad(
        "missing-error-message",
        _result('"status":"Failed","error":{"code":"HANDLER_ERROR"}'),
        "required field missing @ $.result.error.message",
    ),
    bad(
        "missing-workerId",
        '{"type":"WorkerRegister","registration":{"supportedTasks":[]}}',
        "required field missing @ $.registration.workerId",
    ),
    bad(
        "missing-signal-workerId",
        '{"type":"Backpressure","signal":{}}',
        "required field missing @ $.signal.workerId",
    ),
    # mistyped fields
    bad(
        "timeoutMs-string",
        _metadata('"timeoutMs":"5000"'),
        "expected int, got str @ $.task.metadata.timeoutMs",
    ),
    bad(
        "timeoutMs-bool",
        _metadata('"timeoutMs":true'),
        "expected int, got bool @ $.task.metadata.timeoutMs",
    ),
    bad(
        "activeTasks-float",
        '{"type":"Heartbeat","payload":{"workerId":"w1","activeTasks":1.0}}',
        "expected int, got float @ $.payload.activeTasks",
    ),
    bad(
        "graceful-int",
        '{"type":"Shutdown","graceful":1}',
        "expected bool, got int @ $.graceful",
    ),
    bad(
        "currentLoad-string",
        '{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":"0.5"}}',
        "expected float, got str @ $.signal.currentLoad",
    ),
    bad(
        "currentLoad-beyond-float",
        '{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":1%s}}'
        % ("0" * 400),
        "too large to convert to float @ $.signal.currentLoad",
    ),
    bad(
        "retryable-string",
        _result('"status":"Failed","error":{"code":"E","message":"m","retryable":"yes"}'),
        "expected bool, got str @ $.result.error.retryable",
    ),
    bad(
        "taskType-null",
        _dispatch(f'{{"id":"{U}","taskType":null}}'),
        "got null @ $.task.taskType",
    ),
    bad("task-not-object", _dispatch("[]"), "expected an object, got list @ $.task"),
    bad(
        "metadata-null",
        _dispatch(f'{{"id":"{U}","taskType":"t","metadata":null}}'),
        "$.task.metadata",
    ),
    bad(
        "supportedTasks-string",
        _register('"supportedTasks":"echo"'),
        "expected a list of strings, got str @ $.registration.supportedTasks",
    ),
    bad(
        "tags-of-numbers",
        _register('"supportedTasks":[],"tags":[1]'),
        "expected a list of strings, got list @ $.registration.tags",
    ),
    bad(
        "language-object-of-number",
        _register('"supportedTasks":[],"language":{"Other":5}'),
        "expected str, got int @ $.registration.language",
    ),
    # out-of-range numbers
    bad(
        "negative-timeoutMs", _metadata('"timeoutMs":-1'), "timeoutMs must be >= 0, got -1"
    ),
    bad(
        "negative-retryCount",
        _metadata('"retryCount":-2'),
        "retryCount must be >= 0, got -2",
    ),
    bad(
        "negative-durationMs",
        _result('"status":"Failed","durationMs":-5'),
        "durationMs must be >= 0",
    ),
    bad(
        "negative-activeTasks",
        '{"type":"Heartbeat","payload":{"workerId":"w1","activeTasks":-1}}',
        "activeTasks must be >= 0, got -1 @ $.payload",
    ),
    bad(
        "zero-maxConcurrency",
        _register('"supportedTasks":[],"maxConcurrency":0'),
        "maxConcurrency must be >= 1, got 0 @ $.registration",
    ),
    # identifiers, enums and timestamps
    bad(
        "bad-uuid", _dispatch('{"id":"42","taskType":"t"}'), "not a UUID: '42' @ $.task.id"
    ),
    bad(
        "uuid-number",
        '{"type":"Kill","taskId":42}',
        "expected a UUID string, got int @ $.taskId",
    ),
    bad(
        "bad-worker-id",
        '{"type":"WorkerRegister","registration":{"workerId":"w1;rm -rf","supportedTasks":[]}}',
        "invalid worker id 'w1;rm -rf'",
    ),
    bad("unknown-status", _result('"status":"Exploded"'), "unknown task status 'Exploded'"),
    bad("status-number", _result('"status":3'), "expected a task status string, got int"),
    bad(
        "unknown-priority",
        _metadata('"priority":"urgent"'),
        "unknown priority 'urgent' @ $.task.metadata.priority",
    ),
    bad(
        "bad-timestamp",
        _metadata('"createdAt":"yesterday"'),
        "not an RFC 3339 timestamp: 'yesterday' @ $.task.metadata.createdAt",
    ),
    bad(
        "timestamp-number",
        _metadata('"createdAt":1714979289'),
        "expected an RFC 3339 timestamp, got int @ $.task.metadata.createdAt",
    ),
    bad(
        "timestamp-beyond-range",
        _metadata('"createdAt":"0001-01-01T00:00:00+01:00"'),
        "out of range @ $.task.metadata.createdAt",
    ),
]


@pytest.mark.parametrize(("frame", "reason", "max_size"), BAD_FRAMES)
def test_each_kind_of_bad_frame_is_rejected_with_a_precise_reason(
    frame: str | bytes, reason: str, max_size: int | None
) -> None:
    with pytest.raises(ProtocolError) as caught:
        if max_size is None:
            decode(frame)
        else:
            decode(frame, max_size=max_size)
    assert reason in caught.value.reason
    assert "unknown error" not in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_every_problem_in_a_frame_is_reported_not_only_the_first() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode('{"type":"TaskResult","result":{"taskId":"42","durationMs":"1"}}')
    reason = caught.value.reason
    assert "$.result.taskId" in reason
    assert "$.result.status" in reason
    assert "$.result.durationMs" in reason


def test_a_reason_quotes_the_offending_value_verbatim() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(_register('"workerId":"-svc.worker_one","supportedTasks":[]'))
    assert "'-svc.worker_one'" in caught.value.reason


def test_a_frame_exactly_at_the_size_limit_is_accepted() -> None:
    frame = '{"type":"HeartbeatAck"}'
    assert decode(frame, max_size=len(frame)) == HeartbeatAck()


# ---------------------------------------------------------------------------
# Liberal input


def _task_result(status: TaskStatus, **fields: Any) -> TaskResultMessage:
    return TaskResultMessage(TaskResult(task_id=TASK_ID, status=status, **fields))


def _task_dispatch(**metadata: Any) -> TaskDispatch:
    fields = {"created_at": CREATED_AT, **metadata}
    return TaskDispatch(Task(id=TASK_ID, task_type="t", metadata=TaskMetadata(**fields)))


def good(name: str, frame: str, expected: Message) -> Any:
    return pytest.param(frame, expected, id=name)


LIBERAL_FRAMES = [
    # enums in any case, with or without underscores
    good(
        "status-lowercase",
        _result('"status":"completed"'),
        _task_result(TaskStatus.COMPLETED),
    ),
    good(
        "status-uppercase",
        _result('"status":"COMPLETED"'),
        _task_result(TaskStatus.COMPLETED),
    ),
    good(
        "status-snake", _result('"status":"timed_out"'), _task_result(TaskStatus.TIMED_OUT)
    ),
    good(
        "status-screaming",
        _result('"status":"TIMED_OUT"'),
        _task_result(TaskStatus.TIMED_OUT),
    ),
    good(
        "priority-lowercase",
        _metadata(f'"createdAt":"{CREATED}","priority":"critical"'),
        _task_dispatch(priority=Priority.CRITICAL),
    ),
    good(
        "priority-uppercase",
        _metadata(f'"createdAt":"{CREATED}","priority":"LOW"'),
        _task_dispatch(priority=Priority.LOW),
    ),
    good("type-tag-any-case", '{"type":"heartbeatack"}', HeartbeatAck()),
    # missing optional fields take their defaults
    good(
        "result-without-durationMs-and-workerId",
        _result('"status":"Completed","payload":{"ok":true}'),
        _task_result(
            TaskStatus.COMPLETED, payload={"ok": True}, duration_ms=0, worker_id=""
        ),
    ),
    good(
        "heartbeat-without-uptimeSeconds",
        '{"type":"Heartbeat","payload":{"workerId":"w1","activeTasks":2,"capacity":4}}',
        Heartbeat(HeartbeatPayload("w1", active_tasks=2, capacity=4, uptime_seconds=0)),
    ),
    good(
        "metadata-with-only-createdAt",
        _metadata(f'"createdAt":"{CREATED}"'),
        _task_dispatch(
            timeout_ms=DEFAULT_TIMEOUT_MS,
            priority=Priority.NORMAL,
            retry_count=0,
            max_retries=DEFAULT_MAX_RETRIES,
            trace_id=None,
        ),
    ),
    good(
        "kill-without-reason",
        f'{{"type":"Kill","taskId":"{U}"}}',
        Kill(TASK_ID, ""),
    ),
    good("shutdown-without-graceful", '{"type":"Shutdown"}', Shutdown(graceful=True)),
    # snake_case aliases from the Rust side
    good(
        "kill-task_id",
        f'{{"type":"Kill","task_id":"{U}","reason":"r"}}',
        Kill(TASK_ID, "r"),
    ),
    good(
        "kill-taskId-wins-over-task_id",
        f'{{"type":"Kill","task_id":"{uuid.UUID(int=0)}","taskId":"{U}"}}',
        Kill(TASK_ID),
    ),
    good(
        "registered-worker_id",
        '{"type":"WorkerRegistered","worker_id":"w1"}',
        WorkerRegistered("w1"),
    ),
    # the two shapes of language, and null tags
    good(
        "language-string",
        _register('"supportedTasks":["echo"],"language":"TypeScript"'),
        WorkerRegister(WorkerRegistration("w1", ("echo",), language="TypeScript")),
    ),
    good(
        "language-other",
        _register('"supportedTasks":["echo"],"language":{"Other":"wasm"}'),
        WorkerRegister(WorkerRegistration("w1", ("echo",), language="wasm")),
    ),
    good(
        "tags-null",
        _register('"supportedTasks":[],"maxConcurrency":3,"tags":null'),
        WorkerRegister(WorkerRegistration("w1", (), max_concurrency=3, tags=())),
    ),
    # unknown fields, anywhere, are ignored
    good(
        "extra-top-level-field", '{"type":"HeartbeatAck","seq":7,"v":[1]}', HeartbeatAck()
    ),
    good(
        "extra-nested-fields",
        _result(
            '"status":"Failed","error":{"code":"E","message":"m","hint":1},"progress":0.5'
        ),
        _task_result(TaskStatus.FAILED, error=TaskError("E", "m")),
    ),
    # numbers: an integer is a fine float
    good(
        "integer-currentLoad",
        '{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":1,"shouldThrottle":true}}',
        Backpressure(BackpressureSignal("w1", current_load=1.0, should_throttle=True)),
    ),
    good(
        "uppercase-uuid",
        f'{{"type":"Kill","taskId":"{U.upper()}"}}',
        Kill(TASK_ID),
    ),
]


@pytest.mark.parametrize(("frame", "expected"), LIBERAL_FRAMES)
def test_liberal_input_is_understood(frame: str, expected: Message) -> None:
    assert decode(frame) == expected


# Enum spellings: exactly those of docs/protocol.md ("Enum"), written out here rather
# than derived from the codec: a value's PascalCase name, or for a name of several
# words its snake_case, in any ASCII case; nothing else.
ACCEPTED_STATUSES = {
    "pending": TaskStatus.PENDING,
    "dispatched": TaskStatus.DISPATCHED,
    "running": TaskStatus.RUNNING,
    "completed": TaskStatus.COMPLETED,
    "failed": TaskStatus.FAILED,
    "timedout": TaskStatus.TIMED_OUT,
    "timed_out": TaskStatus.TIMED_OUT,
    "cancelled": TaskStatus.CANCELLED,
}
ACCEPTED_PRIORITIES = {p.name.lower(): p for p in Priority}
_TIMED_OUT = (
    "(did you mean TimedOut? accepted: 'TimedOut' or 'timed_out', in any ASCII case)"
)


def _priority(value: str) -> str:
    return _metadata(f'"createdAt":"{CREATED}","priority":"{value}"')


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param(
            _result('"status":"timed-out"'),
            f"unknown task status 'timed-out' {_TIMED_OUT} @ $.result.status",
            id="hyphenated",
        ),
        pytest.param(
            _result('"status":"timed out"'),
            f"unknown task status 'timed out' {_TIMED_OUT} @ $.result.status",
            id="space",
        ),
        pytest.param(
            _result('"status":"timed__out"'),
            f"unknown task status 'timed__out' {_TIMED_OUT} @ $.result.status",
            id="two-underscores",
        ),
        pytest.param(
            _result('"status":"Pend_ing"'),
            "unknown task status 'Pend_ing' (did you mean Pending? accepted: 'Pending', "
            "in any ASCII case) @ $.result.status",
            id="underscore-inside-a-word",
        ),
        pytest.param(
            _result('"status":"TimedOu"'),
            f"unknown task status 'TimedOu' {_TIMED_OUT} @ $.result.status",
            id="truncated",
        ),
        pytest.param(
            _result('"status":"Canceled"'),
            "unknown task status 'Canceled' (did you mean Cancelled? accepted: "
            "'Cancelled', in any ASCII case) @ $.result.status",
            id="letter-missing",
        ),
        pytest.param(
            _result('"status":"T\u0130medOut"'),
            f"unknown task status 'T\u0130medOut' {_TIMED_OUT} @ $.result.status",
            id="non-ascii-capital-I",
        ),
        pytest.param(
            _priority("Hi_gh"),
            "unknown priority 'Hi_gh' (did you mean High? accepted: 'High', in any ASCII "
            "case) @ $.task.metadata.priority",
            id="priority-underscore",
        ),
        pytest.param(
            _priority("Highh"),
            "unknown priority 'Highh' (did you mean High? accepted: 'High', in any ASCII "
            "case) @ $.task.metadata.priority",
            id="priority-extra-letter",
        ),
        pytest.param(
            _priority("urgent"),
            "unknown priority 'urgent' @ $.task.metadata.priority",
            id="far-from-every-name-no-hint",
        ),
    ],
)
def test_near_miss_enum_spellings_are_rejected_naming_what_is_accepted(
    frame: str, reason: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(frame)
    assert caught.value.reason.endswith(": " + reason)


_NEAR_NAME_CHARS = "timedoutTIMEDOUTfailhgwcrLNW_- \u0130\u0131\u017f\u212a"


@fuzz
@given(st.text(_NEAR_NAME_CHARS, max_size=11) | st.sampled_from(list(ACCEPTED_STATUSES)))
def test_a_status_is_accepted_exactly_in_the_documented_spellings(value: str) -> None:
    expected = ACCEPTED_STATUSES.get(value.lower()) if value.isascii() else None
    message = decodes_or_raises_protocol_error(_result(f'"status":"{value}"'))
    got = message.result.status if isinstance(message, TaskResultMessage) else None
    assert got == expected


@fuzz
@given(st.text(_NEAR_NAME_CHARS, max_size=9) | st.sampled_from(list(ACCEPTED_PRIORITIES)))
def test_a_priority_is_accepted_exactly_in_the_documented_spellings(value: str) -> None:
    expected = ACCEPTED_PRIORITIES.get(value.lower()) if value.isascii() else None
    message = decodes_or_raises_protocol_error(_priority(value))
    got = message.task.metadata.priority if isinstance(message, TaskDispatch) else None
    assert got == expected


@pytest.mark.parametrize(
    "spelling",
    ["timedout", "TIMEDOUT", "TimedOut", "timedOut", "timed_out", "TIMED_OUT", "tImEd_OuT"],
)
def test_every_case_of_both_spellings_of_a_multi_word_status_is_accepted(
    spelling: str,
) -> None:
    assert decode(_result(f'"status":"{spelling}"')) == _task_result(TaskStatus.TIMED_OUT)


def test_the_type_tag_ignores_ascii_case_only() -> None:
    kill = f'{{"type":"%s","taskId":"{U}"}}'
    assert decode(kill % "kILL") == Kill(TASK_ID)
    # the Kelvin sign, a capital I with a dot, a small i without one
    for lookalike in ["\u212aill", "K\u0130ll", "k\u0131ll"]:
        with pytest.raises(ProtocolError, match="unknown message type"):
            decode(kill % lookalike)


def test_task_dispatch_without_metadata_takes_the_default_metadata() -> None:
    before = datetime.now(UTC)
    message = decode(_dispatch(f'{{"id":"{U}","taskType":"echo","payload":[1]}}'))
    assert isinstance(message, TaskDispatch)
    metadata = message.task.metadata
    assert (metadata.timeout_ms, metadata.priority) == (DEFAULT_TIMEOUT_MS, Priority.NORMAL)
    assert (metadata.retry_count, metadata.max_retries) == (0, DEFAULT_MAX_RETRIES)
    assert metadata.trace_id is None
    assert before <= metadata.created_at <= datetime.now(UTC)


def _created_at(timestamp: str) -> datetime:
    message = decode(_metadata(f'"createdAt":"{timestamp}"'))
    assert isinstance(message, TaskDispatch)
    return message.task.metadata.created_at


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-05-06T07:08:09Z", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06T07:08:09.5Z", datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)),
        (
            "2024-05-06T07:08:09.123456789Z",
            datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        ),
        ("2024-05-06T09:08:09.123456789+02:00", CREATED_AT.replace(microsecond=123456)),
        ("2024-05-06T01:38:09-05:30", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06T07:08:09-00:00", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06t07:08:09z", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06 07:08:09+00:00", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06T07:08:09", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
    ],
    ids=[
        "zulu",
        "fraction",
        "nanoseconds-truncated",
        "nanoseconds-with-offset",
        "negative-offset",
        "unknown-offset",
        "lowercase-t-and-z",
        "space-separator",
        "no-offset-taken-as-utc",
    ],
)
def test_rfc3339_timestamps_are_normalised_to_utc(
    timestamp: str, expected: datetime
) -> None:
    created_at = _created_at(timestamp)
    assert created_at == expected
    assert created_at.utcoffset() == timedelta(0)


# ---------------------------------------------------------------------------
# Exact output


EXACT_OUTPUT = [
    pytest.param(
        TaskDispatch(
            Task(
                id=TASK_ID,
                task_type="resize",
                payload={"w": 640, "h": 480.5, "tags": ["é", None]},
                metadata=TaskMetadata(
                    created_at=CREATED_AT,
                    timeout_ms=5000,
                    priority=Priority.HIGH,
                    retry_count=1,
                    max_retries=4,
                    trace_id="abc",
                ),
            )
        ),
        f'{{"type":"TaskDispatch","task":{{"id":"{U}","taskType":"resize",'
        '"payload":{"w":640,"h":480.5,"tags":["é",null]},'
        f'"metadata":{{"createdAt":"{CREATED}","timeoutMs":5000,"priority":"High",'
        '"retryCount":1,"maxRetries":4,"traceId":"abc"}}}',
        id="TaskDispatch",
    ),
    pytest.param(
        TaskDispatch(
            Task(
                id=TASK_ID,
                task_type="t",
                metadata=TaskMetadata(created_at=datetime(2024, 5, 6, 9, 8, 9, tzinfo=UTC)),
            )
        ),
        f'{{"type":"TaskDispatch","task":{{"id":"{U}","taskType":"t","payload":null,'
        '"metadata":{"createdAt":"2024-05-06T09:08:09Z","timeoutMs":300000,'
        '"priority":"Normal","retryCount":0,"maxRetries":3,"traceId":null}}}',
        id="TaskDispatch-defaults",
    ),
    pytest.param(
        Kill(TASK_ID, "timed out"),
        f'{{"type":"Kill","taskId":"{U}","reason":"timed out"}}',
        id="Kill",
    ),
    pytest.param(
        Shutdown(graceful=False), '{"type":"Shutdown","graceful":false}', id="Shutdown"
    ),
    pytest.param(
        WorkerRegistered("w-1"),
        '{"type":"WorkerRegistered","workerId":"w-1"}',
        id="Registered",
    ),
    pytest.param(HeartbeatAck(), '{"type":"HeartbeatAck"}', id="HeartbeatAck"),
    pytest.param(
        WorkerRegister(WorkerRegistration("w-1", ("echo", "sum"), 8, "Go")),
        '{"type":"WorkerRegister","registration":{"workerId":"w-1",'
        '"supportedTasks":["echo","sum"],"maxConcurrency":8,"language":"Go","tags":[]}}',
        id="WorkerRegister",
    ),
    pytest.param(
        Heartbeat(HeartbeatPayload("w-1", active_tasks=2, capacity=8, uptime_seconds=60)),
        '{"type":"Heartbeat","payload":{"workerId":"w-1","activeTasks":2,"capacity":8,'
        '"uptimeSeconds":60}}',
        id="Heartbeat",
    ),
    pytest.param(
        TaskResultMessage(TaskResult(TASK_ID, TaskStatus.TIMED_OUT)),
        f'{{"type":"TaskResult","result":{{"taskId":"{U}","status":"TimedOut","payload":null,'
        '"error":null,"durationMs":0,"workerId":""}}',
        id="TaskResult-nulls",
    ),
    pytest.param(
        TaskResultMessage(
            TaskResult(
                TASK_ID,
                TaskStatus.FAILED,
                error=TaskError("HANDLER_ERROR", "boom", retryable=True),
                duration_ms=12,
                worker_id="w-1",
            )
        ),
        f'{{"type":"TaskResult","result":{{"taskId":"{U}","status":"Failed","payload":null,'
        '"error":{"code":"HANDLER_ERROR","message":"boom","retryable":true},'
        '"durationMs":12,"workerId":"w-1"}}',
        id="TaskResult-error",
    ),
    pytest.param(
        Backpressure(BackpressureSignal("w-1", current_load=0.75, should_throttle=True)),
        '{"type":"Backpressure","signal":{"workerId":"w-1","currentLoad":0.75,'
        '"shouldThrottle":true}}',
        id="Backpressure",
    ),
]


@pytest.mark.parametrize(("message", "expected"), EXACT_OUTPUT)
def test_encode_writes_the_exact_expected_json(message: Message, expected: str) -> None:
    assert encode(message) == expected


# Every object on the wire, by message type: where it is, and exactly which keys it has.
WIRE_SHAPES: dict[str, dict[tuple[str, ...], set[str]]] = {
    "TaskDispatch": {
        (): {"type", "task"},
        ("task",): {"id", "taskType", "payload", "metadata"},
        ("task", "metadata"): {
            "createdAt", "timeoutMs", "priority", "retryCount", "maxRetries", "traceId"
        },
    },
    "Kill": {(): {"type", "taskId", "reason"}},
    "Shutdown": {(): {"type", "graceful"}},
    "WorkerRegistered": {(): {"type", "workerId"}},
    "HeartbeatAck": {(): {"type"}},
    "WorkerRegister": {
        (): {"type", "registration"},
        ("registration",): {
            "workerId", "supportedTasks", "maxConcurrency", "language", "tags"
        },
    },
    "Heartbeat": {
        (): {"type", "payload"},
        ("payload",): {"workerId", "activeTasks", "capacity", "uptimeSeconds"},
    },
    "TaskResult": {
        (): {"type", "result"},
        ("result",): {"taskId", "status", "payload", "error", "durationMs", "workerId"},
        ("result", "error"): {"code", "message", "retryable"},
    },
    "Backpressure": {
        (): {"type", "signal"},
        ("signal",): {"workerId", "currentLoad", "shouldThrottle"},
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("language", "written"),
    [
        ("Python", '"Python"'),
        ("TypeScript", '"TypeScript"'),
        ("Go", '"Go"'),
        ("Java", '{"Other":"Java"}'),
        ("python", '{"Other":"python"}'),  # rust-pipe's names are case-sensitive
        ("Unknown", '{"Other":"Unknown"}'),
    ],
)
def test_language_is_written_as_rust_pipe_reads_it(language: str, written: str) -> None:
    text = encode(WorkerRegister(WorkerRegistration("w1", ("x",), language=language)))
    assert f'"language":{written},' in text
    decoded = decode(text)
    assert isinstance(decoded, WorkerRegister)
    assert decoded.registration.language == language


# The extensions of rust-pipe v0.1: written only when not at their default.
EXTENSIONS: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {
    "WorkerRegister": {("registration",): {"maxConcurrencyByType": {}}},
    "TaskResult": {("result",): {"progress": None, "extendMs": None}},
    "Backpressure": {("signal",): {"draining": False}},
}


@settings(deadline=None)
@given(messages)
def test_every_field_is_written_under_its_camel_case_name(message: Message) -> None:
    document = json.loads(encode(message))
    for path, keys in WIRE_SHAPES[message.TYPE].items():
        node = document
        for key in path:
            node = node[key]
        if node is None and path == ("result", "error"):
            continue  # the one nullable object: written as null
        extensions = EXTENSIONS.get(message.TYPE, {}).get(path, {})
        assert set(node) - set(extensions) == keys, path
        for name, default in extensions.items():
            assert node.get(name, default) != default or name not in node, name
        if node.get("progress") is not None:
            assert set(node["progress"]) == {"fraction", "message"}


@settings(deadline=None)
@given(messages)
def test_output_is_compact_json_with_the_type_tag_first(message: Message) -> None:
    text = encode(message)
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    assert text.startswith(f'{{"type":"{message.TYPE}"')


@pytest.mark.parametrize(
    ("priority", "wire"),
    [
        (Priority.LOW, "Low"),
        (Priority.NORMAL, "Normal"),
        (Priority.HIGH, "High"),
        (Priority.CRITICAL, "Critical"),
    ],
)
def test_priorities_are_written_in_pascal_case(priority: Priority, wire: str) -> None:
    text = encode(_task_dispatch(priority=priority))
    assert json.loads(text)["task"]["metadata"]["priority"] == wire


@pytest.mark.parametrize(
    ("status", "wire"),
    [
        (TaskStatus.PENDING, "Pending"),
        (TaskStatus.DISPATCHED, "Dispatched"),
        (TaskStatus.RUNNING, "Running"),
        (TaskStatus.COMPLETED, "Completed"),
        (TaskStatus.FAILED, "Failed"),
        (TaskStatus.TIMED_OUT, "TimedOut"),
        (TaskStatus.CANCELLED, "Cancelled"),
    ],
)
def test_statuses_are_written_in_pascal_case(status: TaskStatus, wire: str) -> None:
    assert json.loads(encode(_task_result(status)))["result"]["status"] == wire


def test_timestamps_are_written_in_utc_with_a_z() -> None:
    in_paris = datetime(2024, 5, 6, 11, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    text = encode(_task_dispatch(created_at=in_paris))
    assert (
        json.loads(text)["task"]["metadata"]["createdAt"] == "2024-05-06T09:08:09.123456Z"
    )


@pytest.mark.parametrize(
    ("payload", "error"),
    [(float("nan"), ValueError), (float("inf"), ValueError), (object(), TypeError)],
)
def test_encode_refuses_a_payload_json_cannot_carry(
    payload: Any, error: type[Exception]
) -> None:
    message = TaskDispatch(Task(id=TASK_ID, task_type="t", payload=payload))
    with pytest.raises(error):
        encode(message)


# ---------------------------------------------------------------------------
# Sans-IO

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_importing_trio_pipe_protocol_does_not_import_trio() -> None:
    code = "import sys, trio_pipe.protocol; assert 'trio' not in sys.modules"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_the_protocol_package_itself_imports_no_trio_module() -> None:
    # Import trio_pipe.protocol under an empty parent package, so that only the
    # protocol package's own imports count.
    code = (
        "import sys, types\n"
        "parent = types.ModuleType('trio_pipe')\n"
        f"parent.__path__ = [{str(REPO / 'trio_pipe')!r}]\n"
        "sys.modules['trio_pipe'] = parent\n"
        "import trio_pipe.protocol\n"
        "loaded = sorted(m for m in sys.modules\n"
        "                if m.split('.')[0] in ('trio', 'trio_websocket', 'wsproto', 'websockets'))\n"
        "assert not loaded, loaded\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


# ---------------------------------------------------------------------------
# Extensions: checked when built, as every other field is


@pytest.mark.parametrize("status", [s for s in TaskStatus if s.is_terminal])
@pytest.mark.parametrize(
    "extension",
    [{"progress": TaskProgress(0.5)}, {"extend_ms": 1000}],
    ids=["progress", "extendMs"],
)
def test_a_terminal_result_cannot_carry_progress_or_an_extension(
    status: TaskStatus, extension: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="carries no progress or extendMs"):
        TaskResult(TASK_ID, status, **extension)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (
            lambda: TaskResult(TASK_ID, TaskStatus.RUNNING, extend_ms=0),
            "extendMs must be >= 1",
        ),
        (lambda: TaskProgress(fraction=1.01), "fraction must be from 0 to 1"),
        (lambda: TaskProgress(fraction=-0.5), "fraction must be from 0 to 1"),
        (lambda: TaskProgress(fraction=math.nan), "fraction must be from 0 to 1"),
        (
            lambda: WorkerRegistration("w", ("a",), 2, max_concurrency_by_type={"a": 3}),
            r"maxConcurrencyByType\['a'\] must be <= maxConcurrency \(2\), got 3",
        ),
    ],
)
def test_an_extension_out_of_range_is_refused_when_built(build: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        build()


def test_limits_per_type_are_a_read_only_copy() -> None:
    limits = {"render": 2}
    registration = WorkerRegistration("w", ("render",), 4, max_concurrency_by_type=limits)
    limits["render"] = 4
    assert registration.max_concurrency_by_type == {"render": 2}
    with pytest.raises(TypeError):
        registration.max_concurrency_by_type["render"] = 1  # type: ignore[index]
