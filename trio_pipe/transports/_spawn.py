"""What the dispatcher runs for each kind of spawned worker, built by pure functions.

Each ``*_spec`` function validates every value a caller gives (``InvalidSpec``) and
returns a launcher for the supervisor: :class:`ProcessSpec` for a local process (a
stdio worker, or ``docker run -i`` for a Docker worker); the SSH bridge's ``SshSpec``
is built from :func:`remote_command` and :func:`client_key_paths`, and a WASM
worker's spec by ``_wasm.wasm_spec``. Nothing here starts anything but
:meth:`ProcessSpec.launch`.

Stopping a local process goes: close stdin (after a graceful ``Shutdown`` line when the
dispatcher is closing), wait ``stop_grace`` seconds, SIGTERM the process group, wait
again, SIGKILL the group. The process runs in its own session, so a shell worker's
children go with it.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from .._validation import (
    InvalidSpec,
    derive_worker_id,
    validate_argv,
    validate_cpus,
    validate_docker_user,
    validate_env,
    validate_image,
    validate_memory,
    validate_network,
    validate_path,
    validate_remote_command,
    validate_volume,
    validate_worker_id,
)
from ..protocol import WorkerRegistration
from ._stdio import StdioChannel, log_stderr

__all__ = [
    "ProcessSpec",
    "client_key_paths",
    "docker_spec",
    "remote_command",
    "spawned_registration",
    "stdio_spec",
]

log = logging.getLogger("trio_pipe.supervisor")


def spawned_registration(
    worker_id: str,
    tasks: Sequence[str],
    max_concurrency: int,
    tags: Sequence[str],
    *,
    language: str = "",
) -> WorkerRegistration:
    """The registration the dispatcher makes for a worker it spawns."""
    return WorkerRegistration(
        worker_id=validate_worker_id(worker_id),
        supported_tasks=tuple(tasks),
        max_concurrency=max_concurrency,
        language=language,
        tags=tuple(tags),
    )


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


def stdio_spec(
    argv: Sequence[str],
    tasks: Sequence[str],
    *,
    worker_id: str | None,
    max_concurrency: int,
    tags: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    stop_grace: float,
) -> ProcessSpec:
    """*argv* run directly (never through a shell) as a stdio worker for *tasks*; its
    id by default is the program's name and a random suffix."""
    argv = validate_argv(argv)
    if worker_id is None:
        worker_id = derive_worker_id(os.path.basename(argv[0]) or "worker")
    return ProcessSpec(
        argv,
        spawned_registration(worker_id, tasks, max_concurrency, tags),
        env=None if env is None else validate_env(env),
        cwd=None if cwd is None else validate_path(cwd),
        stop_grace=stop_grace,
    )


def docker_spec(
    image: str,
    tasks: Sequence[str],
    *,
    command: Sequence[str] | None,
    worker_id: str | None,
    max_concurrency: int,
    tags: Sequence[str],
    env: Mapping[str, str] | None,
    volumes: Sequence[str],
    network: str | None,
    memory: int | str | None,
    cpus: float | None,
    read_only: bool,
    user: str | None,
    stop_grace: float,
    docker: str,
) -> ProcessSpec:
    """``docker run -i --rm --name trio-pipe-<worker id> [options] IMAGE [COMMAND...]``
    as a stdio worker, the container removed before each start and after each stop."""
    image = validate_image(image)
    worker_id = validate_worker_id(worker_id or derive_worker_id("docker"))
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
    return ProcessSpec(
        argv,
        spawned_registration(worker_id, tasks, max_concurrency, tags),
        transport="docker",
        stop_grace=stop_grace,
        cleanup=[docker, "rm", "--force", name],
    )


def remote_command(command: object, env: Mapping[str, str] | None) -> str:
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


def client_key_paths(keys: object) -> tuple[str, ...]:
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
