"""The kit's scripted dispatcher: one worker process under test, and everything it says.

The harness launches the worker command, serves it (a WebSocket listener on
127.0.0.1, or the process's stdin/stdout), and records every frame the worker writes
as a :class:`Received` entry in one list, together with connection and process
events. Cases send what they like (a signal to the worker process included) and wait
for entries matching a predicate; a case may launch the worker anew, with more in its
environment. The harness answers ``WorkerRegister`` and ``Heartbeat`` itself, as the
dispatcher does.

It uses trio-websocket directly rather than trio_pipe's own transports: the kit checks
workers against the protocol, not against one implementation of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio
import trio_websocket

from ..protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    EOF,
    Heartbeat,
    HeartbeatAck,
    LineBuffer,
    Message,
    Overlong,
    Task,
    TaskDispatch,
    TaskMetadata,
    TaskResult,
    TaskResultMessage,
    WorkerRegister,
    WorkerRegistered,
    encode,
)
from ._canonical import check_canonical

__all__ = ["CaseFailed", "Harness", "Received"]

MAX_CONCURRENCY = 2
HEARTBEAT_MS = 250
_SERVICE_RESTART = 1012
_LOG_TAIL = 40
_OUTPUT_KEPT = 1000  # lines of a launch's output kept whole, for a case to search
_MAX_LINE = 16 * 1024 * 1024
_CHUNK = 64 * 1024


class CaseFailed(Exception):
    """A case's expectation did not hold; the message says what and what came."""


@attrs.frozen(eq=False)  # an occurrence: equal only to itself, found by identity
class Received:
    """One thing the harness saw: a worker message, or an event (``message`` None)."""

    at: float
    message: Message | None = None
    event: str = ""
    problems: tuple[str, ...] = ()

    @property
    def result(self) -> TaskResult | None:
        """The task result this entry carries, if it is one."""
        return self.message.result if isinstance(self.message, TaskResultMessage) else None

    def result_of(self, task: Task) -> TaskResult | None:
        result = self.result
        return result if result is not None and result.task_id == task.id else None


