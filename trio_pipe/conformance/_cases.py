"""The cases of the conformance kit, in the order they run (see docs/conformance.md).

Each case is an async function of the :class:`Harness` that returns when the worker
did what the contract says and raises :class:`CaseFailed` saying what went wrong.
"""

from __future__ import annotations

import itertools
import json
import secrets
import signal
import statistics
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import attrs
import trio

from ..protocol import (
    Backpressure,
    Heartbeat,
    Kill,
    Shutdown,
    Task,
    TaskResult,
    TaskStatus,
    WorkerRegister,
)
from ._harness import HEARTBEAT_MS, MAX_CONCURRENCY, CaseFailed, Harness, Received

__all__ = ["CASES", "Case"]

Mode = Literal["websocket", "stdio"]
BOTH: tuple[Mode, ...] = ("websocket", "stdio")
WEBSOCKET_ONLY: tuple[Mode, ...] = ("websocket",)

TASK_TYPES = frozenset({"echo", "sleep", "fail"})


@attrs.frozen
class Case:
    name: str
    modes: tuple[Mode, ...]
    run: Callable[[Harness], Awaitable[None]]
    skip_reason: str = ""
    launches: bool = False  # starts its own worker process: runs if the last one exited


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise CaseFailed(message)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _code(result: TaskResult) -> str | None:
    return result.error.code if result.error else None


def _outcome(result: TaskResult) -> str:
    error = f" {result.error.code}: {result.error.message}" if result.error else ""
    return f"{result.status.value}{error}"


async def _completed(
    harness: Harness, task: Task, *, since: int, within: float
) -> Received:
    entry = await harness.result(task, since=since, within=within)
    result = entry.result_of(task)
    assert result is not None
    _check(
        result.status is TaskStatus.COMPLETED,
        f"{task.task_type!r} task: expected Completed, got {_outcome(result)}",
    )
    return entry


async def _echo_round_trip(harness: Harness, payload: Any = "still there?") -> None:
    since = harness.mark()
    task = await harness.dispatch("echo", payload)
    entry = await _completed(harness, task, since=since, within=5)
    result = entry.result_of(task)
    assert result is not None
    _check(
        result.payload == payload,
        f"echo returned {_show(result.payload)}, expected {_show(payload)}",
    )


async def _idle_heartbeat(harness: Harness, since: int, after: str) -> None:
    """The first heartbeat from *since* on shows no active task."""
    heartbeat = await harness.next_heartbeat(since=since)
    active = heartbeat.payload.active_tasks
    _check(active == 0, f"heartbeat after {after} shows activeTasks {active}, expected 0")


# -- the cases -----------------------------------------------------------------------------


async def registration(harness: Harness) -> None:
    entry = await harness.expect(
        lambda entry: entry.message is not None,
        since=0,
        within=10,
        what="first message (WorkerRegister)",
    )
    message = entry.message
    _check(
        isinstance(message, WorkerRegister),
        f"the first message is a {type(message).__name__}, expected WorkerRegister",
    )
    assert isinstance(message, WorkerRegister)
    registration = message.registration
    _check(
        registration.worker_id == harness.worker_id,
        f"workerId {registration.worker_id!r}, expected {harness.worker_id!r} "
        "(TRIO_PIPE_WORKER_ID)",
    )
    supported = set(registration.supported_tasks)
    _check(
        supported == TASK_TYPES,
        f"supportedTasks {sorted(supported)}, expected {sorted(TASK_TYPES)}",
    )
    _check(
        registration.max_concurrency == MAX_CONCURRENCY,
        f"maxConcurrency {registration.max_concurrency}, expected {MAX_CONCURRENCY} "
        "(TRIO_PIPE_MAX_CONCURRENCY)",
    )
    _check(bool(registration.language.strip()), "language is empty")


async def heartbeat(harness: Harness) -> None:
    since = harness.mark()

    def heartbeats() -> list[Received]:
        return [e for e in harness.received[since:] if isinstance(e.message, Heartbeat)]

    try:
        await harness.expect(
            lambda _entry: len(heartbeats()) >= 4, since=since, within=3, what="heartbeats"
        )
    except CaseFailed:
        count = len(heartbeats())
        raise CaseFailed(f"{count} heartbeats in 3 s, expected at least 4") from None
    beats = heartbeats()
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(beats)]
    median_ms = statistics.median(gaps) * 1000
    _check(
        HEARTBEAT_MS / 2 <= median_ms <= HEARTBEAT_MS * 2,
        f"heartbeats {median_ms:.0f} ms apart (median), expected {HEARTBEAT_MS} ms "
        "(TRIO_PIPE_HEARTBEAT_MS)",
    )
    for entry in beats:
        assert isinstance(entry.message, Heartbeat)
        payload = entry.message.payload
        _check(
            payload.worker_id == harness.worker_id,
            f"heartbeat workerId {payload.worker_id!r}, expected {harness.worker_id!r}",
        )
        _check(
            payload.capacity == MAX_CONCURRENCY,
            f"heartbeat capacity {payload.capacity}, expected {MAX_CONCURRENCY}",
        )
        _check(
            payload.active_tasks == 0,
            f"heartbeat activeTasks {payload.active_tasks} while idle, expected 0",
        )


