"""The worker's per-connection logic, independent of the transport.

:func:`serve_connection` serves one established, registered :class:`Connection`:

```
serve_connection                 connection nursery (closing deadline set on shutdown)
├── writer                       the only task that writes: takes everything in the
│                                outbox at once, adds Backpressure when it changed
└── io nursery                   cancelled once the work nursery has drained
    ├── reader                   decodes frames; dispatch, Kill, Shutdown
    ├── heartbeats               every heartbeat_interval
    ├── deadlines                one heap of handler deadlines (receipt + timeoutMs,
    │                            moved by extend_deadline): cancels a handler's scope
    │                            when its deadline passes
    ├── stop watcher             drains on a StopRequest (a signal), stops on a second
    ├── drain timer              once draining: stops what still runs at the timeout
    └── work nursery             one task per running handler, each in its own
                                 CancelScope (without a deadline of its own); a thread
                                 or process handler runs in the Runtime from there
```

Handlers and the reader only put encoded frames in the outbox, which never blocks:
the reader acts on every frame already received without a task switch, and the writer
wakes once per batch.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from .._deadlines import Deadlines
from .._errors import ErrorCode, RegistrationRefused
from ..protocol import (
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatPayload,
    Kill,
    Message,
    NotAMessage,
    RemoteProtocolError,
    Role,
    Session,
    SessionState,
    Shutdown,
    Task,
    TaskDispatch,
    TaskError,
    TaskProgress,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
    encode_completed,
)
from ..transports import ChannelClosed, FrameChannel, InputClosed, Outbox, write_batches
from ._handlers import HandlerFunc, HandlerKind, TaskFailure, _current
from ._processes import ProcessHandlerError
from ._runtime import Runtime
from ._stop import StopRequest

__all__ = ["Registered", "SessionEnd", "WorkerConfig", "register", "serve_connection"]

logger = logging.getLogger("trio_pipe.worker")

LANGUAGE = "Python"
_POLICY_VIOLATION = 1008  # the close code of a refused registration


@attrs.frozen
class WorkerConfig:
    """Validated settings shared by every connection of one worker."""

    worker_id: str
    max_concurrency: int
    heartbeat_interval: float | None
    """Seconds between heartbeats; ``None`` sends none (a spawned stdio worker)."""
    tags: tuple[str, ...]
    connect_timeout: float
    """Bounds each network step: registration, one write, and the closing flush."""
    drain_timeout: float = 30.0
    """Seconds a draining worker lets its tasks run before it stops them."""
    max_concurrency_by_type: Mapping[str, int] = attrs.field(factory=dict, hash=False)
    """Task type -> the most tasks of that type run at once (registered, enforced)."""


@attrs.frozen
class Registered:
    """A connection that :func:`register` has registered, for :func:`serve_connection`."""

    session: Session
    """The session rules, from the worker's side: past ``WorkerRegister``."""
    early: tuple[tuple[Message, float], ...] = ()
    """Messages the dispatcher sent before accepting the registration that the rules
    allow (it may send tasks once it has read ``WorkerRegister``), each with the time
    it was received: served first."""
    answered: bool = True
    """``False``: the dispatcher sent nothing within ``connect_timeout`` (as an idle
    rust-pipe 0.1 dispatcher does): the first heartbeat goes at once."""


@attrs.frozen
class SessionEnd:
    """How :func:`serve_connection` ended."""

    shutdown: bool
    """The dispatcher sent ``Shutdown``: do not reconnect."""
    reason: str


_RUN_TASK_NAME = f"{__name__}._Session._run_task"  # what Trio would compute, per task


def _duration_ms(elapsed: float) -> int:
    return max(0, round(elapsed * 1000)) if math.isfinite(elapsed) else 0


class _Running:
    """A task the worker runs, and the handler's context (:class:`TaskContext`)."""

    __slots__ = (
        "deadline",
        "done",
        "received_at",
        "scope",
        "session",
        "stop",
        "task",
        "timed_out",
    )

    def __init__(self, task: Task, received_at: float, session: _Session) -> None:
        self.task = task
        self.received_at = received_at
        self.deadline = received_at + task.metadata.timeout_ms / 1000
        self.scope = trio.CancelScope()
        self.session = session
        # Set when we cancel the scope ourselves (Kill, non-graceful Shutdown, drain).
        self.stop: TaskError | None = None
        self.timed_out = False  # the deadline passed while the handler ran
        self.done = False  # the handler returned: its heap entry is garbage

    # TaskContext: what progress() and extend_deadline() call, from the handler's
    # Trio task, its worker thread, or (through the pool) its process.

    def report_progress(self, report: TaskProgress) -> None:
        self._report(report, None)

    def extend(self, ms: int) -> None:
        self._report(None, ms)

    def _report(self, report: TaskProgress | None, extend_ms: int | None) -> None:
        if trio.lowlevel.in_trio_task():
            self.session._report(self, report, extend_ms)
        else:
            trio.from_thread.run_sync(self.session._report, self, report, extend_ms)