class Harness:
    """The scripted dispatcher for one run of the kit."""

    def __init__(self, command: Sequence[str], *, stdio: bool, time_scale: float) -> None:
        if not command:
            raise ValueError("no worker command given")
        self.command = list(command)
        self.stdio = stdio
        self.time_scale = time_scale
        self.worker_id = f"conformance-{uuid.uuid4().hex[:8]}"
        self.received: list[Received] = []
        self.exit_status: int | None = None
        self.log: deque[str] = deque(maxlen=_LOG_TAIL)
        #: Everything the worker process of the latest launch wrote (its first lines).
        self.output: list[str] = []
        #: The token the worker must send, ``Authorization: Bearer <token>``: a
        #: handshake without it is refused with HTTP 401 (``None``: no check).
        self.expected_token: str | None = None
        self.port = 0
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._process: trio.Process | None = None
        self._ws: trio_websocket.WebSocketConnection | None = None
        # The connection on which the worker registered: tasks go only there.
        self._registered: trio_websocket.WebSocketConnection | None = None
        self._listener_scope: trio.CancelScope | None = None
        self._stdin_lock = trio.Lock()

    # -- running ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def seconds(self, limit: float) -> float:
        """A time limit of the contract, stretched by ``--time-scale``."""
        return limit * self.time_scale

    async def start(self, nursery: trio.Nursery) -> None:
        """Listen (WebSocket mode) and launch the worker under test."""
        self._nursery = nursery
        if not self.stdio:
            await nursery.start(self._listen)
        await self._launch({})

    async def relaunch(self, env: dict[str, str]) -> int:
        """Stop the worker process (if it still runs) and launch it anew, with *env*
        added to its environment. Returns the mark (:meth:`mark`) of what the new
        process does: it may connect before this returns."""
        await self.stop()
        since = self.mark()
        await self._launch(env)
        return since

    def signal(self, signum: signal.Signals) -> None:
        """Send *signum* to the worker process (the command's own process: a wrapper
        script must ``exec`` the worker, as an orchestrator signals only that)."""
        process = self._process
        if process is None or process.returncode is not None:
            raise CaseFailed(f"cannot send {signum.name}: the worker is not running")
        process.send_signal(signum)

    async def _launch(self, extra_env: dict[str, str]) -> None:
        nursery = self._nursery
        assert nursery is not None
        env = dict(os.environ)
        for variable in ("TRIO_PIPE_URL", "TRIO_PIPE_DRAIN_TIMEOUT_MS", "TRIO_PIPE_TOKEN"):
            env.pop(variable, None)
        env |= {
            "TRIO_PIPE_WORKER_ID": self.worker_id,
            "TRIO_PIPE_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
            "TRIO_PIPE_HEARTBEAT_MS": str(HEARTBEAT_MS),
            **extra_env,
        }
        argv = list(self.command)
        if not self.stdio:
            env["TRIO_PIPE_URL"] = self.url
            argv.append(self.url)
        # No process until the new one runs: a watcher of the old one that is still
        # reading its last output must not take the old one's exit for the new one's.
        self._process = None
        self.exit_status = None
        self.output = []
        self._registered = None
        try:
            self._process = await trio.lowlevel.open_process(
                argv,
                env=env,
                stdin=subprocess.PIPE if self.stdio else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if self.stdio else subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise CaseFailed(f"cannot start {argv[0]!r}: {exc}") from exc
        process = self._process
        assert process.stdout is not None
        stdout_read = trio.Event()
        if self.stdio:
            assert process.stderr is not None
            nursery.start_soon(
                self._read_lines,
                process.stdout,
                self._on_stdout_line,
                "stdout ended",
                stdout_read,
            )
            nursery.start_soon(self._read_lines, process.stderr, self._on_log_line)
        else:
            nursery.start_soon(
                self._read_lines, process.stdout, self._on_log_line, "", stdout_read
            )
        nursery.start_soon(self._watch_process, process, stdout_read)

    async def stop(self) -> None:
        """End the worker: close its input, then kill its process group if it lingers."""
        process = self._process
        if process is None:
            return
        with trio.move_on_after(self.seconds(3)):
            if process.stdin is not None:
                await process.stdin.aclose()
            if self._ws is not None:
                await self._ws.aclose()
            await process.wait()
        # Whatever is left of its session: the worker itself if it lingers, and its
        # own children.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    # -- what the worker said -----------------------------------------------------------

    def mark(self) -> int:
        """The index of the next entry: wait for things that happen from now on."""
        return len(self.received)

    async def expect(
        self,
        wanted: Callable[[Received], bool],
        *,
        since: int,
        within: float,
        what: str,
        after_exit: bool = False,
    ) -> Received:
        """The first entry from index *since* on for which *wanted* is true, waiting up
        to *within* seconds (scaled). Raises :class:`CaseFailed` saying *what* was
        awaited when the time passes or, unless *after_exit* (for what may still
        arrive from a process that has exited), when the worker exits first."""
        found: list[Received] = []
        scanned = since

        def scan() -> bool:
            nonlocal scanned
            for entry in self.received[scanned:]:
                scanned += 1
                if wanted(entry):
                    found.append(entry)
                    return True
            return False

        await self._wait(scan, within=within, what=what, after_exit=after_exit)
        return found[0]

    async def _wait(
        self,
        condition: Callable[[], bool],
        *,
        within: float,
        what: str,
        after_exit: bool = False,
    ) -> None:
        """Wait until *condition* holds; it is checked after every new entry."""
        with trio.move_on_after(self.seconds(within)):
            while not condition():
                if self.exit_status is not None and not after_exit:
                    raise CaseFailed(
                        f"{what}: the worker exited first {self._exit_detail()}"
                    )
                await self._changed.wait()
            return
        raise CaseFailed(f"no {what} within {self.seconds(within):g} s")

    async def result(
        self, task: Task, *, since: int, within: float, what: str = ""
    ) -> Received:
        """The entry carrying *task*'s result (*what* names it in a failure)."""
        return await self.expect(
            lambda entry: entry.result_of(task) is not None,
            since=since,
            within=within,
            what=what or f"result for the {task.task_type!r} task",
        )

    async def next_heartbeat(self, *, since: int, within: float = 2) -> Heartbeat:
        entry = await self.expect(
            lambda entry: isinstance(entry.message, Heartbeat),
            since=since,
            within=within,
            what="heartbeat",
        )
        assert isinstance(entry.message, Heartbeat)
        return entry.message

    def problems_since(self, index: int) -> list[str]:
        return [problem for entry in self.received[index:] for problem in entry.problems]

    def _record(self, entry: Received) -> None:
        self.received.append(entry)
        self._changed.set()
        self._changed = trio.Event()

    def _exit_detail(self) -> str:
        tail = " | ".join(list(self.log)[-3:])
        return f"(status {self.exit_status})" + (
            f"; its last output: {tail}" if tail else ""
        )

    def _on_frame(self, frame: str) -> Message | None:
        """Record a frame from the worker; return the dispatcher's automatic answer."""
        message, problems = check_canonical(frame)
        self._record(Received(trio.current_time(), message, problems=tuple(problems)))
        if isinstance(message, WorkerRegister):
            return WorkerRegistered(message.registration.worker_id)
        if isinstance(message, Heartbeat):
            return HeartbeatAck()
        return None

    async def _on_stdout_line(self, line: str) -> None:
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if isinstance(value, dict) and "type" in value:
            reply = self._on_frame(line)
            if reply is not None:
                with contextlib.suppress(CaseFailed):  # stdin closed: the exit is recorded
                    await self.send(reply)
        else:  # the worker's own log output, allowed on stdout in stdio mode
            await self._on_log_line(line)

    async def _on_log_line(self, line: str) -> None:
        self.log.append(line)
        if len(self.output) < _OUTPUT_KEPT:
            self.output.append(line)

    # -- what the kit says ----------------------------------------------------------------

    async def send(self, message: Message | str) -> None:
        """Send a message, or a raw frame (a line in stdio mode) exactly as given."""
        frame = message if isinstance(message, str) else encode(message)
        if self.stdio:
            process = self._process
            assert process is not None and process.stdin is not None
            try:
                async with self._stdin_lock:
                    await process.stdin.send_all(frame.encode() + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise CaseFailed(f"cannot write to the worker's stdin: {exc!r}") from None
            return
        ws = await self._connection()
        try:
            await ws.send_message(frame)
        except trio_websocket.ConnectionClosed:
            raise CaseFailed("the worker closed the connection") from None

    async def dispatch(
        self, task_type: str, payload: Any = None, *, timeout_ms: int = 30_000
    ) -> Task:
        task = Task(uuid.uuid4(), task_type, payload, TaskMetadata(timeout_ms=timeout_ms))
        await self.send(TaskDispatch(task))
        return task

    async def _connection(self) -> trio_websocket.WebSocketConnection:
        def connected() -> bool:
            ws = self._ws
            return ws is not None and not ws.closed and self._registered is ws

        await self._wait(connected, within=10, what="registered connection from the worker")
        assert self._ws is not None
        return self._ws

    # -- WebSocket mode -------------------------------------------------------------------

    async def restart_listener(self, pause: float) -> None:
        """Close the connection as a restarting dispatcher would (1012), stop
        listening for *pause* seconds, and listen again on the same port."""
        assert self._nursery is not None and self._listener_scope is not None
        self._listener_scope.cancel()
        if self._ws is not None:
            await self._ws.aclose(_SERVICE_RESTART, "dispatcher restarting")
        await trio.sleep(pause)
        await self._nursery.start(self._listen)

    async def _listen(self, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.CancelScope() as self._listener_scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started()
            # Connections live in the harness's nursery, past a listener restart.
            await trio.serve_listeners(
                self._serve, listeners, handler_nursery=self._nursery
            )

    async def _serve(self, stream: trio.SocketStream) -> None:
        """Serve one connection from the worker until it closes."""
        assert self._nursery is not None
        try:
            request = await trio_websocket.wrap_server_stream(
                self._nursery, stream, max_message_size=DEFAULT_MAX_FRAME_SIZE
            )
            refusal = self._check_token(request)
            if refusal is not None:
                # Recorded first: the worker may exit before reject() returns here.
                self._record(Received(trio.current_time(), event=f"refused 401: {refusal}"))
                await request.reject(401, body=refusal.encode())
                return
            ws = await request.accept()
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError, OSError):
            return
        self._ws = ws
        self._record(Received(trio.current_time(), event="connected"))
        try:
            while True:
                frame = await ws.get_message()
                if isinstance(frame, bytes):
                    problem = "a binary frame: messages are JSON text frames"
                    self._record(Received(trio.current_time(), problems=(problem,)))
                    continue
                reply = self._on_frame(frame)
                if reply is not None:
                    await ws.send_message(encode(reply))
                    if isinstance(reply, WorkerRegistered):
                        self._registered = ws
                        self._record(Received(trio.current_time(), event="registered"))
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            detail = f"closed {reason.code}" if reason is not None else "closed"
            self._record(Received(trio.current_time(), event=detail))
        # trio.serve_listeners closes the stream when this returns.

    def _check_token(self, request: trio_websocket.WebSocketRequest) -> str | None:
        """Why the handshake's ``Authorization`` header is not the expected token's
        (the body of the 401 answer), or ``None`` when it is, or nothing is expected."""
        expected = self.expected_token
        if expected is None:
            return None
        sent = [
            value for name, value in request.headers if name.lower() == b"authorization"
        ]
        if not sent:
            return "no token: the handshake has no Authorization header"
        if sent != [f"Bearer {expected}".encode()]:
            return "invalid token: Authorization is not 'Bearer <TRIO_PIPE_TOKEN>'"
        return None

    # -- process --------------------------------------------------------------------------

    async def _watch_process(self, process: trio.Process, stdout_read: trio.Event) -> None:
        """Record the worker's exit once its output is read to the end too (what it
        wrote before exiting counts as before the exit), or a second later if a
        process it left behind holds its stdout open."""
        status = await process.wait()
        with trio.move_on_after(1):
            await stdout_read.wait()
        if process is self._process:
            self.exit_status = status
        self._record(Received(trio.current_time(), event=f"exited {status}"))

    async def _read_lines(
        self,
        stream: trio.abc.ReceiveStream,
        on_line: Callable[[str], Awaitable[None]],
        at_end: str = "",
        ended: trio.Event | None = None,
    ) -> None:
        lines = LineBuffer(max_line=_MAX_LINE)
        while True:
            line = lines.next_line()
            if isinstance(line, bytes):
                await on_line(line.decode(errors="replace").rstrip("\r"))
            elif isinstance(line, Overlong):
                self.log.append(f"(a line of more than {_MAX_LINE} bytes, dropped)")
            elif line is EOF:
                if at_end:
                    self._record(Received(trio.current_time(), event=at_end))
                if ended is not None:
                    ended.set()
                return
            elif chunk := await _receive(stream):
                lines.feed(chunk)
            else:
                lines.feed_eof()


async def _receive(stream: trio.abc.ReceiveStream) -> bytes:
    try:
        return bytes(await stream.receive_some(_CHUNK))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""
