"""A hostile-client fuzzer against a live dispatcher, over real sockets.

A seeded generator (the seed is in the failure message: rerun with
``TRIO_PIPE_FUZZ_SEED``) plays many clients at once. Some break the opening handshake
(random bytes, truncated or overlong requests). The others register and send a batch of
frames in one write: harmless-looking ones that keep the session alive (heartbeats and
backpressure with random values, unknown fields, odd casing), then one that ends it --
random text, a truncated frame, an oversized one, deep JSON, invalid UTF-8, a binary
frame, a message out of order, broken WebSocket framing, a frame cut off mid-way.
Frames are built by hand (masked with a zero key, which RFC 6455 allows), so that the
client costs little beside the dispatcher.

Meanwhile a real worker process completes tasks. Afterwards the dispatcher is alive,
every one of those tasks completed, and its memory grew by less than RSS_BOUND.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import resource
from pathlib import Path

import pytest
import trio
from helpers import start_python_worker

import trio_pipe
from trio_pipe import Task

SESSIONS = 400  # clients that register, then send a batch
FRAMES_PER_SESSION = 260
BROKEN_HANDSHAKES = 1000
CLIENTS_AT_ONCE = 16
MAX_FRAME = 64 * 1024
RSS_BOUND = 64 * 1024 * 1024  # bytes: what the dispatcher (and these clients) may keep
WAIT = 60  # seconds: generous, for real processes on a busy machine

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame, masked with the zero key (the payload goes as it is)."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = bytes([first, 0x80 | size])
    elif size < 65536:
        header = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def text(message: object) -> bytes:
    return ws_frame(0x1, json.dumps(message).encode())


def upgrade_request(port: int) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class Generator:
    """Everything the hostile clients send, from one seeded random source."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.frames = 0  # frames sent, in all
        self.handshakes = 0

    def junk(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def broken_handshake(self, port: int) -> bytes:
        rng = self.rng
        request = upgrade_request(port)
        kind = rng.randrange(4)
        if kind == 0:
            return self.junk(rng.randint(1, 2000))
        if kind == 1:
            return request[: rng.randrange(len(request))]
        if kind == 2:  # a header too long for the dispatcher to read
            return request[:-2] + b"X-Pad: " + b"a" * rng.randint(70_000, 100_000)
        return request.replace(b"websocket", self.junk(8).hex().encode(), 1)

    def registration(self, worker_id: str) -> bytes:
        rng = self.rng
        return text(
            {
                "type": rng.choice(["WorkerRegister", "workerregister"]),
                "registration": {
                    "workerId": worker_id,
                    "supportedTasks": [f"fuzz-{i}" for i in range(rng.randint(1, 50))],
                    "maxConcurrency": rng.randint(1, 10_000),
                    "language": rng.choice(["Python", "Go", {"Other": "x"}]),
                    "tags": [self.junk(4).hex() for _ in range(rng.randint(0, 5))],
                    "unknownField": rng.random(),
                },
            }
        )

    def harmless(self, worker_id: str) -> bytes:
        """A frame the session survives."""
        rng = self.rng
        if rng.random() < 0.7:
            return text(
                {
                    "type": rng.choice(["Heartbeat", "HEARTBEAT", "heartbeat"]),
                    "payload": {
                        "workerId": worker_id,
                        "activeTasks": rng.randint(0, 2**31),
                        "capacity": rng.randint(0, 10),
                        "uptimeSeconds": rng.randint(0, 2**40),
                        self.junk(3).hex(): [rng.random()] * rng.randint(0, 5),
                    },
                }
            )
        return text(
            {
                "type": "Backpressure",
                "signal": {
                    "workerId": worker_id,
                    "currentLoad": rng.uniform(-1e9, 1e9),
                    "shouldThrottle": rng.random() < 0.5,
                },
            }
        )

    def fatal(self, worker_id: str) -> tuple[bytes, bool]:
        """A frame that ends the session, and whether the client then stops writing
        (the frame is cut off: the dispatcher waits for the rest)."""
        rng = self.rng
        kind = rng.randrange(10)
        if kind == 0:
            return ws_frame(0x1, self.junk(rng.randint(1, 300)).hex().encode()), False
        if kind == 1:
            whole = json.dumps({"type": "Heartbeat", "payload": {"workerId": worker_id}})
            return ws_frame(0x1, whole[: rng.randrange(len(whole))].encode()), False
        if kind == 2:
            return ws_frame(0x1, b" " * rng.randint(MAX_FRAME + 1, 2 * MAX_FRAME)), False
        if kind == 3:
            depth = rng.randint(200, 100_000)
            return ws_frame(0x1, b"[" * depth + b"]" * rng.choice([0, depth])), False
        if kind == 4:  # invalid UTF-8 in a text frame
            return ws_frame(
                0x1, b'{"type":"' + b"\xff\xfe\xc0" + self.junk(8) + b'"}'
            ), False
        if kind == 5:
            return ws_frame(0x2, self.junk(rng.randint(1, 100))), False
        if kind == 6:  # out of order: a second registration, a stranger's result...
            return rng.choice(
                [
                    self.registration(worker_id),
                    text({"type": "HeartbeatAck"}),
                    text({"type": "Shutdown", "graceful": True}),
                    text(
                        {
                            "type": "TaskResult",
                            "result": {
                                "taskId": "00000000-0000-4000-8000-000000000000",
                                "status": rng.choice(["Completed", "Running", "Pending"]),
                                "workerId": worker_id,
                            },
                        }
                    ),
                ]
            ), False
        if kind == 7:  # broken framing: reserved bits, an unknown opcode
            return bytes([rng.choice([0xF1, 0x83, 0x8B])]) + self.junk(20), False
        if kind == 8:  # a control frame too long
            return ws_frame(0x9, self.junk(200)), False
        cut = ws_frame(0x1, b"x" * 1000)
        return cut[: rng.randint(1, 500)], True

    def session(self, worker_id: str) -> tuple[bytes, bool]:
        """What one registered client writes, at once; and whether it is cut off."""
        rng = self.rng
        batch = []
        if rng.random() < 0.9:  # (else: not even registered first)
            batch.append(self.registration(worker_id))
        batch += [self.harmless(worker_id) for _ in range(FRAMES_PER_SESSION - 2)]
        fatal, cut = self.fatal(worker_id)
        batch.append(fatal)
        self.frames += len(batch)
        return b"".join(batch), cut


async def read_until_closed(stream: trio.SocketStream) -> None:
    """Read the dispatcher's frames until its close frame, or the end of the stream."""
    buffer = bytearray()
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        buffer += data
        while len(buffer) >= 2:
            opcode, size = buffer[0] & 0x0F, buffer[1] & 0x7F
            start = 2
            if size == 126:
                start = 4
            elif size == 127:
                start = 10
            if len(buffer) < start:
                break
            if start > 2:
                size = int.from_bytes(buffer[2:start], "big")
            if len(buffer) < start + size:
                break
            if opcode == 0x8:
                return
            del buffer[: start + size]


async def hostile_session(port: int, generator: Generator, worker_id: str) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(upgrade_request(port))
        head = b""
        while b"\r\n\r\n" not in head:
            data = await stream.receive_some(4096)
            assert data, "the dispatcher closed a valid handshake"
            head += data
        assert head.startswith(b"HTTP/1.1 101")
        batch, cut = generator.session(worker_id)
        try:
            await stream.send_all(batch)
            if cut:
                return  # closes the stream mid-frame
            await read_until_closed(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # closed on us before it had all of it: fine


async def broken_handshake(port: int, generator: Generator) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        generator.handshakes += 1
        try:
            await stream.send_all(generator.broken_handshake(port))
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_hostile_clients_cannot_stop_a_worker_or_grow_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed = int(os.environ.get("TRIO_PIPE_FUZZ_SEED", random.randrange(2**32)))
    generator = Generator(seed)
    caplog.set_level(logging.CRITICAL, logger="trio_pipe")  # one line per attack
    completed = 0
    async with trio_pipe.open_dispatcher(max_frame_size=MAX_FRAME) as d:
        async with trio.open_nursery() as nursery:
            await start_python_worker(nursery, d.url, "legit", max_concurrency=4)
            with trio.fail_after(WAIT):
                await d.wait_for_workers(1)
            gc.collect()
            before = rss()
            attacks = [("handshake", i) for i in range(BROKEN_HANDSHAKES)]
            attacks += [("session", i) for i in range(SESSIONS)]
            random.Random(seed).shuffle(attacks)
            send, receive = trio.open_memory_channel[tuple[str, int]](len(attacks))
            for attack in attacks:
                send.send_nowait(attack)
            send.close()

            async def client() -> None:
                async for kind, number in receive:
                    if kind == "handshake":
                        await broken_handshake(d.port, generator)
                    else:
                        await hostile_session(d.port, generator, f"fuzz-{number}")

            async def legitimate() -> None:
                nonlocal completed
                while True:
                    assert await d.run(Task.new("echo", completed)) == completed
                    completed += 1

            with trio.fail_after(240):
                async with trio.open_nursery() as clients:
                    for _ in range(CLIENTS_AT_ONCE):
                        clients.start_soon(client)
                    nursery.start_soon(legitimate)
            # The dispatcher is alive: the worker still completes tasks.
            with trio.fail_after(WAIT):
                for i in range(10):
                    assert await d.run(Task.new("echo", -i)) == -i
            states = {w.worker_id: w.state for w in d.workers()}
            gc.collect()
            grown = rss() - before
            nursery.cancel_scope.cancel()
    context = f"seed {seed}"
    assert generator.frames >= 100_000, context
    assert completed >= 10, context
    assert states["legit"] is trio_pipe.WorkerState.ACTIVE, context
    assert grown < RSS_BOUND, f"{context}: RSS grew by {grown} bytes"