def _time_out(running: _Running) -> None:
    """Its deadline passed while the handler ran: stop it, to report ``TimedOut``."""
    if trio.current_time() < running.deadline:
        return  # extended since this deadline was watched
    running.timed_out = True
    running.scope.cancel()


def _decode(frame: str | bytes) -> Message | None:
    """The message in *frame*; ``None`` for a frame to skip: a line that is no message
    at all (logged at DEBUG: whatever else shares stdin), or a malformed message
    (logged at WARNING). A worker outlives a bad frame on any transport."""
    try:
        return decode(frame)
    except NotAMessage:
        logger.debug("ignoring input that is not a message: %.80r", frame)
    except RemoteProtocolError as exc:
        logger.warning("ignoring a malformed frame from the dispatcher: %s", exc)
    return None


async def register(
    conn: FrameChannel, config: WorkerConfig, supported_tasks: tuple[str, ...]
) -> Registered:
    """Send ``WorkerRegister`` and wait, at most ``config.connect_timeout`` seconds,
    for the dispatcher to accept it.

    ``WorkerRegistered`` accepts it; so does a ``TaskDispatch`` that comes first (a
    rust-pipe 0.1 dispatcher never answers: it dispatches at once), and so does
    silence until the timeout (an idle rust-pipe dispatcher sends nothing at all),
    since a dispatcher that refuses a registration closes the connection. Returns the
    connection's session, and the messages the session rules let the dispatcher send
    before its answer (tasks included), for :func:`serve_connection` to act on first.
    Malformed frames, and messages the rules do not allow now, are logged and ignored.
    Raises :class:`RegistrationRefused` if the dispatcher closes the connection with
    code 1008 (policy violation) instead of accepting it, and :class:`ChannelClosed`
    if the connection fails otherwise, or ``WorkerRegister`` cannot be written within
    the timeout. Cancellation leaves the connection unusable.
    """
    registration = WorkerRegistration(
        worker_id=config.worker_id,
        supported_tasks=supported_tasks,
        max_concurrency=config.max_concurrency,
        language=LANGUAGE,
        tags=config.tags,
        max_concurrency_by_type=config.max_concurrency_by_type,
    )
    session = Session(Role.WORKER)
    request = WorkerRegister(registration)
    session.send(request)
    early: list[tuple[Message, float]] = []
    deadline = trio.current_time() + config.connect_timeout
    with trio.move_on_at(deadline) as sending:
        await conn.send_all([encode(request)])
    if sending.cancelled_caught:
        raise ChannelClosed(
            f"could not send WorkerRegister within {config.connect_timeout:g} s"
        )
    with trio.move_on_at(deadline):
        while not session.registration_accepted:
            try:
                frame = await conn.receive()
            except ChannelClosed as exc:
                if exc.close_code == _POLICY_VIOLATION:
                    reason = exc.close_reason or "no reason given"
                    raise RegistrationRefused(reason) from exc
                raise
            received_at = trio.current_time()
            message = _decode(frame)
            if message is None:
                continue
            try:
                session.receive(message)
            except RemoteProtocolError as exc:
                logger.warning("ignoring a message from the dispatcher: %s", exc)
                continue
            if not isinstance(message, WorkerRegistered):
                early.append((message, received_at))
            elif message.worker_id != config.worker_id:
                logger.warning(
                    "dispatcher acknowledged worker id %r, we registered %r",
                    message.worker_id,
                    config.worker_id,
                )
        if not session.registration_answered:
            logger.debug(
                "a task came before WorkerRegistered (as from rust-pipe 0.1): "
                "the registration is accepted"
            )
        return Registered(session, tuple(early))
    logger.debug(
        "no answer to WorkerRegister within %g s (as from an idle rust-pipe 0.1 "
        "dispatcher): the registration is taken as accepted",
        config.connect_timeout,
    )
    return Registered(session, tuple(early), answered=False)


