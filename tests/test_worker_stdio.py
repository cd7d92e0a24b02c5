"""``trio-pipe worker --stdio``: a worker process speaking newline-delimited JSON on its
stdin and stdout, as a dispatcher that spawned it would drive it."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from helpers import ROOT

from trio_pipe import ErrorCode
from trio_pipe.cli import main
from trio_pipe.protocol import (
    Backpressure,
    Heartbeat,
    Kill,
    Message,
    NotAMessage,
    RemoteProtocolError,
    Shutdown,
    Task,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    decode,
    encode,
)
from trio_pipe.transports import InputClosed, LineChannel
from trio_pipe.worker._core import _decode

WAIT = 15  # seconds: generous, real time (a subprocess starts Python and imports trio)
MAX_CONCURRENCY = 4


class StdioWorker:
    """A ``trio-pipe worker --stdio`` subprocess, driven through its pipes.

    Every line it writes to stdout must decode as a protocol message: :meth:`receive`
    fails the test otherwise.
    """

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = bytearray()
        self.received: list[Message] = []

    async def send(self, *items: Message | str) -> None:
        """Write each message (or raw line) followed by a newline."""
        text = "".join((i if isinstance(i, str) else encode(i)) + "\n" for i in items)
        await self._stdin.send_all(text.encode())

    async def dispatch(self, task_type: str, payload: Any, **options: Any) -> Task:
        task = Task.new(task_type, payload, **options)
        await self.send(TaskDispatch(task))
        return task

    async def receive(self) -> Message | None:
        """The next message on stdout, or None at end of file."""
        while (end := self._buffer.find(b"\n")) < 0:
            chunk = await self._stdout.receive_some()
            if not chunk:
                assert not self._buffer, f"unterminated stdout line {bytes(self._buffer)!r}"
                return None
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        message = decode(line)  # raises ProtocolError for anything but a message
        self.received.append(message)
        return message

    async def result(self) -> TaskResult:
        """The next TaskResult (skipping Backpressure and Heartbeat)."""
        while True:
            message = await self.receive()
            assert message is not None, "stdout closed before a TaskResult"
            if isinstance(message, TaskResultMessage):
                return message.result
            assert isinstance(message, Backpressure | Heartbeat), message

    async def results(self, count: int) -> dict[uuid.UUID, TaskResult]:
        found: dict[uuid.UUID, TaskResult] = {}
        while len(found) < count:
            result = await self.result()
            assert result.task_id not in found, f"two results for {result.task_id}"
            found[result.task_id] = result
        return found

    async def close_stdin(self) -> None:
        await self._stdin.aclose()

    async def exit_status(self) -> int:
        """Read stdout to its end (each line must be a message), then wait for exit."""
        while await self.receive() is not None:
            pass
        return await self.process.wait()

    def task_results(self) -> list[TaskResult]:
        return [m.result for m in self.received if isinstance(m, TaskResultMessage)]


async def start_worker(
    nursery: trio.Nursery,
    *extra: str,
    log_level: str = "WARNING",
    stderr: Any = None,
) -> StdioWorker:
    argv = [
        sys.executable, "-m", "trio_pipe", "--log-level", log_level,
        "worker", "--stdio",
        "--handlers", "tests.worker_handlers:HANDLERS",
        "--max-concurrency", str(MAX_CONCURRENCY),
        *extra,
    ]  # fmt: skip
    process: trio.Process = await nursery.start(
        partial(
            trio.run_process,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            check=False,
            cwd=ROOT,
        )
    )
    return StdioWorker(process)


# -- tasks ------------------------------------------------------------------------------


async def test_an_echo_task_completes_and_closing_stdin_ends_the_worker(
    nursery: trio.Nursery,
) -> None:
    worker = await start_worker(nursery, "--worker-id", "stdio-1")
    with trio.fail_after(WAIT):
        task = await worker.dispatch("echo", {"text": "héllo", "n": [1, 2]})
        result = await worker.result()
        assert result.task_id == task.id
        assert result.status is TaskStatus.COMPLETED
        assert result.payload == {"text": "héllo", "n": [1, 2]}
        assert result.error is None
        assert result.worker_id == "stdio-1"
        await worker.close_stdin()
        assert await worker.exit_status() == 0


async def test_a_raising_handler_fails_the_task_with_handler_error(
    nursery: trio.Nursery,
) -> None:
    worker = await start_worker(nursery)
    with trio.fail_after(WAIT):
        task = await worker.dispatch("fail", {"message": "boom"})
        result = await worker.result()
    assert result.task_id == task.id
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert result.error.code == ErrorCode.HANDLER_ERROR
    assert result.error.retryable
    assert "boom" in result.error.message


async def test_an_unknown_task_type_fails_with_unknown_task_type(
    nursery: trio.Nursery,
) -> None:
    worker = await start_worker(nursery)
    with trio.fail_after(WAIT):
        task = await worker.dispatch("no-such-type", None)
        result = await worker.result()
    assert result.task_id == task.id
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert result.error.code == ErrorCode.UNKNOWN_TASK_TYPE
    assert not result.error.retryable


async def test_a_task_past_its_timeout_ms_is_timed_out(nursery: trio.Nursery) -> None:
    worker = await start_worker(nursery)
    with trio.fail_after(WAIT):
        task = await worker.dispatch("sleep", {"seconds": 3600}, timeout_ms=200)
        result = await worker.result()
    assert result.task_id == task.id
    assert result.status is TaskStatus.TIMED_OUT
    assert result.error is not None
    assert result.error.code == ErrorCode.TIMEOUT
    assert result.duration_ms >= 200


async def test_kill_cancels_the_running_handler(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    marker = tmp_path / "killed"
    worker = await start_worker(nursery)
    with trio.fail_after(WAIT):
        task = await worker.dispatch("hang", {"marker": str(marker)})
        await worker.send(Kill(task.id, "enough"))
        result = await worker.result()
    assert result.task_id == task.id
    assert result.status is TaskStatus.CANCELLED
    assert result.error is not None
    assert result.error.code == ErrorCode.KILLED
    assert result.error.message == "enough"
    assert marker.read_text() == "cancelled"


async def test_max_concurrency_is_honoured_and_immediate_shutdown_cancels(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    worker = await start_worker(nursery)
    markers = [tmp_path / f"hang-{i}" for i in range(MAX_CONCURRENCY)]
    with trio.fail_after(WAIT):
        hanging = [await worker.dispatch("hang", {"marker": str(m)}) for m in markers]
        extra = await worker.dispatch("echo", "one too many")
        rejected = await worker.result()
        assert rejected.task_id == extra.id
        assert rejected.status is TaskStatus.FAILED
        assert rejected.error is not None
        assert rejected.error.code == ErrorCode.WORKER_SATURATED
        assert rejected.error.retryable

        # A killed task frees its slot: the next dispatch runs.
        await worker.send(Kill(hanging[0].id, "make room"))
        assert (await worker.result()).status is TaskStatus.CANCELLED
        again = await worker.dispatch("echo", "fits now")
        result = await worker.result()
        assert (result.task_id, result.status) == (again.id, TaskStatus.COMPLETED)

        await worker.send(Shutdown(graceful=False))
        cancelled = await worker.results(MAX_CONCURRENCY - 1)
        assert await worker.exit_status() == 0
    # The worker said it was full when its last slot was taken (the line may come
    # just before or just after the rejection), and free again after the Kill.
    signals = [m.signal for m in worker.received if isinstance(m, Backpressure)]
    assert [s.should_throttle for s in signals[:2]] == [True, False]
    assert set(cancelled) == {t.id for t in hanging[1:]}
    for result in cancelled.values():
        assert result.status is TaskStatus.CANCELLED
        assert result.error is not None
        assert result.error.code == ErrorCode.WORKER_SHUTTING_DOWN
    assert all(m.read_text() == "cancelled" for m in markers)


# -- input and output ---------------------------------------------------------------------


async def test_lines_that_are_not_messages_are_ignored(nursery: trio.Nursery) -> None:
    worker = await start_worker(nursery)
    with trio.fail_after(WAIT):
        await worker.send(
            "",
            "   ",
            "plain text, someone's log",
            "[1, 2, 3]",
            "42",
            '"a string"',
            '{"an": "object without a type"}',
            "{not json",
            "\x00\xff binary-ish",
        )
        task = await worker.dispatch("echo", "still here")
        result = await worker.result()
        assert (result.task_id, result.status) == (task.id, TaskStatus.COMPLETED)
        assert result.payload == "still here"
        await worker.close_stdin()
        assert await worker.exit_status() == 0
    assert worker.task_results() == [result]


async def test_a_line_over_16_mib_is_skipped(nursery: trio.Nursery) -> None:
    worker = await start_worker(nursery, log_level="ERROR")
    too_long = '{"type":"TaskDispatch","junk":"' + "x" * (16 * 1024 * 1024) + '"}'
    with trio.fail_after(WAIT):
        await worker.send(too_long)
        task = await worker.dispatch("echo", "after the long line")
        result = await worker.result()
    assert (result.task_id, result.status) == (task.id, TaskStatus.COMPLETED)


async def test_graceful_shutdown_drains_in_flight_tasks_then_exits_0(
    nursery: trio.Nursery,
) -> None:
    worker = await start_worker(nursery)
    with trio.fail_after(WAIT):
        sleeping = [await worker.dispatch("sleep", {"seconds": 0.3}) for _ in range(2)]
        await worker.send(Shutdown(graceful=True))
        late = await worker.dispatch("echo", "too late")
        results = await worker.results(3)
        assert await worker.exit_status() == 0
    assert results[late.id].status is TaskStatus.FAILED
    assert results[late.id].error is not None
    assert results[late.id].error.code == ErrorCode.WORKER_SHUTTING_DOWN
    for task in sleeping:
        assert results[task.id].status is TaskStatus.COMPLETED
        assert results[task.id].payload == "slept"


async def test_closing_stdin_after_graceful_shutdown_still_drains(
    nursery: trio.Nursery,
) -> None:
    worker = await start_worker(nursery)
    with trio.fail_after(WAIT):
        task = await worker.dispatch("sleep", {"seconds": 0.3})
        await worker.send(Shutdown(graceful=True))
        await worker.close_stdin()
        result = await worker.result()
        assert await worker.exit_status() == 0
    assert (result.task_id, result.status) == (task.id, TaskStatus.COMPLETED)


async def test_closing_stdin_cancels_in_flight_tasks_and_exits_0(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    marker = tmp_path / "hang"
    worker = await start_worker(nursery)
    with trio.fail_after(WAIT):
        await worker.dispatch("hang", {"marker": str(marker)})
        # Lines are handled in order: once this answers, the hang task is running.
        probe = await worker.dispatch("echo", "probe")
        assert (await worker.result()).task_id == probe.id
        await worker.close_stdin()
        assert await worker.exit_status() == 0
    assert marker.read_text() == "cancelled"
    assert [r.task_id for r in worker.task_results()] == [probe.id]  # no hang result


async def test_stdout_carries_only_protocol_lines(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Debug logging, a handler's traceback and a handler's print() all go to stderr;
    heartbeats are sent when asked for."""
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as log_file:
        worker = await start_worker(
            nursery, "--heartbeat-interval", "0.05", log_level="DEBUG", stderr=log_file
        )
        with trio.fail_after(WAIT):
            await worker.send("not a message")
            printed = await worker.dispatch("print", "printed by a handler")
            failed = await worker.dispatch("fail", {"message": "traceback please"})
            results = await worker.results(2)
            while sum(isinstance(m, Heartbeat) for m in worker.received) < 2:
                assert await worker.receive() is not None
            await worker.close_stdin()
            assert await worker.exit_status() == 0  # every stdout line was a message
    assert results[printed.id].status is TaskStatus.COMPLETED
    assert results[failed.id].status is TaskStatus.FAILED
    heartbeat = next(m for m in worker.received if isinstance(m, Heartbeat))
    assert heartbeat.payload.capacity == MAX_CONCURRENCY
    log = log_path.read_text()
    assert "printed by a handler" in log
    assert "traceback please" in log
    assert "DEBUG trio_pipe.worker: ignoring input that is not a message" in log