ECHO_PAYLOADS: tuple[Any, ...] = (
    {"nested": {"list": [1, 2.5, -3, True, None], "text": "a"}, "empty": {}},
    "grüße, 世界 🎉",
    12345678,
    None,
    [1, "two", {"three": 3}],
    "x" * (256 * 1024),
)


async def echo(harness: Harness) -> None:
    since = harness.mark()
    for start in range(0, len(ECHO_PAYLOADS), MAX_CONCURRENCY):  # as many as it takes
        batch = ECHO_PAYLOADS[start : start + MAX_CONCURRENCY]
        tasks = [await harness.dispatch("echo", payload) for payload in batch]
        for task in tasks:
            entry = await _completed(harness, task, since=since, within=5)
            _check_echoed(harness, task, entry)


def _check_echoed(harness: Harness, task: Task, entry: Received) -> None:
    result = entry.result_of(task)
    assert result is not None
    _check(
        result.payload == task.payload,
        f"echo of {_show(task.payload)} returned {_show(result.payload)}",
    )
    _check(result.error is None, f"a Completed result with error {result.error}")
    _check(
        result.worker_id == harness.worker_id,
        f"result workerId {result.worker_id!r}, expected {harness.worker_id!r}",
    )


def _lenient_dispatches() -> list[tuple[str, dict[str, Any]]]:
    """Dispatch frames the protocol's liberal-input rule makes valid."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = {"createdAt": now, "timeoutMs": 30000, "priority": "high", "retryCount": 0}
    shapes: list[tuple[str, dict[str, Any]]] = [
        (
            "lower-case priority",
            {"metadata": metadata | {"maxRetries": 3, "traceId": None}},
        ),
        ("partial metadata", {"metadata": {"timeoutMs": 30000}}),
        ("no metadata", {}),
        ("unknown fields", {"metadata": metadata, "futureField": {"x": 1}}),
    ]
    return [
        (
            name,
            {"id": str(uuid.uuid4()), "taskType": "echo", "payload": {"case": name}}
            | extra,
        )
        for name, extra in shapes
    ]


async def lenient_input(harness: Harness) -> None:
    since = harness.mark()
    for name, task in _lenient_dispatches():
        frame = {"type": "TaskDispatch", "task": task}
        if name == "unknown fields":
            frame["sentAt"] = "2030-01-01T00:00:00Z"
        await harness.send(json.dumps(frame))
        wanted = uuid.UUID(task["id"])

        def is_result(entry: Received, wanted: uuid.UUID = wanted) -> bool:
            return entry.result is not None and entry.result.task_id == wanted

        entry = await harness.expect(
            is_result, since=since, within=5, what=f"result of the task with {name}"
        )
        assert entry.result is not None
        _check(
            entry.result.status is TaskStatus.COMPLETED
            and entry.result.payload == task["payload"],
            f"a dispatch with {name}: {_outcome(entry.result)}, expected Completed",
        )


async def fail(harness: Harness) -> None:
    since = harness.mark()
    text = "conformance failure 4711"
    task = await harness.dispatch("fail", {"message": text})
    result = (await harness.result(task, since=since, within=5)).result_of(task)
    assert result is not None
    _check(
        result.status is TaskStatus.FAILED and result.error is not None,
        f"expected Failed with an error, got {_outcome(result)}",
    )
    assert result.error is not None
    _check(
        result.error.code == "HANDLER_ERROR",
        f"code {result.error.code!r}, expected HANDLER_ERROR",
    )
    _check(result.error.retryable, "a handler error must be retryable: true")
    _check(text in result.error.message, f"message {result.error.message!r} lacks {text!r}")
    _check(result.payload is None, f"a Failed result with payload {_show(result.payload)}")


async def unknown_task_type(harness: Harness) -> None:
    since = harness.mark()
    task = await harness.dispatch("no-such-type", {"x": 1})
    result = (await harness.result(task, since=since, within=5)).result_of(task)
    assert result is not None
    _check(
        result.status is TaskStatus.FAILED
        and result.error is not None
        and result.error.code == "UNKNOWN_TASK_TYPE",
        f"expected Failed UNKNOWN_TASK_TYPE, got {_outcome(result)}",
    )
    assert result.error is not None
    _check(not result.error.retryable, "UNKNOWN_TASK_TYPE must be retryable: false")


async def sleep(harness: Harness) -> None:
    since = harness.mark()
    task = await harness.dispatch("sleep", {"ms": 200})
    entry = await _completed(harness, task, since=since, within=5)
    result = entry.result_of(task)
    assert result is not None
    _check(result.payload == {"sleptMs": 200}, f"sleep returned {_show(result.payload)}")
    _check(result.duration_ms >= 150, f"durationMs {result.duration_ms} for a 200 ms sleep")


async def max_concurrency(harness: Harness) -> None:
    since = harness.mark()
    sent_at = trio.current_time()
    tasks = [await harness.dispatch("sleep", {"ms": 1000}) for _ in range(3)]
    results = [await harness.result(task, since=since, within=6) for task in tasks]
    early = 0
    for task, entry in zip(tasks, results, strict=True):
        result = entry.result_of(task)
        assert result is not None
        if result.status is TaskStatus.COMPLETED:
            early += entry.at < sent_at + 1.5
        else:
            _check(
                result.status is TaskStatus.FAILED
                and result.error is not None
                and result.error.code == "WORKER_SATURATED"
                and result.error.retryable,
                f"a sleep task beyond capacity: {_outcome(result)}, expected Completed "
                "or a retryable WORKER_SATURATED",
            )
    _check(
        early <= MAX_CONCURRENCY,
        f"{early} one-second sleeps completed within 1.5 s on a worker of capacity "
        f"{MAX_CONCURRENCY}: they ran at once",
    )
    for entry in harness.received[since:]:
        if isinstance(entry.message, Heartbeat):
            active = entry.message.payload.active_tasks
            _check(active <= MAX_CONCURRENCY, f"a heartbeat shows activeTasks {active}")


async def backpressure(harness: Harness) -> None:
    since = harness.mark()
    tasks = [await harness.dispatch("sleep", {"ms": 500}) for _ in range(MAX_CONCURRENCY)]

    def signal(throttle: bool) -> Callable[[Received], bool]:
        def wanted(entry: Received) -> bool:
            message = entry.message
            return (
                isinstance(message, Backpressure)
                and message.signal.should_throttle is throttle
            )

        return wanted

    throttled = await harness.expect(
        signal(True), since=since, within=2, what="Backpressure with shouldThrottle true"
    )
    first = await harness.expect(
        lambda entry: any(entry.result_of(task) for task in tasks),
        since=since,
        within=3,
        what="result of a sleep task",
    )
    _check(
        harness.received.index(throttled) < harness.received.index(first),
        "Backpressure shouldThrottle true came after the first result, expected before",
    )
    assert isinstance(throttled.message, Backpressure)
    load = throttled.message.signal.current_load
    _check(abs(load - 1.0) < 1e-9, f"currentLoad {load} when full, expected 1.0")
    cleared = await harness.expect(
        signal(False),
        since=harness.received.index(throttled) + 1,
        within=3,
        what="Backpressure with shouldThrottle false after a slot freed",
    )
    _check(
        cleared.at - first.at <= harness.seconds(1),
        f"shouldThrottle false came {cleared.at - first.at:.2f} s after the first result",
    )
    for task in tasks:
        await _completed(harness, task, since=since, within=3)


async def kill(harness: Harness) -> None:
    since = harness.mark()
    task = await harness.dispatch("sleep", {"ms": 30_000}, timeout_ms=60_000)
    await trio.sleep(0.3)
    await harness.send(Kill(task.id, "conformance kit: kill"))
    what = "result for the killed task (does the handler still run?)"
    entry = await harness.result(task, since=since, within=2, what=what)
    result = entry.result_of(task)
    assert result is not None
    _check(
        result.status is TaskStatus.CANCELLED and _code(result) == "KILLED",
        f"the killed task: {_outcome(result)}, expected Cancelled KILLED",
    )
    await _idle_heartbeat(harness, harness.received.index(entry), "Kill")
    await _echo_round_trip(harness)


async def timeout(harness: Harness) -> None:
    since = harness.mark()
    task = await harness.dispatch("sleep", {"ms": 30_000}, timeout_ms=400)
    what = "result for a task of timeoutMs 400"
    entry = await harness.result(task, since=since, within=3, what=what)
    result = entry.result_of(task)
    assert result is not None
    _check(
        result.status is TaskStatus.TIMED_OUT and _code(result) == "TIMEOUT",
        f"the task past its timeoutMs: {_outcome(result)}, expected TimedOut TIMEOUT",
    )
    await _idle_heartbeat(harness, harness.received.index(entry), "a timeout")


def _malformed_frames(stdio: bool) -> list[str]:
    frames = [
        "this is not JSON",
        "[1, 2, 3]",
        '{"no": "type"}',
        '{"type": "FromTheFuture", "x": 1}',
        '{"type": "TaskDispatch", "task": {"taskType": "echo", "payload": 1}}',
        json.dumps({"type": "Kill", "taskId": str(uuid.uuid4()), "reason": "never had it"}),
    ]
    return [*frames, ""] if stdio else frames


async def malformed_input(harness: Harness) -> None:
    since = harness.mark()
    for frame in _malformed_frames(harness.stdio):
        await harness.send(frame)
    await _echo_round_trip(harness)
    for entry in harness.received[since:]:
        _check(not entry.event.startswith("closed"), "the worker closed the connection")
    answered = sum(entry.result is not None for entry in harness.received[since:])
    _check(answered == 1, f"{answered - 1} results for malformed frames, expected none")


async def reconnect(harness: Harness) -> None:
    since = harness.mark()
    await harness.restart_listener(pause=0.5)
    entry = await harness.expect(
        lambda entry: isinstance(entry.message, WorkerRegister),
        since=since,
        within=10,
        what="WorkerRegister after the dispatcher restarted",
    )
    assert isinstance(entry.message, WorkerRegister)
    worker_id = entry.message.registration.worker_id
    _check(
        worker_id == harness.worker_id,
        f"registered again as {worker_id!r}, expected the same id {harness.worker_id!r}",
    )
    await _echo_round_trip(harness)


async def graceful_shutdown(harness: Harness) -> None:
    since = harness.mark()
    tasks = [await harness.dispatch("sleep", {"ms": 500}) for _ in range(MAX_CONCURRENCY)]
    await trio.sleep(0.1)
    await harness.send(Shutdown(graceful=True))
    for task in tasks:
        await _completed(harness, task, since=since, within=3)
    await harness.expect(
        lambda entry: entry.event.startswith("exited"),
        since=since,
        within=5,
        what="exit of the worker process after a graceful Shutdown",
    )
    _check(harness.exit_status == 0, f"the worker exited with status {harness.exit_status}")
    if not harness.stdio:  # its close frame may be read after the exit is seen
        closed = await harness.expect(
            lambda entry: entry.event.startswith("closed"),
            since=since,
            within=2,
            what="close of the connection after a graceful Shutdown",
            after_exit=True,
        )
        _check(
            closed.event == "closed 1000",
            f"the connection was {closed.event}, expected closed 1000 (normal closure)",
        )


async def _drained_worker(harness: Harness, tasks: list[Task], since: int) -> Received:
    """Send SIGTERM once the worker runs *tasks* (its heartbeat says so); return the
    draining ``Backpressure`` it must answer with."""
    await harness.expect(
        lambda entry: (
            isinstance(entry.message, Heartbeat)
            and entry.message.payload.active_tasks == len(tasks)
        ),
        since=since,
        within=5,
        what=f"heartbeat showing the {len(tasks)} tasks running",
    )
    harness.signal(signal.SIGTERM)
    entry = await harness.expect(
        lambda entry: (
            isinstance(entry.message, Backpressure) and entry.message.signal.draining
        ),
        since=since,
        within=2,
        what="Backpressure with draining true after SIGTERM",
    )
    assert isinstance(entry.message, Backpressure)
    _check(
        entry.message.signal.should_throttle,
        "the draining Backpressure has shouldThrottle false, expected true",
    )
    return entry


async def _closed_and_exited(harness: Harness, since: int) -> None:
    """The worker closed its connection (1000) or its stdout, and exited 0."""
    await harness.expect(
        lambda entry: entry.event.startswith("exited"),
        since=since,
        within=5,
        what="exit of the worker process after its drain",
    )
    _check(harness.exit_status == 0, f"the worker exited with status {harness.exit_status}")
    ending, what = (
        ("stdout ended", "end of its stdout")
        if harness.stdio
        else (
            "closed",
            "close of its connection",
        )
    )
    closed = await harness.expect(
        lambda entry: entry.event.startswith(ending),
        since=since,
        within=2,
        what=f"{what} after its drain",
        after_exit=True,
    )
    if not harness.stdio:
        _check(
            closed.event == "closed 1000",
            f"the connection was {closed.event}, expected closed 1000 (normal closure)",
        )


async def sigterm_drain(harness: Harness) -> None:
    # In-flight tasks finish within the drain timeout.
    await harness.relaunch({"TRIO_PIPE_DRAIN_TIMEOUT_MS": "10000"})
    since = harness.mark()
    tasks = [await harness.dispatch("sleep", {"ms": 1500}) for _ in range(MAX_CONCURRENCY)]
    drained = await _drained_worker(harness, tasks, since)
    for task in tasks:
        entry = await _completed(harness, task, since=since, within=5)
        _check(
            harness.received.index(drained) < harness.received.index(entry),
            "a task's result came before the draining Backpressure",
        )
    await _closed_and_exited(harness, since)
    # What outlives the drain timeout is cancelled, to be retried elsewhere.
    await harness.relaunch({"TRIO_PIPE_DRAIN_TIMEOUT_MS": "300"})
    since = harness.mark()
    task = await harness.dispatch("sleep", {"ms": 30_000}, timeout_ms=60_000)
    await _drained_worker(harness, [task], since)
    entry = await harness.result(
        task, since=since, within=3, what="result of a task past the drain timeout"
    )
    result = entry.result_of(task)
    assert result is not None
    _check(
        result.status is TaskStatus.CANCELLED
        and _code(result) == "WORKER_SHUTTING_DOWN"
        and result.error is not None
        and result.error.retryable,
        f"a task past the drain timeout: {_outcome(result)}, expected Cancelled "
        "WORKER_SHUTTING_DOWN, retryable",
    )
    await _closed_and_exited(harness, since)


def _is_handshake(entry: Received) -> bool:
    """A handshake of the worker's: accepted, or refused."""
    return entry.event == "connected" or entry.event.startswith("refused")


