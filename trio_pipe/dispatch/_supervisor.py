"""Supervision of spawned worker processes: run, watch, restart, stop.

One supervisor task per spawned worker lives in the dispatcher's nursery tree. It
starts the worker through its :class:`Launcher`, serves it as a worker session over the
channel the launcher gives, and when the process exits decides by its
:class:`RestartPolicy` whether to start it again, after a backoff.

A launcher is what differs between kinds of spawned workers: :class:`ProcessSpec`
starts a local process (stdio and Docker workers); the SSH bridge
(``trio_pipe.transports._ssh``) starts a remote command over a shared SSH connection.
Its :meth:`~Launcher.launch` is an async context manager that yields the process's
channel and, on exit however it happens (session over, error, cancellation), stops the
process, shielded; the channel then tells the process's return code.

Stopping a local process goes: close stdin (after a graceful ``Shutdown`` line when the
dispatcher is closing), wait ``stop_grace`` seconds, SIGTERM the process group, wait
again, SIGKILL the group. The process runs in its own session, so a shell worker's
children go with it.
"""

from __future__ import annotations

import collections
import enum
import logging
import os
import random
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import attrs
import trio

from ..protocol import WorkerRegistration
from ..transports import StdioChannel, WorkerChannel
from ..transports._stdio import log_stderr
from ._events import WorkerEventKind

__all__ = [
    "Launcher",
    "ProcessChannel",
    "ProcessSpec",
    "Restart",
    "RestartPolicy",
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
        ceiling = min(self.backoff * 2.0 ** (restart_number - 1), self.backoff_max)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


DEFAULT_RESTART = RestartPolicy()


class ProcessChannel(WorkerChannel, Protocol):
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


@attrs.frozen
class ProcessSpec:
    """What to run for one spawned local process worker, and how it registers."""

    argv: Sequence[str]
    registration: WorkerRegistration
    transport: str = "stdio"
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    stop_grace: float = 5.0
    # Run before each start and after each stop (e.g. ``docker rm -f NAME``: a
    # container outlives a killed ``docker run`` client). Its failure is ignored.
    cleanup: Sequence[str] | None = None

    @property
    def worker_id(self) -> str:
        return self.registration.worker_id

    @property
    def program(self) -> str:
        return self.argv[0]

    @asynccontextmanager
    async def launch(self) -> AsyncIterator[StdioChannel]:
        """Start the process; on exit make sure it is gone (however this ends:
        normally, by error or by cancellation)."""
        env = None if self.env is None else {**os.environ, **self.env}
        await _cleanup(self)
        process = await trio.lowlevel.open_process(
            list(self.argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.cwd,
            start_new_session=True,  # its own process group, so children go with it
        )
        try:
            async with trio.open_nursery() as nursery:
                assert process.stderr is not None
                nursery.start_soon(log_stderr, process.stderr, self.worker_id)
                yield StdioChannel(process, worker_id=self.worker_id)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await _stop(process, grace=self.stop_grace)
                await _cleanup(self)


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


async def _cleanup(spec: ProcessSpec) -> None:
    if spec.cleanup is None:
        return
    with trio.move_on_after(spec.stop_grace + 10):
        try:
            done = await trio.run_process(
                list(spec.cleanup), capture_stdout=True, capture_stderr=True, check=False
            )
        except OSError as exc:  # e.g. no docker executable: the start will say so
            log.debug("worker %s: cleanup %s: %s", spec.worker_id, spec.cleanup, exc)
            return
        if done.returncode:
            log.debug(
                "worker %s: cleanup %s: %s", spec.worker_id, spec.cleanup, done.stderr
            )


async def _stop(process: trio.Process, *, grace: float) -> None:
    """End of input, then SIGTERM, then SIGKILL, *grace* seconds apart, until the
    process has exited; then SIGKILL whatever is left of its process group."""
    with trio.move_on_after(grace):
        if process.stdin is not None:
            await process.stdin.aclose()
        await process.wait()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.returncode is not None:
            break
        _signal_group(process.pid, sig)
        with trio.move_on_after(grace):
            await process.wait()
    await process.wait()  # after SIGKILL: promptly
    _signal_group(process.pid, signal.SIGKILL)  # children it left behind


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