async def serve_connection(
    conn: FrameChannel,
    handlers: Mapping[str, HandlerFunc],
    config: WorkerConfig,
    *,
    runtime: Runtime,
    started_at: float,
    stop: StopRequest,
    registered: Registered | None = None,
) -> SessionEnd:
    """Serve tasks on one registered connection until shutdown, a drain, or
    disconnection.

    *registered* is what :func:`register` returned; without it, the connection is a
    spawned worker's, registered by the dispatcher itself. *runtime* runs thread and
    process handlers. *stop* drains the session (its first request) and stops its
    tasks at once (its second).

    Returns a :class:`SessionEnd`: ``shutdown=True`` after the dispatcher's
    ``Shutdown`` (graceful: in-flight handlers finished and their results were
    flushed; non-graceful: handlers were cancelled and reported ``Cancelled``, best
    effort) or a drain (``Backpressure`` with ``draining`` sent, in-flight handlers
    finished within ``config.drain_timeout``, the rest reported ``Cancelled``
    ``WORKER_SHUTTING_DOWN``, results flushed), ``shutdown=False`` when the
    connection was lost; in-flight handlers are then cancelled and their results
    dropped. Input ending (:class:`InputClosed`) after ``Shutdown`` or during a drain
    is not a loss: the drain goes on. Closing is bounded by ``config.connect_timeout``.
    Does not close *conn*.

    *started_at* (``trio.current_time()``) is where heartbeat uptime counts from.
    Cancellation cancels every handler and propagates. Errors in handlers become
    task results. A message the session rules do not allow the dispatcher to send now
    is logged and ignored, except a ``TaskDispatch`` after ``Shutdown``, which is
    answered ``Failed`` (``WORKER_SHUTTING_DOWN``, retryable) so that the dispatcher
    does not wait for it. Anything else raised here is a bug, a
    :class:`~trio_pipe.protocol.LocalProtocolError` included.
    """
    if registered is None:
        registered = Registered(Session(Role.WORKER, registered=True))
    session = _Session(conn, handlers, config, runtime, started_at, registered)
    return await session.run(stop)