# -- the command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--stdio", "--url", "ws://127.0.0.1:1"], "not allowed with argument"),
        ([], "one of the arguments --url --stdio is required"),
        (["--stdio", "--tag", "gpu"], "--tag applies to --url workers only"),
        (["--stdio", "--no-reconnect"], "--no-reconnect applies to --url workers only"),
    ],
)
def test_worker_needs_exactly_one_of_url_and_stdio(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", *argv, "--handlers", "tests.worker_handlers:HANDLERS"])
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


# -- the line channel, in memory ---------------------------------------------------------


class _RecordingSendStream(trio.abc.SendStream):
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed += 1
        await trio.lowlevel.checkpoint()


def _channel(
    receiver: trio.abc.ReceiveStream, out: trio.abc.SendStream, max_line_bytes: int = 64
) -> LineChannel:
    return LineChannel(
        out, receiver, peer="test", name="test", max_frame_size=max_line_bytes
    )


async def _read_all(chunks: Sequence[bytes], max_line_bytes: int = 64) -> list[bytes]:
    """What a LineChannel returns for *chunks* arriving one by one, until
    InputClosed."""
    sender, receiver = trio.testing.memory_stream_one_way_pair()
    conn = _channel(receiver, _RecordingSendStream(), max_line_bytes)
    for chunk in chunks:
        await sender.send_all(chunk)
    await sender.aclose()
    lines = []
    with trio.fail_after(WAIT):
        while True:
            try:
                frame = await conn.receive()
            except InputClosed:
                return lines
            assert isinstance(frame, bytes)
            lines.append(frame)


async def test_lines_are_split_across_reads_and_a_last_unterminated_line_counts() -> None:
    one, two, three = (encode(Shutdown(graceful=g)).encode() for g in (True, False, True))
    chunks = [one[:5], one[5:] + b"\n" + two[:3], two[3:] + b"\r\n\n", three]
    assert await _read_all(chunks, max_line_bytes=100) == [one, two + b"\r", three]


async def test_an_over_long_line_is_dropped_up_to_its_newline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ok = b'{"type":"HeartbeatAck"}'
    long = b'{"type":"HeartbeatAck","x":"' + b"y" * 100 + b'"}'
    chunks = [long[:40], long[40:90], long[90:] + b"\n" + ok + b"\n", long + b"\n", long]
    with caplog.at_level(logging.WARNING, logger="trio_pipe.stdio"):
        assert await _read_all(chunks, max_line_bytes=len(ok)) == [ok]
    warnings = [r for r in caplog.records if "over the limit" in r.getMessage()]
    assert len(warnings) == 3


async def test_pending_frames_go_out_in_one_write() -> None:
    _, receiver = trio.testing.memory_stream_one_way_pair()
    out = _RecordingSendStream()
    conn = _channel(receiver, out)
    await conn.send_all(['{"type":"HeartbeatAck"}', '{"type":"Shutdown","graceful":true}'])
    await conn.send_all([])
    assert out.writes == [b'{"type":"HeartbeatAck"}\n{"type":"Shutdown","graceful":true}\n']


async def test_aclose_ends_the_peers_input_and_still_reads_its_output() -> None:
    sender, receiver = trio.testing.memory_stream_one_way_pair()
    out = _RecordingSendStream()
    conn = _channel(receiver, out)
    await conn.aclose()
    await conn.aclose()  # idempotent enough: closing a closed stream is a no-op
    assert out.closed == 2
    await sender.send_all(b'{"type":"HeartbeatAck"}\n')  # what it writes on its way out
    with trio.fail_after(WAIT):
        assert await conn.receive() == b'{"type":"HeartbeatAck"}'


async def test_non_messages_are_logged_at_debug_and_malformed_ones_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = await _read_all([b'hello\n[1]\n{"a":1}\n{"type":"Anything"}\n'])
    with caplog.at_level(logging.DEBUG, logger="trio_pipe.worker"):
        assert [_decode(line) for line in lines] == [None] * 4
    levels = [
        (r.levelno, "not a message" in r.getMessage())
        for r in caplog.records
        if r.name == "trio_pipe.worker"
    ]
    assert levels == [(logging.DEBUG, True)] * 3 + [(logging.WARNING, False)]


@pytest.mark.parametrize(
    ("line", "is_message"),
    [
        (b'{"type":"TaskDispatch"}', True),
        (b'  {"type": 1}  ', True),
        (b'{"type":"\\ud800"}', True),  # JSON, an object with a type: a bad message
        (b'{"type":NaN}', False),  # the protocol's JSON has no NaN, no 1e400
        (b'{"type":1e400}', False),
        (b'{"a":' + b"[" * 5000 + b"]" * 5000 + b',"type":0}', False),  # too deep
        (b'{"kind":"log"}', False),
        (b'{"type":"x"', False),
        (b"[1, 2]", False),
        (b'{"type":"\xff"}', False),  # not UTF-8
        (b"", False),
        (b"plain text", False),
    ],
)
def test_a_line_is_no_message_exactly_when_it_is_no_json_object_with_a_type(
    line: bytes, is_message: bool
) -> None:
    """On stdin, a line that is no message is skipped quietly; one meant as a message
    but malformed is a warning. ``decode`` tells them apart by its error's class."""
    try:
        decode(line)
    except NotAMessage:
        assert not is_message
    except RemoteProtocolError:
        assert is_message
    else:  # pragma: no cover - none of these is a valid message
        raise AssertionError(f"{line!r} decoded")
