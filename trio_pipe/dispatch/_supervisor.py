"""Supervision of spawned worker processes: run, watch, restart, stop.

One supervisor task per spawned worker lives in the dispatcher's nursery tree. It
starts the worker through its :class:`Launcher`, serves it as a worker session over the
channel the launcher gives, and when the process exits decides by its
:class:`RestartPolicy` whether to start it again, after a backoff.

A launcher is what differs between kinds of spawned workers (built in
``trio_pipe.transports._spawn``): ``ProcessSpec`` starts a local process (stdio and
Docker workers); the SSH bridge (``trio_pipe.transports._ssh``) starts a remote command
over a shared SSH connection. Its :meth:`~Launcher.launch` is an async context manager
that yields the process's channel and, on exit however it happens (session over,
error, cancellation), stops the process, shielded; the channel then tells the
process's return code.

:class:`SupervisorSet` holds one dispatcher's supervisors, its in-process WASM
workers and the SSH connection pool they share.
"""

from __future__ import annotations

import collections
import enum
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from .._backoff import backoff_delay
from ..protocol import WorkerRegistration
from ..transports import FrameChannel
from ._events import WorkerEventKind

if TYPE_CHECKING:
    from ..transports._ssh import SshConnectionPool
    from ..transports._wasm import WasmSpec

__all__ = [
    "DEFAULT_RESTART",
    "Launcher",
    "ProcessChannel",
    "Restart",
    "RestartPolicy",
    "SupervisorSet",
    "supervise",
]

log = logging.getLogger("trio_pipe.supervisor")


class Restart(enum.Enum):
    NEVER = "never"
    ON_FAILURE = "on-failure"  # restart unless the process exited with status 0
    ALWAYS = "always"


@attrs.frozen
class RestartPolicy:
    """When and how fast a spawned worker is restarted.

    At most ``max_restarts`` restarts within any ``window`` seconds; past that the
    supervisor gives up (logged, and the worker stays dead). The n-th restart in a row
    waits between half and all of ``min(backoff * 2**(n-1), backoff_max)`` seconds.
    """

    mode: Restart = Restart.ON_FAILURE
    max_restarts: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    window: float = 60.0
    backoff: float = 0.5
    backoff_max: float = 30.0

    def wants_restart(self, returncode: int | None) -> bool:
        if self.mode is Restart.ALWAYS:
            return True
        return self.mode is Restart.ON_FAILURE and returncode != 0

    def delay(self, restart_number: int) -> float:
        return backoff_delay(restart_number - 1, self.backoff, self.backoff_max)


DEFAULT_RESTART = RestartPolicy()


class ProcessChannel(FrameChannel, Protocol):
    """The channel to a spawned process, which knows how the process ended."""

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited (negative: killed by that
        signal); ``None`` while it runs, or if it is unknown (its connection was lost)."""
        ...


class Launcher(Protocol):
    """How to start one spawned worker, and how it registers.

    ``launch()`` starts the process and yields its channel; leaving the context stops
    the process (shielded, bounded by ``stop_grace``), however the context is left.
    A failure to start raises ``OSError`` (the supervisor counts it as a failed run,
    except on the very first start, where it propagates to the caller).
    """

    @property
    def registration(self) -> WorkerRegistration: ...

    @property
    def transport(self) -> str: ...

    @property
    def worker_id(self) -> str: ...

    @property
    def program(self) -> str:
        """What is run, for logs."""
        ...

    def launch(self) -> AbstractAsyncContextManager[ProcessChannel]: ...


ServeWorker = Callable[..., Awaitable[None]]


async def supervise(
    spec: Launcher,
    policy: RestartPolicy,
    serve_worker: ServeWorker,
    is_closing: Callable[[], bool],
    report: Callable[[WorkerEventKind, str], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run *spec*'s process as a worker until the policy says stop (or cancelled).

    ``task_status.started()`` is called once the first process is running; if it
    cannot even be started, the error propagates to whoever started the supervisor.
    A later start failure counts as a failed run. Restarts and giving up are
    reported through *report* (as worker events).
    """
    restarts: collections.deque[float] = collections.deque()
    first = True
    while True:
        try:
            returncode = await _run_once(spec, serve_worker, task_status if first else None)
        except OSError as exc:
            if first:
                raise
            log.error(
                "worker %s: could not start %s: %s", spec.worker_id, spec.program, exc
            )
            returncode = None
        first = False
        if is_closing() or not policy.wants_restart(returncode):
            log.info(
                "worker %s: process exited (%s); not restarting", spec.worker_id, returncode
            )
            return
        now = trio.current_time()
        restarts.append(now)
        while restarts and restarts[0] < now - policy.window:
            restarts.popleft()
        if len(restarts) > policy.max_restarts:
            reason = f"{policy.max_restarts} restarts within {policy.window} s"
            log.error("worker %s: %s; giving up", spec.worker_id, reason)
            report(WorkerEventKind.GAVE_UP, reason)
            return
        delay = policy.delay(len(restarts))
        reason = f"process exited ({returncode}); restarting in {delay:.2f} s"
        log.warning("worker %s: %s", spec.worker_id, reason)
        report(WorkerEventKind.RESTARTING, reason)
        await trio.sleep(delay)


