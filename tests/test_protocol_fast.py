"""The codec's fast paths (orjson, hand-written structure for the canonical
``TaskDispatch`` and ``TaskResult``) agree with the reference path (cattrs and the
standard library's ``json``) on everything: same text out, same message or the same
``ProtocolError`` in."""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    as_frame,
    json_values,
    messages,
    mutated_objects,
    task_metadata,
    task_results,
    tasks,
)

from trio_pipe.protocol import (
    Message,
    Priority,
    ProtocolError,
    Task,
    TaskDispatch,
    TaskMetadata,
    TaskProgress,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    decode,
    encode,
    encode_completed,
)
from trio_pipe.protocol._codec import _decode_reference, _encode_reference, encode_dispatch
from trio_pipe.protocol._fast import _decode_fast, _encode_result_fast

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
fuzz = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class Colour(enum.Enum):
    RED = "red"


class Text(str):
    pass


# Payloads that orjson writes differently from the reference encoder, or not at all.
awkward_payloads = st.sampled_from(
    [
        1e-05, -3.5e-07, 1e-09, 9.999999999999999e-05, 1e-10, 1e-4, 1e16, 5e-324,
        math.nan, math.inf, -math.inf, 2**64, -(2**63) - 1, 10**30,
        Priority.HIGH, TaskStatus.COMPLETED, Colour.RED, uuid.UUID(int=7),
        datetime(2024, 1, 2, tzinfo=UTC), (1, 2), {1: "int key"}, {"a": {3}},
        Text("a str subclass"), OrderedDict(a=1), "lone \ud800 surrogate",
        {"deep": [[[[["x"]]]]]}, [None, {"null": None}],
    ]
)  # fmt: skip
payloads = json_values() | awkward_payloads | st.lists(awkward_payloads, max_size=3)