def _handshakes(harness: Harness, since: int) -> int:
    return sum(map(_is_handshake, harness.received[since:]))


async def auth(harness: Harness) -> None:
    # A worker given a token sends it.
    harness.expected_token = secrets.token_urlsafe(24)
    try:
        since = await harness.relaunch({"TRIO_PIPE_TOKEN": harness.expected_token})
        handshake = await harness.expect(
            _is_handshake,
            since=since,
            within=10,
            what="connection from the worker",
        )
        _check(
            handshake.event == "connected",
            f"the handshake was {handshake.event} (TRIO_PIPE_TOKEN must be sent as "
            "'Authorization: Bearer <token>')",
        )
        await _echo_round_trip(harness)
        # A worker whose token is refused says so and stops; it does not retry.
        await harness.relaunch({"TRIO_PIPE_TOKEN": secrets.token_urlsafe(24)})
        since = harness.mark()
        try:
            await harness.expect(
                lambda entry: entry.event.startswith("exited"),
                since=since,
                within=10,
                what="exit of the worker after its handshake was refused with HTTP 401",
                after_exit=True,
            )
        except CaseFailed as exc:
            attempts = _handshakes(harness, since)
            raise CaseFailed(f"{exc} (it opened {attempts} connections)") from None
    finally:
        harness.expected_token = None
    attempts = _handshakes(harness, since)
    _check(
        attempts <= 2,
        f"the worker opened {attempts} connections with a refused token, expected at "
        "most 2: retrying the same credential cannot succeed",
    )
    _check(
        harness.exit_status not in (0, None),
        f"the worker exited with status {harness.exit_status} after HTTP 401, "
        "expected non-zero",
    )
    _check(
        any("401" in line for line in harness.output),
        "the worker's output (stdout and stderr) does not mention 401: report the "
        "refused handshake clearly",
    )


CASES: tuple[Case, ...] = (
    Case(
        "registration",
        WEBSOCKET_ONLY,
        registration,
        "the dispatcher registers a spawned process",
    ),
    Case("heartbeat", BOTH, heartbeat),
    Case("echo", BOTH, echo),
    Case("lenient-input", BOTH, lenient_input),
    Case("fail", BOTH, fail),
    Case("unknown-task-type", BOTH, unknown_task_type),
    Case("sleep", BOTH, sleep),
    Case("max-concurrency", BOTH, max_concurrency),
    Case("backpressure", BOTH, backpressure),
    Case("kill", BOTH, kill),
    Case("timeout", BOTH, timeout),
    Case("malformed-input", BOTH, malformed_input),
    Case(
        "reconnect", WEBSOCKET_ONLY, reconnect, "a spawned process has nothing to reconnect"
    ),
    Case("graceful-shutdown", BOTH, graceful_shutdown),
    Case("sigterm-drain", BOTH, sigterm_drain, launches=True),
    Case(
        "auth",
        WEBSOCKET_ONLY,
        auth,
        "a spawned process has no handshake, and takes no token",
        launches=True,
    ),
)
