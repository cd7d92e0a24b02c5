"""The SSH bridge: the one module of trio_pipe that touches asyncio.

asyncssh is an asyncio library and trio_pipe is Trio. trio-asyncio runs an asyncio event
loop inside the Trio run (``trio_asyncio.open_loop()``) and turns each asyncio awaitable
into one a Trio task can await, with Trio's cancellation (``aio_as_trio``). Every call
into asyncssh goes through this module (``_aio`` below); nothing else in trio_pipe
imports asyncio, asyncssh or trio_asyncio, and this module itself is imported only by
``Dispatcher.spawn_ssh`` (and on first use of ``trio_pipe.INSECURE_ACCEPT_ANY_HOST_KEY``),
so ``import trio_pipe`` works without the ``ssh`` extra.

The pieces, and where they live in the dispatcher's nursery tree::

    supervisors nursery
    └── serve_ssh_pool            started on the first spawn_ssh; holds the asyncio loop
        │                         open for the rest of the dispatcher's life
        └── SshConnectionPool.nursery
            ├── supervisor(worker a)   SshSpec.launch(): a process on a shared connection
            └── supervisor(worker b)

Because every SSH worker's supervisor runs *inside* the ``open_loop()`` block, the
asyncio loop outlives every use of it: when the dispatcher closes, each supervisor's
shielded stop (end of input, signals, channel close) and each connection's close still
run on a live loop, and the loop is closed last.

* :class:`SshConnectionPool` -- connections keyed by :class:`SshTarget` (host, port,
  user, known hosts, client keys), shared by every worker process on that target and
  reference-counted: a connection is closed when the last process on it has stopped. A
  connection found closed (its link died) is replaced by a fresh one for the next
  process; the old one is closed when its last process has stopped.
* :class:`SshSpec` -- the supervisor's launcher for one SSH worker.
* :class:`SshChannel` -- a :class:`~trio_pipe.transports.LineChannel` (the same line
  semantics as a local stdio worker) over the remote process's stdin and stdout.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final, ParamSpec, TypeAlias, TypeVar, final

import asyncssh
import attrs
import trio
import trio_asyncio

from .._errors import HostKeyError, InvalidSpec, SshError
from .._validation import validate_path
from ..protocol import DEFAULT_MAX_FRAME_SIZE, WorkerRegistration
from ._stdio import LineChannel, log_stderr

__all__ = [
    "INSECURE_ACCEPT_ANY_HOST_KEY",
    "checked_known_hosts",
    "HostKeyError",
    "KnownHosts",
    "SshChannel",
    "SshConnectionPool",
    "SshError",
    "SshPoolStats",
    "SshSpec",
    "SshTarget",
    "serve_ssh_pool",
]

log = logging.getLogger("trio_pipe.ssh")

P = ParamSpec("P")
T = TypeVar("T")

_CHUNK: Final = 65536
_CLOSE_TIMEOUT: Final = 5.0  # closing a connection: then it is aborted


@final
class _InsecureAcceptAnyHostKey:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INSECURE_ACCEPT_ANY_HOST_KEY"


#: Pass as ``known_hosts`` to accept *any* host key, unchecked. For tests against a
#: throwaway server only: it lets anyone on the path impersonate the host and receive
#: the worker's tasks. ``known_hosts=None`` is refused so that this is never an accident.
INSECURE_ACCEPT_ANY_HOST_KEY: Final = _InsecureAcceptAnyHostKey()

#: What ``spawn_ssh`` accepts as ``known_hosts``.
KnownHosts: TypeAlias = (
    str | os.PathLike[str] | asyncssh.SSHKnownHosts | _InsecureAcceptAnyHostKey
)


def checked_known_hosts(
    value: object,
) -> str | asyncssh.SSHKnownHosts | _InsecureAcceptAnyHostKey:
    """*value* as ``SshTarget.known_hosts``: a validated path (made absolute), an
    ``asyncssh.SSHKnownHosts``, or the insecure sentinel; ``None`` is refused."""
    if value is None:
        raise InvalidSpec(
            "known_hosts",
            "is required: a known_hosts file (or asyncssh.SSHKnownHosts) holding the "
            "host's key; None would accept any host key (for a throwaway test server "
            "only, pass trio_pipe.INSECURE_ACCEPT_ANY_HOST_KEY)",
        )
    if isinstance(value, asyncssh.SSHKnownHosts | _InsecureAcceptAnyHostKey):
        return value
    return os.path.abspath(validate_path(value, field="known_hosts"))


async def _aio(fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await the asyncio coroutine function *fn* from Trio (cancellable, as Trio is)."""
    result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
    return result


