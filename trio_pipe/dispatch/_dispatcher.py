"""The dispatcher: one object that owns the pool, the queue and every task handle,
driven by the tasks of one nursery tree (see docs/architecture.md).

Every state change happens synchronously inside one method call (Trio runs one task
at a time, so a method without a checkpoint is atomic); the tasks of the tree only
wait -- for frames, for deadlines, for backoff -- and then call into it.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import shlex
import ssl
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio

from .._deadlines import Deadlines
from .._errors import (
    DispatcherClosed,
    ErrorCode,
    NoWorkerAvailable,
    PoolFull,
    QueueFull,
    WorkerNotFound,
)
from .._typed import TaskSpec
from .._validation import (
    InvalidSpec,
    validate_argv,
    validate_cpus,
    validate_docker_user,
    validate_env,
    validate_hostname,
    validate_image,
    validate_memory,
    validate_network,
    validate_path,
    validate_remote_command,
    validate_username,
    validate_volume,
    validate_worker_id,
)
from ..protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_MS,
    Backpressure,
    DispatcherMessage,
    Heartbeat,
    HeartbeatAck,
    Kill,
    Message,
    Priority,
    ProtocolError,
    SessionState,
    Shutdown,
    Task,
    TaskDispatch,
    TaskError,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    WorkerSession,
    encode,
    encode_dispatch,
)
from ..transports import ChannelClosed, Outbox, WorkerChannel, serve_websocket_workers
from ._events import (
    Event,
    EventStream,
    TaskEvent,
    TaskEventKind,
    WorkerEvent,
    WorkerEventKind,
)
from ._handle import Attempt, BatchResult, TaskHandle
from ._pool import Pool, PoolStats, WorkerInfo, WorkerRecord, WorkerState
from ._queue import QUEUED, Constraint, TaskQueue
from ._supervisor import DEFAULT_RESTART, Launcher, ProcessSpec, RestartPolicy, supervise

if TYPE_CHECKING:
    from ..transports._ssh import KnownHosts, SshConnectionPool
    from ..transports._wasm import WasmSpec

__all__ = ["Dispatcher", "open_dispatcher"]

log = logging.getLogger("trio_pipe.dispatcher")

R = TypeVar("R")


_NO_WORKERS: frozenset[str] = frozenset()


def _identity(payload: Any) -> Any:
    return payload


class Dispatcher:
    """Routes tasks to workers. Made by :func:`open_dispatcher`; do not construct."""

    def __init__(
        self,
        *,
        heartbeat_timeout: float = 15.0,
        registration_timeout: float = 10.0,
        send_timeout: float = 10.0,
        close_timeout: float = 2.0,
        shutdown_grace: float = 10.0,
        max_queued: int = 100_000,
        aging_interval: float = 10.0,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 10.0,
        max_pool_size: int | None = None,
        min_pool_size: int = 0,
        on_below_minimum: Callable[[PoolStats], object] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        if max_queued < 0 or min_pool_size < 0:
            raise ValueError("max_queued and min_pool_size must be >= 0")
        self.heartbeat_timeout = heartbeat_timeout
        self.registration_timeout = registration_timeout
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.shutdown_grace = shutdown_grace
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.min_pool_size = min_pool_size
        self.on_below_minimum = on_below_minimum
        self.max_frame_size = max_frame_size
        self._pool = Pool(max_size=max_pool_size)
        self._queue = TaskQueue(max_queued=max_queued, aging_interval=aging_interval)
        self._queue_space = trio.lowlevel.ParkingLot()
        self._pool_changed = trio.lowlevel.ParkingLot()
        self._handles: dict[uuid.UUID, TaskHandle[Any]] = {}
        self._deadlines = Deadlines[TaskHandle[Any]](
            self._expire, live=lambda: len(self._handles)
        )
        self._closing = False
        self._drained = trio.Event()  # closing, and no task left in flight
        self._all_gone = trio.Event()  # closing, and no worker left connected
        self._nursery: trio.Nursery | None = None
        self._sessions: trio.Nursery | None = None
        self._supervisor_nursery: trio.Nursery | None = None
        self._supervisors: dict[str, trio.CancelScope] = {}
        self._ssh_pool: SshConnectionPool | None = None  # made on the first spawn_ssh
        self._ssh_pool_lock = trio.Lock()
        self._listener_scope = trio.CancelScope()
        self._port: int | None = None
        self._url: str | None = None
        self._listeners: list[EventStream] = []
        self._completed = 0
        self._failed = 0
        self._retried = 0

    # ------------------------------------------------------------------ info

    @property
    def port(self) -> int:
        """The TCP port WebSocket workers connect to (the real one if ``port=0``)."""
        if self._port is None:
            raise RuntimeError("this dispatcher does not listen for WebSocket workers")
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port`` for WebSocket workers (host as given to open_dispatcher)."""
        if self._url is None:
            raise RuntimeError("this dispatcher does not listen for WebSocket workers")
        return self._url

    def workers(self) -> list[WorkerInfo]:
        """Snapshots of every connected worker, then of remembered dead ones."""
        return self._pool.infos()

    def pool_stats(self) -> PoolStats:
        return self._pool.stats(
            queued_by_priority=self._queue.depth_by_priority(),
            completed=self._completed,
            failed=self._failed,
            retried=self._retried,
        )

    def events(self, *, buffer: int = 1024) -> EventStream:
        """Listen to task and worker lifecycle events from now on.

        Returns an :class:`EventStream`: iterate it (``async for``) and close it when
        done, best as ``async with dispatcher.events() as events:``. Each listener
        buffers up to *buffer* events; one that falls further behind loses the newest
        and is told how many with an :class:`EventsDropped` -- the dispatcher never
        waits for a listener. Iteration ends when the dispatcher closes.
        """
        stream = EventStream(buffer, self._listeners)
        self._listeners.append(stream)
        if self._closing:
            stream.close()
        return stream

    def _emit(self, event: Event) -> None:
        for listener in self._listeners:
            listener._deliver(event)

    def _task_event(
        self, handle: TaskHandle[Any], kind: TaskEventKind, error: TaskError | None = None
    ) -> None:
        if self._listeners:
            self._emit(
                TaskEvent(
                    kind,
                    handle.id,
                    handle.task.task_type,
                    trio.current_time(),
                    handle.worker_id,
                    handle.retry_count,
                    error,
                )
            )

    def _worker_event(
        self, worker_id: str, kind: WorkerEventKind, reason: str | None = None
    ) -> None:
        if self._listeners:
            self._emit(WorkerEvent(kind, worker_id, trio.current_time(), reason))

    async def wait_for_workers(
        self, count: int = 1, *, task_type: str | None = None
    ) -> None:
        """Wait until at least *count* workers are active (supporting *task_type*, if
        given). Bound it with the caller's own cancel scope, e.g. ``trio.fail_after``."""
        await trio.lowlevel.checkpoint()
        while self._count_active(task_type) < count:
            self._check_open()
            await self._pool_changed.park()

    def _count_active(self, task_type: str | None) -> int:
        return sum(
            r.state is WorkerState.ACTIVE
            and (task_type is None or task_type in r.supported_tasks)
            for r in self._pool
        )

    # --------------------------------------------------------------- submit

    @overload
    async def submit(
        self,
        task: TaskSpec[R],
        *,
        timeout_ms: int | None = None,
        priority: Priority | None = None,
        max_retries: int | None = None,
        trace_id: str | None = None,
    ) -> TaskHandle[R]: ...
    @overload
    async def submit(self, task: Task) -> TaskHandle[Any]: ...
    async def submit(self, task: Task | TaskSpec[Any], **options: Any) -> TaskHandle[Any]:
        """Hand a task to the pool and return its handle at once; the task runs as soon
        as a worker that supports its type has a free slot, highest priority first.

        When the queue already holds ``max_queued`` tasks, this waits for room
        (backpressure). The handle outlives the caller's scope: cancelling the caller
        after ``submit`` returns does not stop the task (use :meth:`run`, or
        :meth:`TaskHandle.cancel`). Raises :class:`DispatcherClosed` once shutdown began,
        and ``TypeError``/``ValueError`` if the payload is not JSON.
        """
        return await self._submit(task, options)

    @overload
    def submit_nowait(
        self,
        task: TaskSpec[R],
        *,
        timeout_ms: int | None = None,
        priority: Priority | None = None,
        max_retries: int | None = None,
        trace_id: str | None = None,
    ) -> TaskHandle[R]: ...
    @overload
    def submit_nowait(self, task: Task) -> TaskHandle[Any]: ...
    def submit_nowait(self, task: Task | TaskSpec[Any], **options: Any) -> TaskHandle[Any]:
        """Like :meth:`submit`, but never waits: raises :class:`NoWorkerAvailable` when
        no registered worker supports the task type, :class:`QueueFull` when the task
        would have to wait for room in a full queue."""
        handle = self._new_handle(task, options)
        if not self._pool.supports(handle.task.task_type):
            raise NoWorkerAvailable(
                f"no worker supports task type {handle.task.task_type!r}"
            )
        if not self._place(handle):
            raise QueueFull(f"the queue holds {self._queue.max_queued} tasks")
        return handle

    async def dispatch_to(self, worker_id: str, task: Task) -> TaskHandle[Any]:
        """Submit *task* to run on one worker only (queued while it is busy). Raises
        :class:`WorkerNotFound` if no connected worker has that id; if the worker goes
        away, the task fails with ``WORKER_DISCONNECTED`` rather than move elsewhere."""
        record = self._pool.get(worker_id)
        if record is None or record.state is WorkerState.DEAD:
            raise WorkerNotFound(f"no connected worker {worker_id!r}")
        return await self._submit(task, {}, constraint=("worker", worker_id))

    async def dispatch_with_tag(self, tag: str, task: Task) -> TaskHandle[Any]:
        """Submit *task* to run only on workers registered with *tag*."""
        return await self._submit(task, {}, constraint=("tag", tag))

    async def _submit(
        self,
        task: Task | TaskSpec[Any],
        options: dict[str, Any],
        *,
        constraint: Constraint = None,
    ) -> TaskHandle[Any]:
        await trio.lowlevel.checkpoint_if_cancelled()
        handle = self._new_handle(task, options)
        handle._constraint = constraint
        await self._admit(handle)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return handle

    @overload
    async def run(
        self,
        task: TaskSpec[R],
        *,
        timeout_ms: int | None = None,
        priority: Priority | None = None,
        max_retries: int | None = None,
        trace_id: str | None = None,
    ) -> R: ...
    @overload
    async def run(self, task: Task) -> Any: ...
    async def run(self, task: Task | TaskSpec[Any], **options: Any) -> Any:
        """Submit *task*, wait for it, and return its result payload (structured to the
        declared result type for a :class:`TaskSpec`).

        Structured: the caller's deadline bounds the task -- the ``timeoutMs`` the
        worker sees is the smaller of the task's own and the time left in the caller's
        scope -- and if the caller is cancelled, the task is killed (``Kill`` sent to
        its worker, handle resolved ``Cancelled``) before ``run`` returns.
        Raises :class:`TaskFailed` (carrying the ``TaskResult``) unless it completed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        handle = self._new_handle(
            task, options, caller_deadline=trio.current_effective_deadline()
        )
        try:
            await self._admit(handle)
            result = await handle.result()
            if result.status is not TaskStatus.COMPLETED:
                # If our own deadline is what ended it, let Trio say so.
                await trio.lowlevel.checkpoint_if_cancelled()
            # Not `await handle.value()`: a second wait, on a set event, would cost a
            # task switch for nothing.
            return handle._value_of(result)
        except trio.Cancelled:
            handle.cancel_nowait("the caller was cancelled")
            raise

    async def map(
        self,
        task_type: str,
        payloads: Iterable[Any],
        *,
        concurrency: int = 16,
        priority: Priority = Priority.NORMAL,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        trace_id: str | None = None,
    ) -> AsyncGenerator[BatchResult, None]:
        """Run one task per payload, at most *concurrency* at a time, and yield a
        :class:`BatchResult` for each as it ends (completion order; ``index`` tells
        which payload). A failed task is a result, not an exception: the batch goes on.

        Payloads are read lazily, as room frees up. The caller's deadline bounds every
        task, as in :meth:`run`. Leaving the iteration early cancels the tasks still
        in flight -- close it promptly with ``contextlib.aclosing`` if you may break.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        done, finished = trio.open_memory_channel[TaskHandle[Any]](math.inf)
        in_flight: dict[TaskHandle[Any], tuple[int, Any]] = {}
        items = enumerate(payloads)
        try:
            while True:
                while len(in_flight) < concurrency:
                    item = next(items, None)
                    if item is None:
                        break
                    task = Task.new(
                        task_type,
                        item[1],
                        priority=priority,
                        timeout_ms=timeout_ms,
                        max_retries=max_retries,
                        trace_id=trace_id,
                    )
                    handle = self._new_handle(
                        task, {}, caller_deadline=trio.current_effective_deadline()
                    )
                    handle._on_done = done.send_nowait
                    in_flight[handle] = item
                    await self._admit(handle)
                if not in_flight:
                    return
                handle = await finished.receive()
                index, payload = in_flight.pop(handle)
                yield BatchResult(index, payload, await handle.result())
        finally:
            for handle in in_flight:
                handle.cancel_nowait("the batch was abandoned")

    def _new_handle(
        self,
        task: Task | TaskSpec[Any],
        options: dict[str, Any],
        *,
        caller_deadline: float = math.inf,
    ) -> TaskHandle[Any]:
        self._check_open()
        structure: Callable[[Any], Any] = _identity
        if isinstance(task, TaskSpec):
            structure = task.structure_result
            task = task.to_task(**{k: v for k, v in options.items() if v is not None})
        elif options:
            raise TypeError("options apply to typed tasks; give a Task its own metadata")
        # A payload that is not JSON fails here, not later; and a task sent at once
        # goes out as this very frame.
        frame = encode_dispatch(task)
        handle = TaskHandle(
            task,
            deadline=trio.current_time() + task.metadata.timeout_ms / 1000,
            structure=structure,
            cancel=self._cancel,
        )
        handle._caller_deadline = caller_deadline
        handle._frame = frame
        return handle

    async def _admit(self, handle: TaskHandle[Any]) -> None:
        """Place *handle*, waiting for room in a full queue (backpressure)."""
        while not self._place(handle):
            await self._queue_space.park()
            self._check_open()

    def _check_open(self) -> None:
        if self._closing:
            raise DispatcherClosed("the dispatcher is shutting down")

    # ------------------------------------------------------------ placement

    def _place(self, handle: TaskHandle[Any], *, force: bool = False) -> bool:
        """Send *handle* to the best worker, or queue it. False if the queue is full
        (unless *force*: a task already admitted, coming back for a retry)."""
        kind, target = handle._constraint or (None, None)
        attempts = handle.attempts
        avoid = frozenset([a.worker_id for a in attempts]) if attempts else _NO_WORKERS
        record = self._pool.select(
            handle.task.task_type,
            worker_id=target if kind == "worker" else None,
            tag=target if kind == "tag" else None,
            avoid=avoid,
        )
        if record is None and self._queue.full and not force:
            return False
        admitted = handle.id not in self._handles
        if admitted:
            self._handles[handle.id] = handle
            self._deadlines.watch(handle, handle.deadline)
        if admitted or record is None:
            self._task_event(handle, TaskEventKind.PENDING)
        if record is not None:
            self._send_task(handle, record)
        else:
            handle.status = TaskStatus.PENDING
            handle._frame = None  # it will have waited: its timeout will differ
            self._queue.push(handle, trio.current_time())
        return True

    def _send_task(
        self, handle: TaskHandle[Any], record: WorkerRecord, *, rank: bool = True
    ) -> None:
        """Dispatch *handle* to *record*; ``rank=False`` leaves ranking the worker
        anew in the pool to the caller (once for several tasks)."""
        task = handle.task
        metadata = task.metadata
        deadline = min(handle.deadline, handle._caller_deadline)
        time_left_ms = math.ceil((deadline - trio.current_time()) * 1000)
        frame, handle._frame = handle._frame, None
        if time_left_ms < metadata.timeout_ms or handle.retry_count != metadata.retry_count:
            frame = encode_dispatch(
                task,
                timeout_ms=max(min(time_left_ms, metadata.timeout_ms), 1),
                retry_count=handle.retry_count,
            )
        self._post(record, TaskDispatch(task), frame)
        if rank:
            self._pool.changed(record)
        handle._site = record
        handle.worker_id = record.worker_id
        handle.status = TaskStatus.DISPATCHED
        self._task_event(handle, TaskEventKind.DISPATCHED)

    def _post(
        self, record: WorkerRecord, message: DispatcherMessage, frame: str | None = None
    ) -> None:
        """Queue *message* (already encoded as *frame*, if given) for the worker's
        writer, recording it in its session."""
        if frame is None:
            frame = encode(message)
        record.session.send(message)
        # Dropped if the outbox is closed: the session is ending and accounts for it.
        record.outbox.put(frame)

    def _fill(self, record: WorkerRecord) -> None:
        """Give a worker with free slots the best-ranked queued tasks it can run, then
        rank it anew in the pool (once, whatever changed before and here)."""
        taken = False
        while record.can_accept():
            handle = self._queue.pop_for(
                record.supported_tasks, record.worker_id, record.tags
            )
            if handle is None:
                break
            taken = True
            try:
                self._send_task(handle, record, rank=False)
            except (TypeError, ValueError) as exc:  # payload mutated after submit
                self._resolve_error(
                    handle, TaskStatus.FAILED, ErrorCode.INVALID_PAYLOAD, str(exc)
                )
        self._pool.changed(record)
        if taken:
            self._queue_space.unpark(
                count=max(self._queue.max_queued - len(self._queue), 0)
            )

    # ----------------------------------------------------------- resolution

    def _resolve(self, handle: TaskHandle[Any], result: TaskResult) -> None:
        if handle.done:
            return
        site = handle._site
        if site is QUEUED:
            self._queue.discard(handle)
            self._queue_space.unpark()
        elif isinstance(site, WorkerRecord):
            site.session.abandon(handle.id)
        handle._site = None
        self._handles.pop(handle.id, None)
        if result.status is TaskStatus.COMPLETED:
            self._completed += 1
        else:
            self._failed += 1
        handle._resolve(result)
        self._task_event(handle, TaskEventKind.for_status(result.status), result.error)
        if self._closing and not self._handles:
            self._drained.set()

    def _resolve_error(
        self,
        handle: TaskHandle[Any],
        status: TaskStatus,
        code: str,
        message: str,
        *,
        retryable: bool = False,
    ) -> None:
        self._resolve(
            handle,
            TaskResult(
                task_id=handle.id,
                status=status,
                error=TaskError(code=code, message=message, retryable=retryable),
                worker_id=handle.worker_id or "",
            ),
        )

    def _kill(self, handle: TaskHandle[Any], reason: str) -> None:
        record = handle._site
        if isinstance(record, WorkerRecord) and record.session.state in (
            SessionState.ACTIVE,
            SessionState.CLOSING,
        ):
            self._post(record, Kill(task_id=handle.id, reason=reason))

    def _cancel(self, handle: TaskHandle[Any], reason: str) -> None:
        self._kill(handle, reason)
        self._resolve_error(handle, TaskStatus.CANCELLED, ErrorCode.CANCELLED, reason)

    def _on_task_ended(self, handle: TaskHandle[Any], result: TaskResult) -> None:
        """A try ended on a worker: retry it if it may be retried, else resolve."""
        handle.attempts.append(Attempt(result.worker_id, result.status, result.error))
        if (
            result.status is TaskStatus.FAILED
            and result.error is not None
            and result.error.retryable
            and self._may_retry(handle)
        ):
            self._retried += 1
            handle._site = None
            handle.status = TaskStatus.PENDING
            self._task_event(handle, TaskEventKind.RETRYING, result.error)
            delay = self._backoff(handle.retry_count)
            assert self._nursery is not None
            self._nursery.start_soon(self._retry_after, handle, delay)
        else:
            self._resolve(handle, result)

    def _may_retry(self, handle: TaskHandle[Any]) -> bool:
        if self._closing or handle.retry_count > handle.task.metadata.max_retries:
            return False
        if trio.current_time() >= min(handle.deadline, handle._caller_deadline):
            return False
        kind, target = handle._constraint or (None, None)
        return not (kind == "worker" and self._pool.get(target or "") is None)

    def _backoff(self, retry_number: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = min(
            self.retry_backoff * 2.0 ** (retry_number - 1), self.retry_backoff_max
        )
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _retry_after(self, handle: TaskHandle[Any], delay: float) -> None:
        await trio.sleep(delay)
        if not handle.done:
            self._place(handle, force=True)

    # ------------------------------------------------------------ deadlines

    def _expire(self, handle: TaskHandle[Any]) -> None:
        timeout_ms = handle.task.metadata.timeout_ms
        where = "on its worker" if isinstance(handle._site, WorkerRecord) else "waiting"
        message = f"no result within its deadline ({timeout_ms} ms timeout; {where})"
        self._kill(handle, "timed out")
        self._resolve_error(handle, TaskStatus.TIMED_OUT, ErrorCode.TIMEOUT, message)

    # -------------------------------------------------------------- workers

    async def spawn_stdio(
        self,
        argv: Sequence[str],
        tasks: Sequence[str],
        *,
        worker_id: str | None = None,
        max_concurrency: int = 1,
        tags: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        restart: RestartPolicy = DEFAULT_RESTART,
        stop_grace: float = 5.0,
    ) -> str:
        """Start *argv* as a worker for *tasks*, speaking newline-delimited JSON on its
        stdin and stdout, and return its worker id.

        The process needs no SDK and no registration: the dispatcher registers it
        (``max_concurrency`` slots). Lines on its stdout that are not protocol messages
        are logged; its stderr is logged under its worker id. A supervisor in the
        dispatcher's nursery tree restarts it when it exits, as *restart* says; its
        unfinished tasks are retried or resolved at once. It is stopped -- stdin
        closed, then SIGTERM, then SIGKILL, ``stop_grace`` seconds apart, its whole
        process group -- when it is removed or the dispatcher closes (after a graceful
        ``Shutdown`` line, if the dispatcher closes normally).

        *argv* is executed directly, never through a shell. Raises ``InvalidSpec`` for
        an invalid argument and ``OSError`` if the process cannot be started.
        """
        self._check_open()
        argv = validate_argv(argv)
        if worker_id is None:
            name = re.sub(r"[^A-Za-z0-9._-]", "-", os.path.basename(argv[0])) or "worker"
            worker_id = f"{name[:64]}-{uuid.uuid4().hex[:8]}"
        registration = _spawned(worker_id, tasks, max_concurrency, tags)
        spec = ProcessSpec(
            argv,
            registration,
            env=None if env is None else validate_env(env),
            cwd=None if cwd is None else validate_path(cwd),
            stop_grace=stop_grace,
        )
        await self._start_supervisor(spec, restart)
        return worker_id

    async def spawn_docker(
        self,
        image: str,
        tasks: Sequence[str],
        *,
        command: Sequence[str] | None = None,
        worker_id: str | None = None,
        max_concurrency: int = 1,
        tags: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        volumes: Sequence[str] = (),
        network: str | None = None,
        memory: int | str | None = None,
        cpus: float | None = None,
        read_only: bool = False,
        user: str | None = None,
        restart: RestartPolicy = DEFAULT_RESTART,
        stop_grace: float = 5.0,
        docker: str = "docker",
    ) -> str:
        """Run *image* as a stdio worker in a container and return its worker id.

        Runs ``docker run -i --rm --name trio-pipe-<worker id> [options] IMAGE
        [COMMAND...]`` and then speaks the stdio contract with it, under the same
        supervision as :meth:`spawn_stdio`. The container is removed when the worker
        stops (``docker rm -f`` as a last resort: a container outlives a killed
        ``docker run``), and before each start. Every value that reaches the docker
        command line is validated first (``InvalidSpec``); nothing goes through a shell.
        """
        self._check_open()
        image = validate_image(image)
        worker_id = validate_worker_id(worker_id or f"docker-{uuid.uuid4().hex[:12]}")
        name = f"trio-pipe-{worker_id}"
        options: list[str] = []
        if network is not None:
            options += ["--network", validate_network(network)]
        if memory is not None:
            options += ["--memory", validate_memory(memory)]
        if cpus is not None:
            options += ["--cpus", validate_cpus(cpus)]
        if read_only:
            options.append("--read-only")
        if user is not None:
            options += ["--user", validate_docker_user(user)]
        for volume in volumes:
            options += ["-v", validate_volume(volume)]
        for key, value in validate_env(env or {}).items():
            options += ["-e", f"{key}={value}"]
        argv = [docker, "run", "-i", "--rm", "--name", name, *options, image]
        if command is not None:
            argv += validate_argv(command, field="command")
        registration = _spawned(worker_id, tasks, max_concurrency, tags)
        spec = ProcessSpec(
            argv,
            registration,
            transport="docker",
            stop_grace=stop_grace,
            cleanup=[docker, "rm", "--force", name],
        )
        await self._start_supervisor(spec, restart)
        return worker_id

    async def spawn_wasm(
        self,
        module_path: str | os.PathLike[str],
        tasks: Sequence[str],
        *,
        worker_id: str | None = None,
        max_concurrency: int = 2,
        max_memory_bytes: int = 64 * 1024 * 1024,
        timeout_ms: int | None = None,
        fuel: int | None = None,
        env_allow: Sequence[str] = (),
        preopen_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
        preopen_writable: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        tags: Sequence[str] = (),
    ) -> str:
        """Run the WASI command module at *module_path* (``.wasm``, or WAT text) as an
        in-process worker for *tasks*, and return its worker id.

        Each task runs in a **new** wasmtime store and instance, on a thread (at most
        *max_concurrency* at once): the Task JSON on its stdin, its stdout parsed as
        the result payload. The module is compiled once (and cached in *cache_dir*,
        keyed by content and wasmtime version, if given: a directory only you can
        write). Limits: *max_memory_bytes* of linear memory; a deadline of the task's
        ``timeoutMs`` (capped by *timeout_ms*), after which it is interrupted and
        ``TimedOut``; *fuel* units of fuel, if given (``WASM_FUEL_EXHAUSTED``). It
        sees only the environment variables named in *env_allow* (values read now)
        and no filesystem but *preopen_dirs* (guest path -> host directory; read-only
        unless *preopen_writable*). ``Kill`` and caller cancellation interrupt a
        running instance. See docs/wasm.md for the outcomes and their codes.

        The worker lives in the dispatcher's nursery tree until it is removed or the
        dispatcher closes. Needs the ``wasm`` extra (``pip install 'trio-pipe[wasm]'``).
        Raises ``InvalidSpec`` for an invalid option, ``OSError`` if the module cannot
        be read, ``ValueError`` if it is not a WASI command.
        """
        self._check_open()
        try:
            from ..transports import _wasm as wasm
        except ImportError as exc:
            raise ImportError(
                f"spawn_wasm needs wasmtime ({exc}); "
                "install it with: pip install 'trio-pipe[wasm]'"
            ) from exc
        if worker_id is None:
            stem = os.path.splitext(os.path.basename(str(module_path)))[0]
            name = re.sub(r"[^A-Za-z0-9._-]", "-", stem)[:64] or "module"
            worker_id = f"wasm-{name}-{uuid.uuid4().hex[:8]}"
        spec = wasm.wasm_spec(
            module_path,
            worker_id=validate_worker_id(worker_id),
            max_concurrency=max_concurrency,
            max_memory_bytes=max_memory_bytes,
            timeout_ms=timeout_ms,
            fuel=fuel,
            env_allow=env_allow,
            preopen_dirs=preopen_dirs,
            preopen_writable=preopen_writable,
            cache_dir=cache_dir,
            max_output_bytes=self.max_frame_size,
        )
        registration = WorkerRegistration(
            worker_id=spec.worker_id,
            supported_tasks=tuple(tasks),
            max_concurrency=spec.max_concurrency,
            language="wasm",
            tags=tuple(tags),
        )
        assert self._supervisor_nursery is not None
        await self._supervisor_nursery.start(self._serve_wasm, spec, registration)
        return spec.worker_id

    async def _serve_wasm(
        self,
        spec: WasmSpec,
        registration: WorkerRegistration,
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        """A WASM worker's lifetime, in the supervisors' nursery: its channel (the
        compiled module, one runner per task, the epoch ticker) around one session.
        ``remove_worker`` cancels it; its instances are interrupted on the way out."""
        from ..transports._wasm import open_wasm_channel

        if spec.worker_id in self._supervisors:
            raise ValueError(f"a worker {spec.worker_id!r} is already supervised")
        with trio.CancelScope() as scope:
            self._supervisors[spec.worker_id] = scope
            try:
                async with open_wasm_channel(spec) as channel:
                    task_status.started()
                    await self.serve_worker(
                        channel, registration=registration, transport="wasm"
                    )
            finally:
                del self._supervisors[spec.worker_id]

    async def spawn_ssh(
        self,
        host: str,
        command: str | Sequence[str],
        tasks: Sequence[str],
        *,
        user: str,
        port: int = 22,
        known_hosts: KnownHosts | None,
        client_keys: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        connect_timeout: float = 10.0,
        keepalive_interval: float = 15.0,
        keepalive_count_max: int = 3,
        worker_id: str | None = None,
        max_concurrency: int = 1,
        tags: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        restart: RestartPolicy = DEFAULT_RESTART,
        stop_grace: float = 5.0,
    ) -> str:
        """Run *command* on *host* over SSH as a stdio worker for *tasks*, and return
        its worker id.

        The remote command's stdin and stdout carry the stdio contract (one JSON
        message per line) and its stderr is logged under the worker id, under the same
        supervision as :meth:`spawn_stdio`: restarted (reconnecting if need be) as
        *restart* says. Workers on the same (host, port, user, known_hosts,
        client_keys) share one SSH connection, closed when the last of them stops;
        keepalives (every ``keepalive_interval`` s, dead after ``keepalive_count_max``
        unanswered) detect a dead link, which ends the session of every worker on it.

        Host keys are checked strictly against *known_hosts* (a file path or an
        ``asyncssh.SSHKnownHosts``): an unknown or changed key raises
        ``HostKeyError`` and nothing is sent to that host. ``None`` is refused;
        ``INSECURE_ACCEPT_ANY_HOST_KEY`` turns checking off, for tests only. Only the
        private keys in *client_keys* are offered (no agent, no ``~/.ssh/config``).

        *command* is a command line for the remote shell (``str``) or a list of
        arguments (each quoted); *env* entries are passed as ``env K='V' ...`` before
        it. Every value is validated before any connection (``InvalidSpec``). Needs
        the ``ssh`` extra (``pip install 'trio-pipe[ssh]'``). Raises ``SshError`` (an
        ``OSError``) if the first connection or process start fails.
        """
        self._check_open()
        host = validate_hostname(host)
        user = validate_username(user)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidSpec("port", "must be an int from 1 to 65535", repr(port)[:64])
        remote = _remote_command(command, env)
        keys = _client_key_paths(client_keys)
        if not connect_timeout > 0 or not keepalive_interval > 0:
            raise ValueError("connect_timeout and keepalive_interval must be > 0")
        if keepalive_count_max < 1:
            raise ValueError("keepalive_count_max must be >= 1")
        if worker_id is None:
            name = re.sub(r"[^A-Za-z0-9.-]", "-", host)[:64]
            worker_id = f"ssh-{name}-{uuid.uuid4().hex[:8]}"
        registration = _spawned(worker_id, tasks, max_concurrency, tags)
        try:
            from ..transports import _ssh as ssh
        except ImportError as exc:
            raise ImportError(
                f"spawn_ssh needs asyncssh and trio-asyncio ({exc}); "
                "install them with: pip install 'trio-pipe[ssh]'"
            ) from exc
        target = ssh.SshTarget(
            host,
            port,
            user,
            ssh.checked_known_hosts(known_hosts),
            keys,
            connect_timeout=connect_timeout,
            keepalive_interval=keepalive_interval,
            keepalive_count_max=keepalive_count_max,
        )
        pool = await self._get_ssh_pool()
        spec = ssh.SshSpec(target, remote, registration, pool, stop_grace=stop_grace)
        await self._start_supervisor(spec, restart, nursery=pool.nursery)
        return worker_id

    async def _get_ssh_pool(self) -> SshConnectionPool:
        """The SSH pool, started on first use in the supervisors' nursery."""
        async with self._ssh_pool_lock:
            if self._ssh_pool is None:
                from ..transports._ssh import serve_ssh_pool

                assert self._supervisor_nursery is not None
                self._ssh_pool = await self._supervisor_nursery.start(serve_ssh_pool)
            return self._ssh_pool

    async def _start_supervisor(
        self, spec: Launcher, policy: RestartPolicy, *, nursery: trio.Nursery | None = None
    ) -> None:
        if spec.worker_id in self._supervisors:
            raise ValueError(f"a worker {spec.worker_id!r} is already supervised")
        if nursery is None:
            nursery = self._supervisor_nursery
        assert nursery is not None
        await nursery.start(self._run_supervisor, spec, policy)

    async def _run_supervisor(
        self,
        spec: Launcher,
        policy: RestartPolicy,
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        with trio.CancelScope() as scope:
            self._supervisors[spec.worker_id] = scope
            try:
                await supervise(
                    spec,
                    policy,
                    self.serve_worker,
                    lambda: self._closing,
                    partial(self._worker_event, spec.worker_id),
                    task_status=task_status,
                )
            finally:
                del self._supervisors[spec.worker_id]

    def drain_worker(self, worker_id: str) -> None:
        """Send *worker_id* no new tasks; its running tasks finish normally."""
        record = self._connected(worker_id)
        record.state = WorkerState.DRAINING
        self._pool.changed(record)
        self._worker_event(record.worker_id, WorkerEventKind.DRAINING)

    def remove_worker(self, worker_id: str) -> None:
        """Disconnect *worker_id* now; its unfinished tasks are retried elsewhere
        (``WORKER_REMOVED``). A dead worker's record is forgotten."""
        supervisor = self._supervisors.get(worker_id)
        record = self._pool.get(worker_id)
        if record is None and supervisor is None:
            if not self._pool.forget_dead(worker_id):
                raise WorkerNotFound(f"no worker {worker_id!r}")
            return
        if record is not None:
            record.removed = True
            record.close_reason = "removed by the dispatcher"
            record.cancel_scope.cancel()
        if supervisor is not None:  # a spawned worker: stop its process for good
            supervisor.cancel()

    def _connected(self, worker_id: str) -> WorkerRecord:
        record = self._pool.get(worker_id)
        if record is None:
            raise WorkerNotFound(f"no connected worker {worker_id!r}")
        return record

    def attach_worker(
        self,
        channel: WorkerChannel,
        *,
        registration: WorkerRegistration | None = None,
        transport: str = "custom",
    ) -> None:
        """Start :meth:`serve_worker` for *channel* in the dispatcher's nursery."""
        self._check_open()
        assert self._sessions is not None
        self._sessions.start_soon(
            partial(
                self.serve_worker, channel, registration=registration, transport=transport
            )
        )

    async def serve_worker(
        self,
        channel: WorkerChannel,
        *,
        registration: WorkerRegistration | None = None,
        transport: str = "websocket",
    ) -> None:
        """Run one worker's session over *channel* until it ends.

        Without *registration*, the worker must send ``WorkerRegister`` within
        ``registration_timeout``. Its session is watched: no message within
        ``heartbeat_timeout`` declares it dead, as does a closed connection or a
        malformed frame (the connection is then closed with the reason). A worker
        registered by the dispatcher (a spawned process, which may never heartbeat) is
        watched from its first heartbeat on; until then its process is its liveness.
        However the session ends, its unfinished tasks are retried or resolved at once.
        """
        session = WorkerSession(registration)
        if registration is None and not await self._await_registration(session, channel):
            return
        now = trio.current_time()
        record = WorkerRecord(
            session, Outbox(), trio.CancelScope(), transport, channel.peer, now, now
        )
        record.watched = registration is None
        try:
            self._check_open()
            replaced = self._pool.add(record)
        except (DispatcherClosed, PoolFull) as exc:
            await self._close(channel, str(exc), protocol_error=False)
            return
        if replaced is not None:
            replaced.close_reason = "replaced by a new connection with the same id"
            replaced.cancel_scope.cancel()
        log.info("worker %s registered from %s", record.worker_id, channel.peer)
        self._worker_event(record.worker_id, WorkerEventKind.REGISTERED, channel.peer)
        self._pool_changed.unpark_all()
        reason = "dispatcher closed"
        try:
            with record.cancel_scope:
                async with trio.open_nursery() as nursery:
                    reading = trio.CancelScope()
                    nursery.start_soon(self._write_loop, record, channel)
                    nursery.start_soon(self._watchdog, record, reading)
                    if session.registered_by_peer:
                        self._post(record, WorkerRegistered(worker_id=record.worker_id))
                    self._fill(record)
                    reason = await self._read_loop(record, channel, reading)
                    nursery.cancel_scope.cancel()
        finally:
            self._worker_gone(record, record.close_reason or reason)

    async def _await_registration(
        self, session: WorkerSession, channel: WorkerChannel
    ) -> bool:
        with trio.move_on_after(self.registration_timeout):
            try:
                session.receive(await channel.receive())
                return True
            except ProtocolError as exc:
                await self._close(channel, exc.reason, protocol_error=True)
                return False
            except ChannelClosed:
                return False
        await self._close(channel, "no WorkerRegister in time", protocol_error=True)
        return False

    async def _read_loop(
        self, record: WorkerRecord, channel: WorkerChannel, reading: trio.CancelScope
    ) -> str:
        """Act on the worker's messages until the session ends (or the watchdog
        cancels *reading*); return why it ended."""
        with reading:
            while True:
                try:
                    message = await channel.receive()
                    record.last_seen = trio.current_time()
                    record.watched = record.watched or isinstance(message, Heartbeat)
                    self._on_message(record, message)
                except ProtocolError as exc:
                    log.warning("worker %s broke the protocol: %s", record.worker_id, exc)
                    await self._close(channel, exc.reason, protocol_error=True)
                    return f"protocol error: {exc.reason}"
                except ChannelClosed as exc:
                    return f"connection closed: {exc}"
        timeout = self.heartbeat_timeout
        log.warning("worker %s silent for %s s: declared dead", record.worker_id, timeout)
        return f"no heartbeat or message for {timeout} s"

    async def _watchdog(self, record: WorkerRecord, reading: trio.CancelScope) -> None:
        """Cancel *reading* once a watched worker has been silent for
        ``heartbeat_timeout``. The reader only notes the time of each message: moving
        a cancel scope's deadline per message would cost more than the message."""
        timeout = self.heartbeat_timeout
        while True:
            now = trio.current_time()
            if not record.watched:
                await trio.sleep_until(now + timeout)  # a spawned worker, until it beats
            elif now < record.last_seen + timeout:
                await trio.sleep_until(record.last_seen + timeout)
            else:
                reading.cancel()
                return

    async def _write_loop(self, record: WorkerRecord, channel: WorkerChannel) -> None:
        """Send everything queued for the worker, as many frames per write as are
        pending; when the outbox is closed (graceful shutdown), close the connection."""
        try:
            if await self._send_batches(record.outbox, channel):
                record.close_reason = "closed by the dispatcher"
                await self._close(channel, "dispatcher shutting down", protocol_error=False)
            else:
                record.close_reason = (
                    f"a send did not complete within {self.send_timeout} s"
                )
        except ChannelClosed as exc:
            record.close_reason = f"connection lost while sending: {exc}"
        record.cancel_scope.cancel()

    async def _send_batches(self, outbox: Outbox, channel: WorkerChannel) -> bool:
        """Send batches until the outbox is closed and drained (True), or until a
        send takes longer than ``send_timeout`` (False)."""
        while True:
            # One cancel scope for many sends, its deadline pushed before each: much
            # cheaper than a scope per send. Expiring while idle just opens a new one.
            sending = False
            with trio.CancelScope() as scope:
                while frames := await outbox.take():
                    sending = True
                    scope.deadline = trio.current_time() + self.send_timeout
                    await channel.send_all(frames)
                    sending = False
                return True
            if sending:
                return False

    async def _close(
        self, channel: WorkerChannel, reason: str, *, protocol_error: bool
    ) -> None:
        with trio.move_on_after(self.close_timeout):
            try:
                await channel.aclose(reason, protocol_error=protocol_error)
            except ChannelClosed:
                pass

    def _on_message(self, record: WorkerRecord, message: Message) -> None:
        session = record.session
        was_throttled = session.throttled
        accepted = session.receive(message)
        if session.throttled != was_throttled:
            kind = (
                WorkerEventKind.THROTTLED
                if session.throttled
                else WorkerEventKind.UNTHROTTLED
            )
            self._worker_event(record.worker_id, kind)
        if isinstance(accepted, TaskResultMessage):
            result = accepted.result
            handle = self._handles.get(result.task_id)
            if handle is None or handle._site is not record:
                pass  # resolved already (timeout, kill): the slot is free again
            elif not result.status.is_terminal:
                if handle.status is not TaskStatus.RUNNING:
                    handle.status = TaskStatus.RUNNING
                    self._task_event(handle, TaskEventKind.RUNNING)
            else:
                handle._site = None
                self._on_task_ended(handle, result)
        elif isinstance(accepted, Heartbeat):
            self._post(record, HeartbeatAck())
        elif isinstance(accepted, Backpressure):
            log.debug("worker %s backpressure %s", record.worker_id, accepted.signal)
        elif isinstance(accepted, WorkerRegister):
            self._pool.reindex(record)
            self._pool_changed.unpark_all()
            if session.registered_by_peer:
                self._post(record, WorkerRegistered(worker_id=record.worker_id))
        self._fill(record)  # and ranks the worker anew: its load may have changed

    def _worker_gone(self, record: WorkerRecord, reason: str) -> None:
        """The session ended: retry or resolve what the worker held, then update the
        pool (and warn if it fell below its minimum)."""
        lost = record.session.close()
        record.close_reason = reason
        self._pool.remove(record, dead=not record.removed)
        log.info("worker %s gone: %s", record.worker_id, reason)
        kind = WorkerEventKind.REMOVED if record.removed else WorkerEventKind.DEAD
        self._worker_event(record.worker_id, kind, reason)
        if self._closing:
            code, status = ErrorCode.DISPATCHER_CLOSED, TaskStatus.CANCELLED
        else:
            code = (
                ErrorCode.WORKER_REMOVED
                if record.removed
                else ErrorCode.WORKER_DISCONNECTED
            )
            status = TaskStatus.FAILED
        message = f"worker {record.worker_id}: {reason}"
        for task_id in lost:
            handle = self._handles.get(task_id)
            if handle is not None and handle._site is record:
                handle._site = None
                error = TaskError(code=code, message=message, retryable=not self._closing)
                self._on_task_ended(
                    handle,
                    TaskResult(task_id, status, error=error, worker_id=record.worker_id),
                )
        if self._pool.get(record.worker_id) is None:
            for handle in self._queue.take_where(("worker", record.worker_id)):
                self._resolve_error(handle, TaskStatus.FAILED, code, message)
        if self._closing and not len(self._pool):
            self._all_gone.set()
        self._check_minimum()

    def _check_minimum(self) -> None:
        stats = self.pool_stats()
        if self.on_below_minimum is not None and stats.active < self.min_pool_size:
            self.on_below_minimum(stats)

    # -------------------------------------------------------------- shutdown

    async def _shutdown(self) -> None:
        """Graceful: take nothing new, tell workers, let in-flight tasks finish within
        ``shutdown_grace``, then close every connection."""
        self._closing = True
        self._listener_scope.cancel()
        self._queue_space.unpark_all()
        self._pool_changed.unpark_all()
        for handle in self._queue.take_all():
            self._resolve_error(
                handle,
                TaskStatus.CANCELLED,
                ErrorCode.DISPATCHER_CLOSED,
                "never dispatched",
            )
        for handle in list(self._handles.values()):
            if handle._site is None:  # waiting to be retried
                self._resolve_error(
                    handle, TaskStatus.CANCELLED, ErrorCode.DISPATCHER_CLOSED, "not retried"
                )
        for record in self._pool:
            if record.session.state is SessionState.ACTIVE:
                self._post(record, Shutdown(graceful=True))
        if not self._handles:
            self._drained.set()
        with trio.move_on_after(self.shutdown_grace):
            await self._drained.wait()
        for record in self._pool:
            record.outbox.close()
        if len(self._pool):
            with trio.move_on_after(self.close_timeout):
                await self._all_gone.wait()

    def _close_everything(self) -> None:
        self._closing = True
        self._queue_space.unpark_all()
        self._pool_changed.unpark_all()
        for handle in list(self._handles.values()):
            self._resolve_error(
                handle,
                TaskStatus.CANCELLED,
                ErrorCode.DISPATCHER_CLOSED,
                "dispatcher closed",
            )
        for listener in list(self._listeners):
            listener.close()


def _remote_command(command: object, env: Mapping[str, str] | None) -> str:
    """The command line for the remote shell: validated *command* (a ``str``, or a
    list of arguments quoted one by one), after ``env K='V' ...`` for *env*."""
    if isinstance(command, str):
        line = validate_remote_command(command, field="command")
    else:
        args = validate_argv(command, field="command")
        line = " ".join(
            shlex.quote(validate_remote_command(arg, field=f"command[{index}]"))
            for index, arg in enumerate(args)
        )
    if env:
        assignments = (
            f"{key}={shlex.quote(value)}" for key, value in validate_env(env).items()
        )
        line = f"env {' '.join(assignments)} {line}"
    return line


def _client_key_paths(keys: object) -> tuple[str, ...]:
    """Private key file paths: one path, or a non-empty sequence of them, validated and
    made absolute (a restart must not depend on the working directory of the day)."""
    if isinstance(keys, str | os.PathLike):
        keys = [keys]
    if isinstance(keys, bytes | bytearray) or not isinstance(keys, Sequence):
        raise InvalidSpec(
            "client_keys", f"must be a path or a list of paths, not {type(keys).__name__}"
        )
    if not keys:
        raise InvalidSpec("client_keys", "must name at least one private key file")
    return tuple(
        os.path.abspath(validate_path(key, field=f"client_keys[{index}]"))
        for index, key in enumerate(keys)
    )


def _spawned(
    worker_id: str, tasks: Sequence[str], max_concurrency: int, tags: Sequence[str]
) -> WorkerRegistration:
    """The registration the dispatcher makes for a worker it spawns."""
    return WorkerRegistration(
        worker_id=validate_worker_id(worker_id),
        supported_tasks=tuple(tasks),
        max_concurrency=max_concurrency,
        tags=tuple(tags),
    )


async def _open_nursery_task(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


@asynccontextmanager
async def open_dispatcher(
    host: str = "127.0.0.1",
    port: int | None = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> AsyncIterator[Dispatcher]:
    """Open a dispatcher, listening for WebSocket workers on *host*:*port*.

    ``port=0`` picks a free port (``dispatcher.port`` tells which); ``port=None``
    listens nowhere (for spawned workers only). Keyword *options* are those of
    :class:`Dispatcher` (timeouts in seconds, queue and pool limits, retry backoff).

    Everything the dispatcher does runs in one nursery tree under this block::

        open_dispatcher ── deadlines    one task: every task deadline
                        ├─ listener     accepts WebSocket workers
                        ├─ sessions     one task per worker: reader + watchdog, writer
                        └─ retries      backoff sleeps of tasks waiting to retry

    Leaving the block normally is a graceful shutdown: submissions stop (raising
    :class:`DispatcherClosed`), queued tasks resolve ``Cancelled`` with
    ``DISPATCHER_CLOSED``, workers get ``Shutdown{graceful:true}``, in-flight tasks
    have ``shutdown_grace`` seconds to finish, then every connection is closed.
    Leaving by an exception or cancellation skips the grace period. Either way, every
    handle is resolved by the time the block has exited.
    """
    dispatcher = Dispatcher(**options)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as root:
            dispatcher._nursery = root
            root.start_soon(dispatcher._deadlines.run)
            dispatcher._sessions = await root.start(_open_nursery_task)
            dispatcher._supervisor_nursery = await root.start(_open_nursery_task)
            if port is not None:
                dispatcher._port = await root.start(
                    _listen, dispatcher, host, port, ssl_context
                )
                scheme = "wss" if ssl_context else "ws"
                dispatcher._url = f"{scheme}://{host}:{dispatcher._port}"
            try:
                yield dispatcher
                await dispatcher._shutdown()
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                dispatcher._closing = True
                root.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Re-raise an error of the caller's own block as itself, not wrapped in the
        # group of the nursery it happened to run in.
        _, rest = group.split(lambda exc: exc is body_error)
        if body_error is not None and rest is None:
            raise body_error from None
        raise
    finally:
        dispatcher._close_everything()


async def _listen(
    dispatcher: Dispatcher,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    task_status: trio.TaskStatus[int],
) -> None:
    """The listener: WebSocket workers, in a scope that shutdown cancels first."""
    assert dispatcher._sessions is not None
    with dispatcher._listener_scope:
        await serve_websocket_workers(
            dispatcher.serve_worker,
            host,
            port,
            ssl_context=ssl_context,
            handler_nursery=dispatcher._sessions,
            max_frame_size=dispatcher.max_frame_size,
            close_timeout=dispatcher.close_timeout,
            task_status=task_status,
        )