def outcome(function: Any, *args: Any, **kwargs: Any) -> Any:
    """What *function* returns, or the type of what it raises."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        return type(exc)


def decoded(decoder: Any, frame: str | bytes) -> Message | str:
    """The decoded message, or the reason it was rejected. A task without a creation
    time is created when decoded: that time is set to a fixed one to compare."""
    try:
        result: Message = decoder(frame)
    except ProtocolError as exc:
        return exc.reason
    if isinstance(result, TaskDispatch) and "createdAt" not in str(frame):
        metadata = attrs.evolve(result.task.metadata, created_at=EPOCH)
        return TaskDispatch(attrs.evolve(result.task, metadata=metadata))
    return result


# -- encode -----------------------------------------------------------------


@fuzz
@given(messages)
def test_encode_writes_the_reference_text(message: Message) -> None:
    assert encode(message) == _encode_reference(message)


@fuzz
@given(tasks, payloads)
def test_a_dispatch_with_any_payload_encodes_as_the_reference(
    task: Task, payload: Any
) -> None:
    message = TaskDispatch(attrs.evolve(task, payload=payload))
    assert outcome(encode, message) == outcome(_encode_reference, message)


@fuzz
@given(task_results, payloads)
def test_a_result_with_any_payload_encodes_as_the_reference(
    result: TaskResult, payload: Any
) -> None:
    message = TaskResultMessage(attrs.evolve(result, payload=payload))
    assert outcome(encode, message) == outcome(_encode_reference, message)


@fuzz
@given(task_results, payloads)
def test_encode_completed_is_the_reference_text_or_declines(
    result: TaskResult, payload: Any
) -> None:
    text = encode_completed(
        result.task_id, payload, duration_ms=result.duration_ms, worker_id=result.worker_id
    )
    if text is not None:  # None: the caller builds the message and encodes it
        completed = attrs.evolve(
            result,
            status=TaskStatus.COMPLETED,
            payload=payload,
            error=None,
            progress=None,
            extend_ms=None,
        )
        assert text == _encode_reference(TaskResultMessage(completed))


@fuzz
@given(tasks, st.integers(min_value=0, max_value=2**64), st.integers(0, 2**64))
def test_encode_dispatch_replaces_timeout_and_retry_count(
    task: Task, timeout_ms: int, retry_count: int
) -> None:
    metadata = attrs.evolve(task.metadata, timeout_ms=timeout_ms, retry_count=retry_count)
    expected = _encode_reference(TaskDispatch(attrs.evolve(task, metadata=metadata)))
    assert encode_dispatch(task, timeout_ms=timeout_ms, retry_count=retry_count) == expected


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2))),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_timestamps_are_written_as_the_reference_writes_them(created_at: datetime) -> None:
    metadata = object.__new__(TaskMetadata)  # bypass the converter to UTC
    for field in attrs.fields(TaskMetadata):
        object.__setattr__(metadata, field.name, getattr(TaskMetadata(), field.name))
    object.__setattr__(metadata, "created_at", created_at)
    task = Task(uuid.UUID(int=1), "t", None, metadata)
    assert encode(TaskDispatch(task)) == _encode_reference(TaskDispatch(task))


def test_fields_of_unexpected_types_take_the_reference_path() -> None:
    task = Task(uuid.UUID(int=1), Text("sub"), [1], TaskMetadata(trace_id=Text("t")))
    assert encode(TaskDispatch(task)) == _encode_reference(TaskDispatch(task))
    odd = Task("not-a-uuid", "t", metadata=TaskMetadata(max_retries=True))  # type: ignore[arg-type]
    assert outcome(encode, TaskDispatch(odd)) == outcome(
        _encode_reference, TaskDispatch(odd)
    )


# -- decode -----------------------------------------------------------------


@fuzz
@given(messages)
def test_decode_reads_canonical_frames_as_the_reference(message: Message) -> None:
    frame = encode(message)
    assert decode(frame) == _decode_reference(frame) == message
    assert decode(frame.encode()) == message


@fuzz
@given(st.one_of(mutated_objects(), st.builds(dict, st.just({"type": "TaskResult"}))))
def test_decode_agrees_with_the_reference_on_mutated_frames(document: Any) -> None:
    frame = as_frame(document)
    assert decoded(decode, frame) == decoded(_decode_reference, frame)


@pytest.mark.parametrize(
    "number",
    [
        "18446744073709551615", "18446744073709551616", "-9223372036854775809",
        "123456789012345678901234567890", "1e400", "-1e400", "NaN", "Infinity",
        "1E5", "-0", "-0.0", "1.5e300", "0.1e-400", "9007199254740993",
    ],
)  # fmt: skip
def test_numbers_are_read_as_the_reference_reads_them(number: str) -> None:
    template = (
        '{"type":"TaskResult","result":{"taskId":"6f1c2a4e-9b3d-4c8a-a1e2-3b4c5d6e7f80",'
        '"status":"Completed","payload":[%s],"error":null,"durationMs":%s,"workerId":"w"}}'
    )
    for frame in (template % (number, 0), template % (0, number)):
        assert decoded(decode, frame) == decoded(_decode_reference, frame)


@pytest.mark.parametrize(
    "frame",
    [
        b'\xef\xbb\xbf{"type":"HeartbeatAck"}',
        '{"type":"TaskResult","result":{"taskId":"6f1c2a4e-9b3d-4c8a-a1e2-3b4c5d6e7f80",'
        '"status":"Completed","payload":"\\ud800","error":null,"durationMs":0,"workerId":"w"}}',
        "[" * 5000 + "]" * 5000,
        '{"type":["TaskResult"]}',
        '{"type":"TaskResult","result":{"taskId":"6F1C2A4E-9B3D-4C8A-A1E2-3B4C5D6E7F80",'
        '"status":"completed","error":{"code":"X","message":"m"}}}',
        '{"type":"TaskDispatch","task":{"id":"6f1c2a4e-9b3d-4c8a-a1e2-3b4c5d6e7f80",'
        '"taskType":"t","payload":null,"metadata":{"createdAt":"0001-01-01T00:00:00+01:00",'
        '"timeoutMs":0,"priority":"Low","retryCount":0,"maxRetries":0,"traceId":null}}}',
    ],
)
def test_odd_frames_are_read_as_the_reference_reads_them(frame: str | bytes) -> None:
    assert decoded(decode, frame) == decoded(_decode_reference, frame)


@fuzz
@given(task_metadata, st.floats(allow_nan=False, allow_infinity=False))
def test_floats_are_read_as_the_reference_reads_them(
    metadata: TaskMetadata, value: float
) -> None:
    frame = encode(TaskDispatch(Task(uuid.UUID(int=3), "t", [value], metadata)))
    assert decode(frame) == _decode_reference(frame)
    assert json.loads(frame)["task"]["payload"] == [value]


def test_encode_completed_takes_the_common_case_and_declines_the_rest() -> None:
    task_id = uuid.UUID(int=1)
    text = encode_completed(task_id, {"n": [1, "a"]}, duration_ms=3, worker_id="w1")
    assert text == (
        '{"type":"TaskResult","result":{"taskId":"00000000-0000-0000-0000-000000000001",'
        '"status":"Completed","payload":{"n":[1,"a"]},"error":null,"durationMs":3,'
        '"workerId":"w1"}}'
    )
    assert encode_completed(task_id, "\ud800", duration_ms=3, worker_id="w1") is None


# -- the extensions (progress, extendMs, draining) ---------------------------------

_TASK_ID = "6f1c2a4e-9b3d-4c8a-a1e2-3b4c5d6e7f80"
_V01_RESULT = (
    f'{{"type":"TaskResult","result":{{"taskId":"{_TASK_ID}","status":"Running",'
    '"payload":null,"error":null,"durationMs":5,"workerId":"w"}}'
)
_V01_BACKPRESSURE = (
    '{"type":"Backpressure","signal":{"workerId":"w","currentLoad":1.0,'
    '"shouldThrottle":true}}'
)


@pytest.mark.parametrize("frame", [_V01_RESULT, _V01_BACKPRESSURE])
def test_messages_of_rust_pipe_v0_1_shape_stay_on_the_fast_path(frame: str) -> None:
    message = _decode_fast(json.loads(frame))
    assert message is not None
    assert encode(message) == frame


@pytest.mark.parametrize(
    ("extension", "expected"),
    [
        (
            ',"progress":{"fraction":0.5,"message":"half"}',
            {"progress": TaskProgress(0.5, "half")},
        ),
        (',"extendMs":2000', {"extend_ms": 2000}),
        (
            ',"progress":{"fraction":1},"extendMs":1',
            {"progress": TaskProgress(1.0), "extend_ms": 1},
        ),
    ],
)
def test_a_progress_report_goes_the_reference_way_and_loses_nothing(
    extension: str, expected: dict[str, Any]
) -> None:
    frame = _V01_RESULT[:-2] + extension + "}}"
    assert _decode_fast(json.loads(frame)) is None
    message = decode(frame)
    assert isinstance(message, TaskResultMessage)
    assert attrs.asdict(message.result, recurse=False) | expected == attrs.asdict(
        message.result, recurse=False
    )
    assert _encode_result_fast(message.result) is None
    assert encode(message) == _encode_reference(message)


@pytest.mark.parametrize("draining", ["true", "false", '"yes"', "null"])
def test_draining_is_read_as_the_reference_reads_it(draining: str) -> None:
    frame = _V01_BACKPRESSURE[:-2] + ',"draining":' + draining + "}}"
    assert decoded(decode, frame) == decoded(_decode_reference, frame)