# -- connections ------------------------------------------------------------------------


@attrs.frozen
class SshTarget:
    """Where to connect and how to check who answers: the identity of a shared
    connection. Values are validated by ``spawn_ssh`` before one is made.

    The connection options (timeouts, keepalives) are not part of the identity: a
    shared connection keeps those of the worker that opened it.
    """

    host: str
    port: int
    user: str
    known_hosts: str | asyncssh.SSHKnownHosts | _InsecureAcceptAnyHostKey
    client_keys: tuple[str, ...]
    connect_timeout: float = attrs.field(default=10.0, eq=False)
    keepalive_interval: float = attrs.field(default=15.0, eq=False)
    keepalive_count_max: int = attrs.field(default=3, eq=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


@attrs.frozen
class SshPoolStats:
    """``connections``: open SSH connections; ``processes``: worker processes on them."""

    connections: int
    processes: int


@attrs.define(eq=False)
class _Shared:
    target: SshTarget
    conn: asyncssh.SSHClientConnection
    users: int = 0


class SshConnectionPool:
    """The dispatcher's SSH connections, and the nursery of its SSH supervisors.

    Made by :func:`serve_ssh_pool`. Owned by the dispatcher; state changes happen in
    methods without checkpoints between the check and the change, so no lock guards
    them, except one per target that makes concurrent starts share one connect.
    """

    def __init__(self, nursery: trio.Nursery, loop: asyncio.AbstractEventLoop) -> None:
        #: Where the supervisors of SSH workers run: inside the asyncio loop's lifetime.
        self.nursery = nursery
        #: The trio-asyncio loop. A task started in ``nursery`` inherits the context of
        #: the task that started it, not the loop's: see :meth:`SshSpec.launch`.
        self.loop = loop
        self._live: dict[SshTarget, _Shared] = {}  # the connection new processes join
        self._open: set[_Shared] = set()  # every connection not yet closed
        self._connecting: dict[SshTarget, trio.Lock] = {}

    def stats(self) -> SshPoolStats:
        return SshPoolStats(
            connections=len(self._open),
            processes=sum(shared.users for shared in self._open),
        )

    async def acquire(self, target: SshTarget) -> _Shared:
        """A connection to *target* for one more process: the live one, or a new one
        if there is none or it is closed. Raises :class:`SshError`."""
        lock = self._connecting.setdefault(target, trio.Lock())
        async with lock:
            shared = self._live.get(target)
            if shared is None or shared.conn.is_closed():
                shared = _Shared(target, await _connect(target))
                self._live[target] = shared
                self._open.add(shared)
                log.info("ssh %s: connected", target)
            shared.users += 1
            return shared

    async def release(self, shared: _Shared) -> None:
        """One process less on *shared*; the last one closes the connection."""
        shared.users -= 1
        if shared.users > 0:
            return
        if self._live.get(shared.target) is shared:
            del self._live[shared.target]
        self._open.discard(shared)
        await _close_connection(shared)

    async def aclose(self) -> None:
        """Close every connection left (none, once every supervisor has stopped)."""
        while self._open:
            await _close_connection(self._open.pop())
        self._live.clear()


async def _connect(target: SshTarget) -> asyncssh.SSHClientConnection:
    """Open a connection with strict host key checking (unless the insecure sentinel
    was given), the given client keys only (no agent, no ``~/.ssh/config``, no
    passwords) and keepalives."""
    known_hosts = (
        None if target.known_hosts is INSECURE_ACCEPT_ANY_HOST_KEY else target.known_hosts
    )
    if known_hosts is None:
        log.warning("ssh %s: host key NOT checked (INSECURE_ACCEPT_ANY_HOST_KEY)", target)
    # asyncssh bounds the TCP connect, key exchange and authentication by
    # connect_timeout; the outer bound is a safety net around the bridge itself.
    with trio.move_on_after(target.connect_timeout + _CLOSE_TIMEOUT):
        try:
            return await _aio(
                asyncssh.connect,
                target.host,
                target.port,
                username=target.user,
                known_hosts=known_hosts,
                client_keys=list(target.client_keys),
                agent_path=None,
                config=[],
                password=None,
                kbdint_auth=False,
                connect_timeout=target.connect_timeout,
                keepalive_interval=target.keepalive_interval,
                keepalive_count_max=target.keepalive_count_max,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(
                f"ssh {target}: the host key is unknown or has changed "
                f"(not verifiable against known_hosts): {exc.reason}"
            ) from exc
        except asyncssh.Error as exc:
            raise SshError(f"ssh {target}: {exc.reason}") from exc
        except (OSError, asyncssh.KeyImportError) as exc:
            raise SshError(f"ssh {target}: {exc}") from exc
    raise SshError(f"ssh {target}: no connection within {target.connect_timeout} s")


async def _close_connection(shared: _Shared) -> None:
    conn = shared.conn
    conn.close()
    with trio.move_on_after(_CLOSE_TIMEOUT):
        try:
            await _aio(conn.wait_closed)
        except (asyncssh.Error, OSError):
            pass
        log.info("ssh %s: connection closed", shared.target)
        return
    conn.abort()
    log.warning("ssh %s: connection did not close in time; aborted", shared.target)


@asynccontextmanager
async def _lease(pool: SshConnectionPool, target: SshTarget) -> AsyncIterator[_Shared]:
    shared = await pool.acquire(target)
    try:
        yield shared
    finally:
        with trio.CancelScope(shield=True):
            await pool.release(shared)


async def serve_ssh_pool(
    *, task_status: trio.TaskStatus[SshConnectionPool] = trio.TASK_STATUS_IGNORED
) -> None:
    """Hold an asyncio loop open for SSH, and in it the nursery where SSH workers are
    supervised, until cancelled; ``task_status.started(pool)``. Every connection is
    closed before the loop is."""
    async with trio_asyncio.open_loop() as loop:
        pool: SshConnectionPool | None = None
        try:
            async with trio.open_nursery() as nursery:
                pool = SshConnectionPool(nursery, loop)
                task_status.started(pool)
                await trio.sleep_forever()
        finally:
            if pool is not None:
                with trio.CancelScope(shield=True):
                    await pool.aclose()


# -- the remote process as a channel ----------------------------------------------------


class _SshReceiveStream(trio.abc.ReceiveStream):
    """A remote process's stdout or stderr as a Trio stream."""

    def __init__(self, reader: asyncssh.SSHReader[bytes]) -> None:
        self._reader = reader

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await _aio(self._reader.read, max_bytes or _CHUNK)
        except (asyncssh.Error, OSError) as exc:
            raise trio.BrokenResourceError(f"ssh channel: {exc!r}") from exc

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()  # the channel is closed by the launcher


async def _write(writer: asyncssh.SSHWriter[bytes], data: bytes) -> None:
    writer.write(data)
    await writer.drain()


class _SshSendStream(trio.abc.SendStream):
    """A remote process's stdin as a Trio stream; ``aclose`` sends end of file."""

    def __init__(self, writer: asyncssh.SSHWriter[bytes]) -> None:
        self._writer = writer

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await _aio(_write, self._writer, bytes(data))
        except (asyncssh.Error, OSError) as exc:
            raise trio.BrokenResourceError(f"ssh channel: {exc!r}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        try:
            await _aio(self._writer.drain)
        except (asyncssh.Error, OSError) as exc:
            raise trio.BrokenResourceError(f"ssh channel: {exc!r}") from exc

    async def aclose(self) -> None:
        try:
            self._writer.write_eof()
        except (asyncssh.Error, OSError):
            pass  # closed already, or the connection is gone: input has ended either way
        await trio.lowlevel.checkpoint()


class SshChannel(LineChannel):
    """A :class:`FrameChannel` over a remote process's stdin and stdout, one JSON
    message per line, exactly as a local stdio worker (non-message lines are logged)."""

    def __init__(
        self,
        process: asyncssh.SSHClientProcess[bytes],
        *,
        worker_id: str,
        peer: str,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._process = process
        super().__init__(
            _SshSendStream(process.stdin),
            _SshReceiveStream(process.stdout),
            peer=peer,
            name=worker_id,
            max_frame_size=max_frame_size,
        )

    @property
    def returncode(self) -> int | None:
        """The remote exit status (negative: the signal that killed it), once the
        process has exited; ``None`` while it runs or if the connection was lost."""
        return self._process.returncode


# -- the launcher -----------------------------------------------------------------------


@attrs.frozen
class SshSpec:
    """The launcher of one SSH worker: *command* (a complete, validated and quoted
    remote command line) run on a connection to *target* from *pool*."""

    target: SshTarget
    command: str
    registration: WorkerRegistration
    pool: SshConnectionPool = attrs.field(eq=False, repr=False)
    stop_grace: float = 5.0
    transport: str = "ssh"

    @property
    def worker_id(self) -> str:
        return self.registration.worker_id

    @property
    def program(self) -> str:
        return f"ssh {self.target}"

    @asynccontextmanager
    async def launch(self) -> AsyncIterator[SshChannel]:
        """Start the command on a shared connection; on exit, stop it and release the
        connection (closing it if this was its last process)."""
        # The supervisor's task (and the session tasks it starts) reach asyncio through
        # the pool's loop: trio-asyncio finds it in this context variable.
        token = trio_asyncio.current_loop.set(self.pool.loop)
        try:
            async with self._launch() as channel:
                yield channel
        finally:
            trio_asyncio.current_loop.reset(token)

    @asynccontextmanager
    async def _launch(self) -> AsyncIterator[SshChannel]:
        async with _lease(self.pool, self.target) as shared:
            process = await _start_process(shared, self.command)
            channel = SshChannel(process, worker_id=self.worker_id, peer=self.program)
            try:
                async with trio.open_nursery() as nursery:
                    stderr = _SshReceiveStream(process.stderr)
                    nursery.start_soon(log_stderr, stderr, self.worker_id)
                    yield channel
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(process, channel, grace=self.stop_grace)


async def _start_process(shared: _Shared, command: str) -> asyncssh.SSHClientProcess[bytes]:
    """Run *command* in a new session channel: no pty (a pty would rewrite the byte
    stream), no agent or X11 forwarding."""
    target = shared.target
    with trio.move_on_after(target.connect_timeout):
        try:
            return await _aio(
                shared.conn.create_process, command, encoding=None, request_pty=False
            )
        except (asyncssh.Error, OSError) as exc:
            raise SshError(f"ssh {target}: could not start the command: {exc}") from exc
    raise SshError(f"ssh {target}: no session within {target.connect_timeout} s")


async def _stop(
    process: asyncssh.SSHClientProcess[bytes], channel: SshChannel, *, grace: float
) -> None:
    """End of input, then SIGTERM, then SIGKILL, *grace* seconds apart, until the
    channel closes (the process exited); then close the channel ourselves.

    Signals travel as SSH ``signal`` requests, which servers may ignore: OpenSSH honours
    them only for sessions with privilege separation, i.e. not for root logins. A
    remote process that ignores end of input *and* cannot be signalled outlives its
    channel; see docs/ssh.md.
    """

    async def closed_within(seconds: float) -> bool:
        with trio.move_on_after(seconds):
            try:
                await _aio(process.wait_closed)
            except (asyncssh.Error, OSError):
                pass
            return True
        return False

    await channel.aclose()
    if await closed_within(grace):
        return
    for signal in ("TERM", "KILL"):
        try:
            process.send_signal(signal)
        except (asyncssh.Error, OSError):
            break  # the channel is no longer open
        if await closed_within(grace):
            return
    process.close()
    await closed_within(grace)