class _Session:
    _work: trio.Nursery
    _io: trio.Nursery
    _conn_scope: trio.CancelScope

    def __init__(
        self,
        conn: FrameChannel,
        handlers: Mapping[str, HandlerFunc],
        config: WorkerConfig,
        runtime: Runtime,
        started_at: float,
        registered: Registered,
    ) -> None:
        self._conn = conn
        self._handlers = handlers
        self._config = config
        self._runtime = runtime
        self._started_at = started_at
        self._rules = registered.session
        self._early = registered.early
        self._beat_at_once = not registered.answered
        self._active: dict[uuid.UUID, _Running] = {}
        # Tasks running per task type, for the types with a limit only.
        self._active_by_type = dict.fromkeys(config.max_concurrency_by_type, 0)
        self._draining = False
        self._throttle_sent = False
        self._shutdown_requested = trio.Event()
        self._lost: str | None = None
        self._outbox = Outbox()
        # (deadline, sequence, running): entries of finished handlers stay until they
        # surface or the heap is compacted.
        # One deadline task instead of a deadline on every handler's scope (costlier
        # to enter and exit).
        self._deadlines = Deadlines[_Running](_time_out, live=lambda: len(self._active))

    async def run(self, stop: StopRequest) -> SessionEnd:
        async with trio.open_nursery() as conn_nursery:
            self._conn_scope = conn_nursery.cancel_scope
            conn_nursery.start_soon(self._writer)
            async with trio.open_nursery() as io:
                self._io = io
                async with trio.open_nursery() as work:
                    self._work = work
                    for message, received_at in self._early:
                        self._handle(message, received_at)
                    self._early = ()
                    io.start_soon(self._reader)
                    io.start_soon(self._heartbeats)
                    io.start_soon(self._deadlines.run)
                    io.start_soon(self._watch, stop)
                    await self._shutdown_requested.wait()
                # Every handler is done and has queued its result.
                self._begin_closing()
                io.cancel_scope.cancel()
            self._outbox.close()  # the writer flushes what is queued, then ends
        if self._lost is not None:
            return SessionEnd(shutdown=self._stopping, reason=self._lost)
        if self._conn_scope.cancelled_caught:
            logger.warning(
                "could not flush results within %g s of the end",
                self._config.connect_timeout,
            )
        if self._draining:
            return SessionEnd(shutdown=True, reason="drained")
        return SessionEnd(shutdown=True, reason="shut down by the dispatcher")

    @property
    def _stopping(self) -> bool:
        """The dispatcher has sent ``Shutdown``, or the worker is draining: no new task,
        and no reconnection after this connection."""
        return self._draining or self._rules.state is SessionState.CLOSING

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._conn_scope.cancel()

    def _begin_closing(self) -> None:
        deadline = trio.current_time() + self._config.connect_timeout
        self._conn_scope.deadline = min(self._conn_scope.deadline, deadline)

    # -- writing -------------------------------------------------------------

    async def _writer(self) -> None:
        timeout = self._config.connect_timeout
        try:
            if not await write_batches(self._conn, self._next_batch, timeout):
                self._lose(f"a write did not complete within {timeout:g} s")
        except ChannelClosed as exc:
            self._lose(str(exc))

    async def _next_batch(self) -> list[str]:
        """Everything queued, and Backpressure if the throttle state changed; ``[]``
        once the outbox is closed and drained."""
        while True:
            frames = await self._outbox.take()
            signal = self._backpressure_frame()
            if signal is not None:
                frames.append(signal)
            if frames or self._outbox.closed:
                return frames

    def _backpressure_frame(self) -> str | None:
        """The Backpressure frame to send if the throttle state differs from the last
        one sent (checked at write time, so a slot freed and refilled between two
        writes sends nothing); none once draining."""
        if self._draining:
            return None
        active = len(self._active)
        throttled = active >= self._config.max_concurrency
        if throttled == self._throttle_sent:
            return None
        self._throttle_sent = throttled
        signal = BackpressureSignal(
            worker_id=self._config.worker_id,
            current_load=active / self._config.max_concurrency,
            should_throttle=throttled,
        )
        message = Backpressure(signal)
        self._rules.send(message)
        return encode(message)

    async def _heartbeats(self) -> None:
        interval = self._config.heartbeat_interval
        if interval is None:
            return
        next_beat = trio.current_time() + (0 if self._beat_at_once else interval)
        while True:
            await trio.sleep_until(next_beat)
            now = trio.current_time()
            payload = HeartbeatPayload(
                worker_id=self._config.worker_id,
                active_tasks=len(self._active),
                capacity=self._config.max_concurrency,
                uptime_seconds=max(0, int(now - self._started_at)),
            )
            message = Heartbeat(payload)
            self._rules.send(message)
            self._outbox.put(encode(message))
            next_beat += interval
            if next_beat <= trio.current_time():  # fell behind: do not burst
                next_beat = trio.current_time() + interval

    # -- reading -------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            try:
                frame = await self._conn.receive()
            except InputClosed as exc:
                if self._stopping:
                    # The dispatcher closed its side after Shutdown: keep draining.
                    logger.debug("%s while stopping; finishing in-flight tasks", exc)
                else:
                    self._lose(str(exc))
                return
            except ChannelClosed as exc:
                self._lose(str(exc))
                return
            received_at = trio.current_time()
            message = _decode(frame)
            if message is None:
                continue
            try:
                self._rules.receive(message)
            except RemoteProtocolError as exc:
                self._refused(message, exc)
                continue
            self._handle(message, received_at)

    def _handle(self, message: Message, received_at: float) -> None:
        """Act on a message the session rules allowed."""
        if isinstance(message, TaskDispatch):
            self._on_dispatch(message.task, received_at)
        elif isinstance(message, Kill):
            self._on_kill(message)
        elif isinstance(message, Shutdown):
            self._on_shutdown(graceful=message.graceful)
        # HeartbeatAck and WorkerRegistered: nothing to do.

    def _refused(self, message: Message, exc: RemoteProtocolError) -> None:
        """A message the dispatcher may not send now: ignored, but a task is answered,
        so that the dispatcher does not wait for it."""
        if isinstance(message, TaskDispatch) and self._stopping:
            error = TaskError(
                ErrorCode.WORKER_SHUTTING_DOWN, "the worker is shutting down", True
            )
            self._reject(message.task, error)
            return
        logger.warning("ignoring a message from the dispatcher: %s", exc)

    def _on_dispatch(self, task: Task, received_at: float) -> None:
        if task.id in self._active:
            logger.warning("ignoring a second dispatch of running task %s", task.id)
            return
        handler = self._handlers.get(task.task_type)
        if handler is None:
            message = f"no handler for task type {task.task_type!r}"
            self._reject(task, TaskError(ErrorCode.UNKNOWN_TASK_TYPE, message, False))
            return
        if len(self._active) >= self._config.max_concurrency:
            message = f"the worker is running {len(self._active)} tasks, its maximum"
            self._reject(task, TaskError(ErrorCode.WORKER_SATURATED, message, True))
            return
        of_type = self._active_by_type.get(task.task_type)
        if of_type is not None:
            if of_type >= self._config.max_concurrency_by_type[task.task_type]:
                message = f"the worker is running {of_type} {task.task_type!r} tasks, "
                message += "its maximum for that type"
                self._reject(task, TaskError(ErrorCode.WORKER_SATURATED, message, True))
                return
            self._active_by_type[task.task_type] = of_type + 1
        running = _Running(task, received_at, self)
        self._active[task.id] = running
        self._deadlines.watch(running, running.deadline)
        self._work.start_soon(self._run_task, running, handler, name=_RUN_TASK_NAME)
        if len(self._active) >= self._config.max_concurrency:
            self._outbox.wake()  # the writer sends Backpressure if still full then

    def _on_kill(self, kill: Kill) -> None:
        running = self._active.get(kill.task_id)
        if running is None or running.stop is not None:
            logger.debug("ignoring Kill for task %s: not running", kill.task_id)
            return
        running.stop = TaskError(
            ErrorCode.KILLED, kill.reason or "killed by the dispatcher", False
        )
        running.scope.cancel()

    def _on_shutdown(self, *, graceful: bool) -> None:
        logger.info(
            "dispatcher requested %s shutdown; %d tasks in flight",
            "graceful" if graceful else "immediate",
            len(self._active),
        )
        if not graceful:
            self._stop_all("the worker was shut down (not gracefully)")
        self._shutdown_requested.set()

    def _stop_all(self, why: str) -> None:
        """Stop every running task now, each to be reported ``Cancelled``
        (``WORKER_SHUTTING_DOWN``, retryable), and bound the closing flush."""
        stop = TaskError(ErrorCode.WORKER_SHUTTING_DOWN, why, True)
        for running in self._active.values():
            if running.stop is None:
                running.stop = stop
                running.scope.cancel()
        self._begin_closing()

    # -- draining --------------------------------------------------------------

    async def _watch(self, stop: StopRequest) -> None:
        await stop.drain.wait()
        self._drain(stop)
        await stop.now.wait()
        logger.warning("asked again to stop: stopping %d tasks now", len(self._active))
        self._stop_all("the worker was stopped")

    def _drain(self, stop: StopRequest) -> None:
        """Take no new task (saying so to the dispatcher), let those running finish
        within the drain timeout, then close."""
        timeout = self._config.drain_timeout
        cause = stop.signal.name if stop.signal is not None else "asked to stop"
        logger.info(
            "%s: draining; %d tasks in flight, cancelled if still running in %g s",
            cause,
            len(self._active),
            timeout,
        )
        if self._rules.state is SessionState.ACTIVE:
            signal = BackpressureSignal(
                worker_id=self._config.worker_id,
                current_load=len(self._active) / self._config.max_concurrency,
                should_throttle=True,
                draining=True,
            )
            message = Backpressure(signal)
            self._rules.send(message)
            self._outbox.put(encode(message))
        self._draining = True
        self._io.start_soon(self._drain_timer, timeout)
        self._shutdown_requested.set()

    async def _drain_timer(self, seconds: float) -> None:
        await trio.sleep(seconds)
        if self._active:
            logger.warning(
                "drain timeout of %g s: stopping %d tasks", seconds, len(self._active)
            )
            self._stop_all(f"the worker's drain timeout of {seconds:g} s ran out")

    # -- running tasks ---------------------------------------------------------

    async def _run_task(self, running: _Running, handler: HandlerFunc) -> None:
        task = running.task
        _current.set(running)  # this Trio task's own context copy
        value: Any = None
        error: Exception | None = None
        if trio.current_time() >= running.deadline:  # as a scope entered too late
            running.timed_out = True
            running.scope.cancel()
        try:
            try:
                with running.scope:
                    if self._runtime.kinds[task.task_type] is HandlerKind.ASYNC:
                        value = await handler(task.payload)
                    else:
                        value = await self._runtime.run(handler, task.payload, running)
            except Exception as exc:
                error = exc
        finally:
            # Free the slot before the result is queued: when the dispatcher reads
            # the result, the slot is free. Also runs when cancelled from outside.
            running.done = True
            del self._active[task.id]
            if task.task_type in self._active_by_type:
                self._active_by_type[task.task_type] -= 1
        self._put_result(self._outcome(running, value, error))

    def _report(
        self, running: _Running, report: TaskProgress | None, extend_ms: int | None
    ) -> None:
        """Send a progress report (``Running``) for a task still running: its
        progress, or a deadline extension, which moves the worker's own deadline for
        it too (never nearer)."""
        if running.done or running.stop is not None or running.timed_out:
            return  # too late: it is ending
        now = trio.current_time()
        if extend_ms is not None:
            deadline = now + extend_ms / 1000
            if deadline > running.deadline:
                running.deadline = deadline
                self._deadlines.watch(running, deadline)
        result = TaskResult(
            task_id=running.task.id,
            status=TaskStatus.RUNNING,
            duration_ms=_duration_ms(now - running.received_at),
            worker_id=self._config.worker_id,
            progress=report,
            extend_ms=extend_ms,
        )
        self._put_result(encode(TaskResultMessage(result)))

    def _outcome(self, running: _Running, value: Any, error: Exception | None) -> str:
        task = running.task
        if running.stop is not None:
            return self._result_frame(running, TaskStatus.CANCELLED, error=running.stop)
        if running.timed_out:
            timeout = TaskError(
                ErrorCode.TIMEOUT,
                f"task exceeded its timeout of {task.metadata.timeout_ms} ms",
                True,
            )
            return self._result_frame(running, TaskStatus.TIMED_OUT, error=timeout)
        if error is not None:
            return self._failure_frame(running, error)
        try:
            return self._completed_frame(running, value)
        except Exception as exc:  # TypeError, ValueError, RecursionError, hooks' own
            logger.warning(
                "task %s (%s) returned a non-JSON result", task.id, task.task_type
            )
            failure = TaskError(
                ErrorCode.PARSE_ERROR, f"result payload is not JSON: {exc}", False
            )
            return self._result_frame(running, TaskStatus.FAILED, error=failure)

    def _failure_frame(self, running: _Running, error: Exception) -> str:
        task = running.task
        if isinstance(error, TaskFailure):
            logger.info("task %s (%s) failed: %s", task.id, task.task_type, error)
            failure = TaskError(error.code, error.message, error.retryable)
        elif isinstance(error, ProcessHandlerError):
            logger.warning(
                "task %s (%s) raised in its process: %s\n%s",
                task.id,
                task.task_type,
                error,
                error.details,
            )
            failure = TaskError(ErrorCode.HANDLER_ERROR, str(error), True)
        else:
            logger.warning("task %s (%s) raised", task.id, task.task_type, exc_info=error)
            failure = TaskError(
                ErrorCode.HANDLER_ERROR, f"{type(error).__name__}: {error}", True
            )
        return self._result_frame(running, TaskStatus.FAILED, error=failure)

    def _completed_frame(self, running: _Running, value: Any) -> str:
        """The common case, on the codec's fast path when it applies."""
        elapsed = trio.current_time() - running.received_at
        text = encode_completed(
            running.task.id,
            value,
            duration_ms=_duration_ms(elapsed),
            worker_id=self._config.worker_id,
        )
        if text is not None:
            return text
        return self._result_frame(running, TaskStatus.COMPLETED, payload=value)

    def _result_frame(
        self,
        running: _Running,
        status: TaskStatus,
        *,
        payload: Any = None,
        error: TaskError | None = None,
    ) -> str:
        elapsed = trio.current_time() - running.received_at
        return self._encode_result(running.task, status, payload, error, elapsed)

    def _encode_result(
        self,
        task: Task,
        status: TaskStatus,
        payload: Any,
        error: TaskError | None,
        elapsed: float,
    ) -> str:
        result = TaskResult(
            task_id=task.id,
            status=status,
            payload=payload,
            error=error,
            duration_ms=_duration_ms(elapsed),
            worker_id=self._config.worker_id,
        )
        return encode(TaskResultMessage(result))

    def _reject(self, task: Task, error: TaskError) -> None:
        logger.info("rejecting task %s (%s): %s", task.id, task.task_type, error.code)
        self._put_result(self._encode_result(task, TaskStatus.FAILED, None, error, 0.0))

    def _put_result(self, frame: str) -> None:
        """Queue a result frame (built without a message on the fast path, so the
        session rules check its type only)."""
        self._rules.check_send(TaskResultMessage)
        self._outbox.put(frame)
