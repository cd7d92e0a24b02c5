"""Whose fault a protocol error is, and text that is not text.

``decode`` and every check of a received message raise ``RemoteProtocolError``; every
check of a message we are about to send raises ``LocalProtocolError``; the two are
siblings, so one ``except`` never takes our bug for the peer's fault. Strings holding
a lone surrogate (no character, so no UTF-8 text) are refused by ``decode``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import as_frame, json_values, mutated_objects, tagged_objects

import trio_pipe
from trio_pipe.protocol import (
    Heartbeat,
    HeartbeatPayload,
    Kill,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Shutdown,
    Task,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegister,
    WorkerRegistration,
    WorkerSession,
    decode,
    encode,
)

U = "6f1c2a4e-9b3d-4c8a-a1e2-3b4c5d6e7f80"
fuzz = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def remote_reason(frame: str | bytes) -> str | None:
    """The reason *frame* is refused, ``None`` if it is accepted; any exception but a
    RemoteProtocolError propagates."""
    try:
        decode(frame)
    except RemoteProtocolError as exc:
        assert not isinstance(exc, LocalProtocolError)
        return exc.reason
    return None


# ---------------------------------------------------------------------------
# The classes


def test_local_and_remote_protocol_errors_are_siblings_under_protocol_error() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)


def test_protocol_errors_are_trio_pipe_errors() -> None:
    assert issubclass(ProtocolError, trio_pipe.TrioPipeError)


@pytest.mark.parametrize("cls", [LocalProtocolError, RemoteProtocolError])
def test_a_protocol_error_carries_its_reason(cls: type[ProtocolError]) -> None:
    error = cls("TaskResult for task 1 says Pending")
    assert error.reason == str(error) == "TaskResult for task 1 says Pending"


# ---------------------------------------------------------------------------
# decode: always the peer's fault


@fuzz
@given(
    st.one_of(
        st.binary(),
        st.text(),
        json_values(max_leaves=20).map(as_frame),
        tagged_objects().map(as_frame),
        mutated_objects().map(as_frame),
    )
)
def test_whatever_decode_refuses_is_a_remote_protocol_error(frame: str | bytes) -> None:
    remote_reason(frame)


def test_a_frame_over_the_size_limit_is_a_remote_protocol_error() -> None:
    assert remote_reason('{"type":"HeartbeatAck"}' + " " * 100) is None
    with pytest.raises(RemoteProtocolError, match="exceeds the limit of 10"):
        decode('{"type":"HeartbeatAck"}', max_size=10)


# ---------------------------------------------------------------------------
# A session: the peer's illegal message is Remote, our illegal send is Local


def spawned(max_concurrency: int = 1) -> WorkerSession:
    return WorkerSession(WorkerRegistration("w1", ("echo",), max_concurrency))


def completed(
    task_id: uuid.UUID, status: TaskStatus = TaskStatus.COMPLETED
) -> TaskResultMessage:
    return TaskResultMessage(TaskResult(task_id, status, worker_id="w1"))


def dispatched(session: WorkerSession) -> uuid.UUID:
    task = Task(uuid.uuid4(), "echo")
    session.send(TaskDispatch(task))
    return task.id


def result_for_a_task_never_dispatched(session: WorkerSession) -> None:
    session.receive(completed(uuid.uuid4()))


def pending_result(session: WorkerSession) -> None:
    session.receive(completed(dispatched(session), TaskStatus.PENDING))


def kill_from_the_worker(session: WorkerSession) -> None:
    session.receive(Kill(uuid.uuid4()))


def second_worker_register(session: WorkerSession) -> None:
    for _ in range(2):
        session.receive(WorkerRegister(WorkerRegistration("w1", ("echo",))))


def heartbeat_after_close(session: WorkerSession) -> None:
    session.close()
    session.receive(Heartbeat(HeartbeatPayload("w1")))


@pytest.mark.parametrize(
    "illegal",
    [
        result_for_a_task_never_dispatched,
        pending_result,
        kill_from_the_worker,
        second_worker_register,
        heartbeat_after_close,
    ],
)
def test_an_illegal_message_from_the_worker_is_a_remote_protocol_error(
    illegal: Callable[[WorkerSession], None],
) -> None:
    with pytest.raises(RemoteProtocolError):
        illegal(spawned())


def dispatch_beyond_capacity(session: WorkerSession) -> None:
    for _ in range(2):
        dispatched(session)


def kill_of_a_task_not_on_the_worker(session: WorkerSession) -> None:
    session.send(Kill(uuid.uuid4()))


def a_worker_message(session: WorkerSession) -> None:
    session.send(completed(uuid.uuid4()))


def dispatch_after_shutdown(session: WorkerSession) -> None:
    session.send(Shutdown())
    dispatched(session)


def worker_id_before_registration(_: WorkerSession) -> None:
    _ = WorkerSession().worker_id


@pytest.mark.parametrize(
    "illegal",
    [
        dispatch_beyond_capacity,
        kill_of_a_task_not_on_the_worker,
        a_worker_message,
        dispatch_after_shutdown,
        worker_id_before_registration,
    ],
)
def test_an_illegal_send_of_ours_is_a_local_protocol_error(
    illegal: Callable[[WorkerSession], None],
) -> None:
    with pytest.raises(LocalProtocolError):
        illegal(spawned())


def test_a_refused_message_leaves_the_session_as_it_was() -> None:
    session = spawned(max_concurrency=2)
    task_id = dispatched(session)
    with pytest.raises(RemoteProtocolError):
        session.receive(completed(task_id, TaskStatus.PENDING))
    with pytest.raises(LocalProtocolError):
        session.send(TaskDispatch(Task(task_id, "echo")))
    assert (session.load, session.in_flight()) == (1, [task_id])


# ---------------------------------------------------------------------------
# Lone surrogates


def result_frame(payload: str) -> str:
    """A canonical TaskResult (the codec's fast path) with *payload* spliced in."""
    return (
        '{"type":"TaskResult","result":{"taskId":"' + U + '","status":"Completed",'
        '"payload":' + payload + ',"error":null,"durationMs":0,"workerId":"w"}}'
    )


def heartbeat_frame(worker_id: str) -> str:
    """A Heartbeat (the reference path) with *worker_id* spliced in."""
    return '{"type":"Heartbeat","payload":{"workerId":' + worker_id + ',"activeTasks":0}}'


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param(
            result_frame(r'"\ud800"'),
            "invalid TaskResult: lone surrogate U+D800 in a string"
            " (not valid Unicode text) @ $.result.payload",
            id="escaped-high",
        ),
        pytest.param(
            result_frame(r'{"notes":["ok","x\udc00y"]}'),
            "lone surrogate U+DC00 in a string (not valid Unicode text)"
            " @ $.result.payload.notes[1]",
            id="escaped-low-nested",
        ),
        pytest.param(
            result_frame(r'"\ude00\ud83d"'),
            "lone surrogate U+DE00 in a string",
            id="escaped-pair-reversed",
        ),
        pytest.param(
            result_frame(r'{"two words":"\ud83d"}'),
            "@ $.result.payload['two words']",
            id="path-of-an-odd-member-name",
        ),
        pytest.param(
            result_frame(r'{"\ud800":1}'),
            "lone surrogate U+D800 in a member name (not valid Unicode text)"
            r" @ $.result.payload['\ud800']",
            id="member-name",
        ),
        pytest.param(
            heartbeat_frame(r'"w\udfff"'),
            "invalid Heartbeat: lone surrogate U+DFFF in a string"
            " (not valid Unicode text) @ $.payload.workerId",
            id="reference-path",
        ),
        pytest.param(
            heartbeat_frame('"w\ud800"'),
            "lone surrogate U+D800 in a string (not valid Unicode text)"
            " @ $.payload.workerId",
            id="raw-in-str",
        ),
        pytest.param(
            heartbeat_frame('"w\ud83d\ude00"'),
            "lone surrogate U+D83D in a string",
            id="raw-pair-in-str",
        ),
        pytest.param(
            heartbeat_frame('"w\ud800"').encode("utf-8", "surrogatepass"),
            "lone surrogate U+D800 in a string (not valid Unicode text)"
            " @ $.payload.workerId",
            id="encoded-in-bytes",
        ),
    ],
)
def test_a_lone_surrogate_in_a_string_is_refused_with_its_path(
    frame: str | bytes, reason: str
) -> None:
    refused = remote_reason(frame)
    assert refused is not None and reason in refused
    refused.encode("utf-8")  # the reason itself is text, fit for a close frame