async def _run_once(
    spec: Launcher,
    serve_worker: ServeWorker,
    task_status: trio.TaskStatus[None] | None,
) -> int | None:
    """Start the process, serve it until its session ends, and make sure it is gone
    (the launcher's context sees to that, however this ends)."""
    async with spec.launch() as channel:
        if task_status is not None:
            task_status.started()
        await serve_worker(
            channel, registration=spec.registration, transport=spec.transport
        )
    return channel.returncode


class SupervisorSet:
    """The spawned workers of one dispatcher, each a task in *nursery* under a cancel
    scope of its own (so that one can be stopped), and the SSH connection pool they
    share, started there on first use.

    *serve_worker* serves a launched worker's channel; *is_closing* tells a supervisor
    not to restart; *report* turns restarts into worker events.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        serve_worker: ServeWorker,
        is_closing: Callable[[], bool],
        report: Callable[[str, WorkerEventKind, str], None],
    ) -> None:
        self._nursery = nursery
        self._serve_worker = serve_worker
        self._is_closing = is_closing
        self._report = report
        self._scopes: dict[str, trio.CancelScope] = {}
        self._ssh_pool: SshConnectionPool | None = None
        self._ssh_pool_lock = trio.Lock()

    def __contains__(self, worker_id: str) -> bool:
        return worker_id in self._scopes

    def stop(self, worker_id: str) -> bool:
        """Stop a spawned worker for good (its process, then its supervisor); False if
        there is no such worker."""
        scope = self._scopes.get(worker_id)
        if scope is not None:
            scope.cancel()
        return scope is not None

    async def start(
        self, spec: Launcher, policy: RestartPolicy, *, nursery: trio.Nursery | None = None
    ) -> None:
        """Start *spec*'s process and supervise it (in *nursery*, by default the
        supervisors' own: an SSH worker's runs in its pool's, inside its asyncio
        loop); returns once it runs. Raises ``ValueError`` if a worker with its id is
        already supervised, and what the first start raises (``OSError``)."""
        await (nursery or self._nursery).start(
            self._run, spec.worker_id, self._supervise, spec, policy
        )

    async def start_wasm(self, spec: WasmSpec, registration: WorkerRegistration) -> None:
        """Start an in-process WASM worker: its channel (the compiled module, one
        runner per task, the epoch ticker) around one session, until stopped."""
        await self._nursery.start(
            self._run, spec.worker_id, self._serve_wasm, spec, registration
        )

    async def ssh_pool(self) -> SshConnectionPool:
        """The SSH pool, started on first use in the supervisors' nursery."""
        async with self._ssh_pool_lock:
            if self._ssh_pool is None:
                from ..transports._ssh import serve_ssh_pool

                self._ssh_pool = await self._nursery.start(serve_ssh_pool)
            return self._ssh_pool

    async def _run(
        self,
        worker_id: str,
        body: Callable[..., Awaitable[None]],
        *args: object,
        task_status: trio.TaskStatus[None],
    ) -> None:
        if worker_id in self._scopes:
            raise ValueError(f"a worker {worker_id!r} is already supervised")
        with trio.CancelScope() as scope:
            self._scopes[worker_id] = scope
            try:
                await body(*args, task_status=task_status)
            finally:
                del self._scopes[worker_id]

    async def _supervise(
        self, spec: Launcher, policy: RestartPolicy, *, task_status: trio.TaskStatus[None]
    ) -> None:
        await supervise(
            spec,
            policy,
            self._serve_worker,
            self._is_closing,
            lambda kind, reason: self._report(spec.worker_id, kind, reason),
            task_status=task_status,
        )

    async def _serve_wasm(
        self,
        spec: WasmSpec,
        registration: WorkerRegistration,
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        from ..transports._wasm_channel import open_wasm_channel

        async with open_wasm_channel(spec) as channel:
            task_status.started()
            await self._serve_worker(channel, registration=registration, transport="wasm")
