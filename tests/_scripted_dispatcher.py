"""A scripted dispatcher for worker tests: the test drives each connection by hand.

``ScriptedDispatcher.serve`` listens with trio-websocket on 127.0.0.1 (real sockets);
``ScriptedDispatcher.memory_connector`` gives ``run_worker_on`` a connector that speaks
WebSocket over ``trio.testing.memory_stream_pair()`` (for MockClock tests): the worker's
own client against a trio-websocket server.
Either way each accepted worker connection arrives on ``peers`` as a :class:`Peer`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
import trio.testing
from trio_websocket import (
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
    wrap_server_stream,
)

from trio_pipe.protocol import (
    Backpressure,
    Heartbeat,
    Message,
    Task,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
)
from trio_pipe.transports import FrameChannel, WebSocketChannel
from trio_pipe.transports._websocket import connect_websocket
from trio_pipe.worker._transport import Connector

M = TypeVar("M")


class Peer:
    """The dispatcher's end of one worker connection."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.registration: WorkerRegistration | None = None

    async def send(self, message: Message) -> None:
        await self.ws.send_message(encode(message))

    async def send_raw(self, frame: str) -> None:
        await self.ws.send_message(frame)

    async def receive(self) -> Message:
        return decode(await self.ws.get_message())

    async def next(self, kind: type[M], *, skip: tuple[type, ...] = (Heartbeat,)) -> M:
        """The next message that is not of a skipped kind; it must be a *kind*."""
        while True:
            message = await self.receive()
            if not isinstance(message, skip):
                assert isinstance(message, kind), f"expected {kind.__name__}, got {message}"
                return message

    async def register(self) -> WorkerRegistration:
        message = await self.next(WorkerRegister)
        self.registration = message.registration
        await self.send(WorkerRegistered(worker_id=message.registration.worker_id))
        return message.registration

    async def dispatch(self, task_type: str, payload: Any = None, **kwargs: Any) -> Task:
        task = Task.new(task_type, payload, **kwargs)
        await self.send(TaskDispatch(task))
        return task

    async def result(self) -> TaskResult:
        """The next TaskResult, skipping heartbeats and backpressure signals."""
        message = await self.next(TaskResultMessage, skip=(Heartbeat, Backpressure))
        return message.result

    async def run(self, task_type: str, payload: Any = None, **kwargs: Any) -> TaskResult:
        task = await self.dispatch(task_type, payload, **kwargs)
        result = await self.result()
        assert result.task_id == task.id
        return result


class ScriptedDispatcher:
    def __init__(self, *, answer_registration: bool = True) -> None:
        self.answer_registration = answer_registration
        self._send, self.peers = trio.open_memory_channel[Peer](math.inf)

    async def _handle(self, request: WebSocketRequest) -> None:
        peer = Peer(await request.accept())
        if self.answer_registration:
            await peer.register()
        await self._send.send(peer)
        await trio.sleep_forever()  # the test owns the connection from here

    async def serve(self, nursery: trio.Nursery) -> str:
        """Listen on 127.0.0.1 on a free port; return the ws:// URL."""
        server = await nursery.start(serve_websocket, self._handle, "127.0.0.1", 0, None)
        return f"ws://127.0.0.1:{server.port}/"

    def memory_connector(
        self, nursery: trio.Nursery, *, connections: list[GatedConnection] | None = None
    ) -> Connector:
        """A connector over in-memory streams; the server side runs in *nursery*."""

        async def serve_side(stream: trio.testing.MemoryStapledStream) -> None:  # type: ignore[type-arg]
            request = await wrap_server_stream(nursery, stream)
            await self._handle(request)

        @asynccontextmanager
        async def connect() -> AsyncIterator[FrameChannel]:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(serve_side, server)
            ws = await connect_websocket(client, "ws://dispatcher/")
            connection: FrameChannel = WebSocketChannel(ws)
            if connections is not None:
                gated = GatedConnection(connection)
                connections.append(gated)
                connection = gated
            try:
                yield connection
            finally:
                await ws.aclose()

        return connect


class GatedConnection:
    """A FrameChannel whose writes can be held at a gate, to control write timing."""

    lenient = False

    def __init__(self, inner: FrameChannel) -> None:
        self.inner = inner
        self.peer = inner.peer
        self.gate: trio.Event | None = None
        self.blocked = trio.Event()

    async def send_all(self, frames: Sequence[str]) -> None:
        if self.gate is not None:
            self.blocked.set()
            await self.gate.wait()
        await self.inner.send_all(frames)

    async def receive(self) -> str | bytes:
        return await self.inner.receive()

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        await self.inner.aclose(reason, protocol_error=protocol_error)


class Controlled:
    """A handler that runs until the test releases it, keyed by ``payload["key"]``;
    records when each call starts and whether it observed cancellation."""

    def __init__(self) -> None:
        self.started: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.release: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.cancelled: defaultdict[str, trio.Event] = defaultdict(trio.Event)

    async def __call__(self, payload: Any) -> Any:
        key = payload["key"]
        self.started[key].set()
        try:
            await self.release[key].wait()
        except trio.Cancelled:
            self.cancelled[key].set()
            raise
        return {"done": key}