@pytest.mark.parametrize(
    "frame",
    [result_frame(r'"\ud83d\ude00 \u00e9"'), heartbeat_frame(r'"w\ud83d\ude00"')],
    ids=["fast-path", "reference-path"],
)
def test_an_escaped_surrogate_pair_is_one_character(frame: str) -> None:
    message = decode(frame)
    assert "\U0001f600" in repr(message)
    encode(message).encode("utf-8")


# Text with any code point, surrogates (paired or not) included.
any_text = st.lists(
    st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=8
).map("".join)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@fuzz
@given(any_text, st.sampled_from(["escaped", "raw", "bytes"]), st.booleans())
def test_decode_accepts_a_string_exactly_when_it_is_text(
    text: str, form: str, fast_path: bool
) -> None:
    escaped = json.dumps(text)  # \uXXXX escapes: a high-low pair makes one character
    if form == "escaped":
        meant, spliced = json.loads(escaped), escaped
    else:
        meant, spliced = text, json.dumps(text, ensure_ascii=False)
    frame: str | bytes = result_frame(spliced) if fast_path else heartbeat_frame(spliced)
    if form == "bytes":
        frame = frame.encode("utf-8", "surrogatepass")
    try:
        message = decode(frame)
    except RemoteProtocolError as exc:
        assert _has_surrogate(meant), exc.reason
        assert "lone surrogate" in exc.reason
        return
    assert not _has_surrogate(meant)
    if isinstance(message, TaskResultMessage):
        assert message.result.payload == meant
    else:
        assert isinstance(message, Heartbeat)
        assert message.payload.worker_id == meant
    encode(message).encode("utf-8")


@pytest.mark.parametrize("text", ["\ud800", "ok \udfff", "\udc00\ud800"])
def test_encode_refuses_a_lone_surrogate_rather_than_write_an_unsendable_frame(
    text: str,
) -> None:
    result = TaskResult(uuid.uuid4(), TaskStatus.COMPLETED, payload={"notes": [text]})
    with pytest.raises(ValueError, match=r"lone surrogate U\+D[89A-F][0-9A-F]{2}"):
        encode(TaskResultMessage(result))
