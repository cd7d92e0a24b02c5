"""The dispatcher: the public face over the scheduler, the sessions and the spawned
workers (``_open`` builds the nursery tree they live in).

The :class:`Scheduler` decides (it owns every task and worker record and never
waits); sessions (``_sessions``) move one worker's frames; the
:class:`SupervisorSet` runs spawned workers. :class:`Dispatcher` only validates what a
caller gives, waits where the caller must wait, and calls into them.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import os
import time
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

from .._errors import TaskNotFound, WorkerNotFound
from .._typed import TaskSpec
from .._validation import (
    InvalidSpec,
    derive_worker_id,
    validate_hostname,
    validate_username,
    validate_worker_id,
)
from ..auth import Claims
from ..protocol import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_MS,
    Priority,
    Task,
    TaskStatus,
    WorkerRegistration,
)
from ..store import Store, TaskRecord
from ..transports import FrameChannel
from ..transports._spawn import (
    client_key_paths,
    docker_spec,
    remote_command,
    spawned_registration,
    stdio_spec,
)
from ._config import DispatcherConfig
from ._entry import Constraint, OnWorker, TaskEntry, WithTag
from ._events import Event, EventStream
from ._handle import Attempt, BatchResult, TaskHandle
from ._pool import PoolStats, WorkerInfo, WorkerState
from ._scheduler import Scheduler
from ._sessions import serve_worker
from ._supervisor import DEFAULT_RESTART, RestartPolicy, SupervisorSet

if TYPE_CHECKING:
    from ..transports._ssh import KnownHosts
    from ..workflow import Workflow

__all__ = ["Dispatcher"]

log = logging.getLogger("trio_pipe.dispatcher")

R = TypeVar("R")

#: How many waiting tasks :meth:`Dispatcher._resume` takes from the store at a time.
_RESUME_PAGE = 1000


class Dispatcher:
    """Routes tasks to workers. Made by :func:`open_dispatcher`; do not construct."""

    def __init__(
        self,
        config: DispatcherConfig,
        *,
        sessions: trio.Nursery,
        supervisors: trio.Nursery,
        store: Store,
    ) -> None:
        self.config = config
        self._scheduler = scheduler = Scheduler(config, store)
        self._store = store
        #: Tasks the store is writing, not admitted yet (found by ``handle()``).
        self._adding: dict[uuid.UUID, TaskEntry] = {}
        self._sessions = sessions
        self._supervisors = SupervisorSet(
            supervisors,
            self.serve_worker,
            lambda: scheduler.closing,
            scheduler.worker_event,
        )
        self._ports: tuple[int, ...] = ()
        self._url: str | None = None
        self._http_url: str | None = None

    # ------------------------------------------------------------------ info

    @property
    def port(self) -> int:
        """The TCP port WebSocket workers connect to (the real one if ``port=0``; the
        first listener's, if the host has several addresses: see :attr:`ports`)."""
        return self.ports[0]

    @property
    def ports(self) -> tuple[int, ...]:
        """The port of each listener, one per address of the host (with ``port=0``
        each may differ)."""
        if not self._ports:
            raise RuntimeError("this dispatcher does not listen for WebSocket workers")
        return self._ports

    @property
    def url(self) -> str:
        """``ws://host:port`` for WebSocket workers (host as given to open_dispatcher)."""
        if self._url is None:
            raise RuntimeError("this dispatcher does not listen for WebSocket workers")
        return self._url

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the HTTP API (the real port if it was 0)."""
        if self._http_url is None:
            raise RuntimeError("this dispatcher does not serve the HTTP API (http=...)")
        return self._http_url

    def _listening(self, ports: tuple[int, ...], base_url: str) -> None:
        self._ports = ports
        self._url = f"{base_url}:{ports[0]}"

    def workers(self) -> list[WorkerInfo]:
        """Snapshots of every connected worker, then of remembered dead ones."""
        return self._scheduler.pool.infos()

    def pool_stats(self) -> PoolStats:
        return self._scheduler.stats()

    def queued_by_type(self) -> dict[tuple[str, Priority], int]:
        """How many tasks wait for a worker, by task type and priority (counted now,
        over the unfinished tasks: for metrics, at scrape time)."""
        counts: collections.Counter[tuple[str, Priority]] = collections.Counter()
        for entry in self._scheduler._entries.values():
            if entry.queued:
                task = entry.handle.task
                counts[task.task_type, task.metadata.priority] += 1
        return dict(counts)

    @property
    def store(self) -> Store:
        """Where this dispatcher keeps its tasks (``open_dispatcher(store=...)``)."""
        return self._store

    def events(self, *, buffer: int = 1024) -> EventStream:
        """Listen to task and worker lifecycle events from now on.

        Returns an :class:`EventStream`: iterate it (``async for``) and close it when
        done, best as ``async with dispatcher.events() as events:``. Each listener
        buffers up to *buffer* events; one that falls further behind loses the newest
        and is told how many with an :class:`EventsDropped` -- the dispatcher never
        waits for a listener. Iteration ends when the dispatcher closes.
        """
        listeners = self._scheduler.listeners
        stream = EventStream(buffer, listeners)
        listeners.append(stream)
        if self._scheduler.closing:
            stream.close()
        return stream

    def _publish(self, event: Event) -> None:
        """Hand *event* to every listener (for events the scheduler does not make)."""
        for listener in self._scheduler.listeners:
            listener._deliver(event)

    async def wait_for_workers(
        self, count: int = 1, *, task_type: str | None = None
    ) -> None:
        """Wait until at least *count* workers are active (supporting *task_type*, if
        given). Bound it with the caller's own cancel scope, e.g. ``trio.fail_after``."""
        await trio.lowlevel.checkpoint()
        scheduler = self._scheduler
        while scheduler.count_active(task_type) < count:
            scheduler.check_open()
            await scheduler.pool_changed.park()

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
        scheduler = self._scheduler
        entry = scheduler.new_entry(task, options)
        if self._store.durable:
            raise RuntimeError(
                f"submit_nowait() cannot wait for {self._store!r} to make the task "
                "durable: use await submit()"
            )
        scheduler.check_admissible(entry)
        stored = self._store.add_nowait(scheduler.record_of(entry))
        if stored.id != entry.handle.id:
            return self._live_handle(stored.id) or _finished_handle(stored)
        scheduler.admit(entry)
        return entry.handle

    async def dispatch_to(self, worker_id: str, task: Task) -> TaskHandle[Any]:
        """Submit *task* to run on one worker only (queued while it is busy). Raises
        :class:`WorkerNotFound` if no connected worker has that id; if the worker goes
        away, the task fails with ``WORKER_DISCONNECTED`` rather than move elsewhere."""
        record = self._scheduler.pool.get(worker_id)
        if record is None or record.state is WorkerState.DEAD:
            raise WorkerNotFound(f"no connected worker {worker_id!r}")
        return await self._submit(task, {}, constraint=OnWorker(worker_id))

    async def dispatch_with_tag(self, tag: str, task: Task) -> TaskHandle[Any]:
        """Submit *task* to run only on workers registered with *tag*."""
        return await self._submit(task, {}, constraint=WithTag(tag))

    async def _submit(
        self,
        task: Task | TaskSpec[Any],
        options: dict[str, Any],
        *,
        constraint: Constraint = None,
    ) -> TaskHandle[Any]:
        await trio.lowlevel.checkpoint_if_cancelled()
        entry = self._scheduler.new_entry(task, options, constraint=constraint)
        handle = await self._admit(entry)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return handle

    async def _admit(self, entry: TaskEntry) -> TaskHandle[Any]:
        """Wait for room in a full queue (backpressure), keep the task in the store,
        then admit it. Returns its handle -- or, if the store already holds a task
        with its idempotency key, that task's."""
        scheduler = self._scheduler
        while not scheduler.has_room(entry):
            await scheduler.queue_space.park()
            scheduler.check_open()
        record = scheduler.record_of(entry)
        store = self._store
        if store.durable:
            self._adding[entry.handle.id] = entry
            try:
                stored = await store.add(record)  # once written, admitted: shielded
            finally:
                del self._adding[entry.handle.id]
        else:
            stored = store.add_nowait(record)
        if stored.id != entry.handle.id:
            return await self.handle(stored.id)
        scheduler.admit(entry)
        return entry.handle

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
        entry = self._scheduler.new_entry(
            task, options, caller_deadline=trio.current_effective_deadline()
        )
        handle = entry.handle
        try:
            handle = await self._admit(entry)
            result = await handle.result()
            if result.status is not TaskStatus.COMPLETED:
                # If our own deadline is what ended it, let Trio say so.
                await trio.lowlevel.checkpoint_if_cancelled()
            # Not `await handle.value()`: a second wait, on a set event, would cost a
            # task switch for nothing.
            return handle.value_nowait()
        except trio.Cancelled:
            handle.cancel_nowait("the caller was cancelled")
            raise

    @asynccontextmanager
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
    ) -> AsyncIterator[AsyncIterator[BatchResult]]:
        """Run one task per payload, at most *concurrency* at a time::

            async with dispatcher.map("resize", images, concurrency=8) as results:
                async for item in results:
                    ...

        Each :class:`BatchResult` comes as its task ends (completion order; ``index``
        tells which payload). A failed task is a result, not an exception: the batch
        goes on. Payloads are read lazily, as room frees up. The caller's deadline
        bounds every task, as in :meth:`run`. Leaving the block -- early, by an error,
        by cancellation -- cancels the tasks still in flight.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        in_flight: dict[TaskHandle[Any], tuple[int, Any]] = {}
        new_task = partial(
            Task.new,
            priority=priority,
            timeout_ms=timeout_ms,
            max_retries=max_retries,
            trace_id=trace_id,
        )
        results = self._map(task_type, payloads, concurrency, in_flight, new_task)
        try:
            yield results
        finally:
            await results.aclose()  # no checkpoint: it is suspended, with no cleanup
            for handle in in_flight:
                handle.cancel_nowait("the batch was abandoned")

    async def _map(
        self,
        task_type: str,
        payloads: Iterable[Any],
        concurrency: int,
        in_flight: dict[TaskHandle[Any], tuple[int, Any]],
        new_task: Callable[[str, Any], Task],
    ) -> AsyncGenerator[BatchResult, None]:
        done, finished = trio.open_memory_channel[TaskHandle[Any]](math.inf)
        items = enumerate(payloads)
        while True:
            deadline = trio.current_effective_deadline()
            while len(in_flight) < concurrency:
                item = next(items, None)
                if item is None:
                    break
                entry = self._scheduler.new_entry(
                    new_task(task_type, item[1]),
                    {},
                    caller_deadline=deadline,
                    on_done=done.send_nowait,
                )
                in_flight[entry.handle] = item
                await self._admit(entry)
            if not in_flight:
                return
            try:  # results that came together are taken without a wait each
                handle = finished.receive_nowait()
            except trio.WouldBlock:
                handle = await finished.receive()
            index, payload = in_flight.pop(handle)
            yield BatchResult(index, payload, handle.result_nowait())

    # ------------------------------------------------------------ workflows

    async def run_workflow(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Run *workflow* with *inputs* (by name) and return its outputs (by name).

        Each step runs as soon as the steps it depends on have completed; its tasks
        go through :meth:`submit` (or :meth:`dispatch_to` / :meth:`dispatch_with_tag`
        for a pinned step) and any worker serving the task type may take them. Each
        step's transitions are :class:`StepEvent` s on :meth:`events`.

        Structured: every running step is a task in a nursery inside this call. If a
        step fails, with ``fail_fast`` (the default) the others still running are
        cancelled -- their tasks killed on their workers -- before this raises
        :class:`WorkflowFailed`, which names the step; without, the steps that do not
        depend on it run first. Cancelling the caller kills the running tasks too.
        Raises :class:`WorkflowError` (naming the step) before anything runs if the
        workflow is invalid or an input it uses is missing.

        *run_id* (default: a new one) names the run: each task carries the
        idempotency key ``workflow/<workflow name>/<run_id>/<step path>``, so that
        running the same workflow with the same inputs and *run_id* again -- after a
        crash, on a durable store -- reuses the result of every step that completed
        (within the store's retention) and runs only the rest.
        """
        from ..workflow._runner import run_workflow

        return await run_workflow(self, workflow, inputs or {}, run_id=run_id)

    # ---------------------------------------------------------------- store

    async def handle(self, task_id: uuid.UUID) -> TaskHandle[Any]:
        """The handle of task *task_id*: the live one if the task is unfinished, or
        one resolved with its outcome from the store -- also after a restart, for as
        long as the store's retention keeps it. Typed results come back unstructured
        (as the worker sent them). Raises :class:`TaskNotFound`."""
        handle = self._live_handle(task_id)
        if handle is not None:
            await trio.lowlevel.checkpoint()
            return handle
        record = await self._store.get(task_id)
        handle = self._live_handle(task_id)  # it may have been admitted meanwhile
        if handle is not None:
            return handle
        if record is None:
            raise TaskNotFound(f"no task {task_id}")
        if not record.done:  # waiting in the store, and no page resumed it yet
            entry = self._scheduler.resumed_entry(record)
            self._scheduler.admit(entry)
            return entry.handle
        return _finished_handle(record)

    def _live_handle(self, task_id: uuid.UUID) -> TaskHandle[Any] | None:
        entry = self._scheduler.entry(task_id) or self._adding.get(task_id)
        return None if entry is None else entry.handle

    async def tasks(
        self,
        *,
        status: TaskStatus | None = None,
        task_type: str | None = None,
        submitted_after: float | None = None,
        submitted_before: float | None = None,
        limit: int = 100,
        after: uuid.UUID | None = None,
    ) -> list[TaskRecord]:
        """A page of the store's tasks, in submission order: up to *limit*, starting
        after task *after* (the last of the previous page), filtered by *status*,
        *task_type* and submission time (wall-clock seconds: at or after
        *submitted_after*, before *submitted_before*). A live task's record may lag
        its handle by one group commit."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit!r}")
        return await self._store.tasks(
            status=status,
            task_type=task_type,
            submitted_after=submitted_after,
            submitted_before=submitted_before,
            limit=limit,
            after=after,
        )

    async def dead_letters(
        self, *, limit: int = 100, after: uuid.UUID | None = None
    ) -> list[TaskRecord]:
        """Tasks that ended ``Failed`` -- their retries used up, or an error that is
        not retryable -- with every attempt; see :meth:`requeue` and :meth:`purge`."""
        return await self.tasks(status=TaskStatus.FAILED, limit=limit, after=after)

    async def requeue(self, task_id: uuid.UUID) -> TaskHandle[Any]:
        """Send a task that ended without completing (a dead letter, a timeout, a
        cancellation) round again, with a fresh deadline and retry budget; return its
        new handle. Raises :class:`TaskNotFound`, or ``ValueError`` if it is unfinished
        or completed."""
        self._scheduler.check_open()
        record = await self._store.requeue(task_id, time.time())
        entry = self._scheduler.resumed_entry(record)
        self._scheduler.admit(entry)
        return entry.handle

    async def purge(
        self,
        task_ids: Iterable[uuid.UUID] | None = None,
        *,
        status: TaskStatus | None = TaskStatus.FAILED,
        older_than: float | None = None,
    ) -> int:
        """Delete finished tasks from the store -- by default every dead letter --
        and return how many: those among *task_ids* (if given), with *status* (``None``:
        any), finished more than *older_than* seconds ago (if given). Unfinished tasks
        are never deleted."""
        return await self._store.purge(
            task_ids=None if task_ids is None else frozenset(task_ids),
            status=status,
            finished_before=None if older_than is None else time.time() - older_than,
        )

    async def _resume(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Queue the tasks the store holds waiting, a page at a time: the first
        before the dispatcher is handed out, the rest meanwhile (so that a backlog of
        any size delays the first dispatch by one page). :meth:`handle` resumes a task
        it is asked for that no page has reached yet."""
        scheduler = self._scheduler
        cursor: object | None = None
        started = False
        while True:
            page, cursor = await self._store.unfinished(cursor, _RESUME_PAGE)
            for record in page:
                if self._live_handle(record.id) is None:
                    scheduler.admit(scheduler.resumed_entry(record))
            if not started:
                task_status.started()
                started = True
            if cursor is None:
                return

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
        self._scheduler.check_open()
        spec = stdio_spec(
            argv, tasks, worker_id=worker_id, max_concurrency=max_concurrency, tags=tags,
            env=env, cwd=cwd, stop_grace=stop_grace,
        )  # fmt: skip
        await self._supervisors.start(spec, restart)
        return spec.worker_id

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
        self._scheduler.check_open()
        spec = docker_spec(
            image, tasks, command=command, worker_id=worker_id,
            max_concurrency=max_concurrency, tags=tags, env=env, volumes=volumes,
            network=network, memory=memory, cpus=cpus, read_only=read_only, user=user,
            stop_grace=stop_grace, docker=docker,
        )  # fmt: skip
        await self._supervisors.start(spec, restart)
        return spec.worker_id

    async def spawn_wasm(
        self,
        module_path: str | os.PathLike[str],
        tasks: Sequence[str],
        *,
        worker_id: str | None = None,
        max_concurrency: int = 2,
        max_memory_bytes: int | None = None,
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
        dispatcher closes. It registers with *tags* and ``digest:sha256:<hex>``, the
        module's hash, by which workflow steps cache its results. Needs the ``wasm``
        extra (``pip install 'trio-pipe[wasm]'``).
        Raises ``InvalidSpec`` for an invalid option, ``OSError`` if the module cannot
        be read, ``ValueError`` if it is not a WASI command.
        """
        self._scheduler.check_open()
        try:
            from ..transports import _wasm as wasm
        except ImportError as exc:
            raise ImportError(
                f"spawn_wasm needs wasmtime ({exc}); "
                "install it with: pip install 'trio-pipe[wasm]'"
            ) from exc
        if worker_id is None:
            stem = os.path.splitext(os.path.basename(str(module_path)))[0]
            worker_id = derive_worker_id("wasm", stem)
        spec = wasm.wasm_spec(
            module_path,
            worker_id=validate_worker_id(worker_id),
            max_concurrency=max_concurrency,
            max_memory_bytes=(
                wasm.DEFAULT_MAX_MEMORY_BYTES
                if max_memory_bytes is None
                else max_memory_bytes
            ),
            timeout_ms=timeout_ms,
            fuel=fuel,
            env_allow=env_allow,
            preopen_dirs=preopen_dirs,
            preopen_writable=preopen_writable,
            cache_dir=cache_dir,
            max_output_bytes=self.config.max_frame_size,
        )
        digest = hashlib.sha256(await trio.Path(module_path).read_bytes()).hexdigest()
        registration = spawned_registration(
            spec.worker_id,
            tasks,
            spec.max_concurrency,
            (*tags, f"digest:sha256:{digest}"),
            language="wasm",
        )
        await self._supervisors.start_wasm(spec, registration)
        return spec.worker_id

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
        self._scheduler.check_open()
        host = validate_hostname(host)
        user = validate_username(user)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidSpec("port", "must be an int from 1 to 65535", repr(port)[:64])
        remote = remote_command(command, env)
        keys = client_key_paths(client_keys)
        if not connect_timeout > 0 or not keepalive_interval > 0:
            raise ValueError("connect_timeout and keepalive_interval must be > 0")
        if keepalive_count_max < 1:
            raise ValueError("keepalive_count_max must be >= 1")
        registration = spawned_registration(
            worker_id or derive_worker_id("ssh", host), tasks, max_concurrency, tags
        )
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
        pool = await self._supervisors.ssh_pool()
        spec = ssh.SshSpec(target, remote, registration, pool, stop_grace=stop_grace)
        await self._supervisors.start(spec, restart, nursery=pool.nursery)
        return spec.worker_id

    def drain_worker(self, worker_id: str) -> None:
        """Send *worker_id* no new tasks; its running tasks finish normally."""
        record = self._scheduler.pool.get(worker_id)
        if record is None:
            raise WorkerNotFound(f"no connected worker {worker_id!r}")
        self._scheduler.drain(record)

    def remove_worker(self, worker_id: str) -> None:
        """Disconnect *worker_id* now; its unfinished tasks are retried elsewhere
        (``WORKER_REMOVED``). A spawned worker's process is stopped for good. A dead
        worker's record is forgotten."""
        record = self._scheduler.pool.get(worker_id)
        if record is not None:
            record.removed = True
            record.evict("removed by the dispatcher")
        spawned = self._supervisors.stop(worker_id)
        if (
            record is None
            and not spawned
            and not self._scheduler.pool.forget_dead(worker_id)
        ):
            raise WorkerNotFound(f"no worker {worker_id!r}")

    def attach_worker(
        self,
        channel: FrameChannel,
        *,
        registration: WorkerRegistration | None = None,
        transport: str = "custom",
        claims: Claims | None = None,
    ) -> None:
        """Start :meth:`serve_worker` for *channel* in the dispatcher's nursery."""
        self._scheduler.check_open()
        self._sessions.start_soon(
            partial(
                self.serve_worker,
                channel,
                registration=registration,
                transport=transport,
                claims=claims,
            )
        )

    async def serve_worker(
        self,
        channel: FrameChannel,
        *,
        registration: WorkerRegistration | None = None,
        transport: str = "websocket",
        claims: Claims | None = None,
    ) -> None:
        """Run one worker's session over *channel* until it ends.

        Without *registration*, the worker must send ``WorkerRegister`` within
        ``registration_timeout``. Its session is watched: no message within
        ``heartbeat_timeout`` declares it dead, as does a closed connection or a
        malformed frame (the connection is then closed with the reason). A worker
        registered by the dispatcher (a spawned process, which may never heartbeat) is
        watched from its first heartbeat on; until then its process is its liveness.
        However the session ends, its unfinished tasks are retried or resolved at once.

        With *claims* (what the connection's credentials allow: the listener passes
        those its authenticator gave), a registration outside them, or under the id
        of a live worker with other credentials, is refused with close code 1008.
        """
        await serve_worker(
            self._scheduler,
            channel,
            registration=registration,
            transport=transport,
            claims=claims,
        )


def _finished_handle(record: TaskRecord) -> TaskHandle[Any]:
    """A handle resolved with the outcome *record* holds."""
    assert record.result is not None

    def cannot_cancel(_: TaskHandle[Any], __: str) -> None:
        pass  # it has ended

    handle: TaskHandle[Any] = TaskHandle(
        record.task, structure=lambda payload: payload, cancel=cannot_cancel
    )
    ended = [a for a in record.attempts[record.counted_from :] if a.status is not None]
    handle.attempts.extend(map(Attempt.of, ended))
    if ended:
        handle.worker_id = ended[-1].worker_id
    handle._resolve(record.result)
    return handle
