"""A dispatcher in a process limited to 64 file descriptors, flooded with idle
connections by a helper process (tests/test_attacks.py runs this script).

First with ``max_connections`` set above the descriptors on purpose, so that accept
fails with EMFILE; then with the default limits. Each part ends when a worker has
registered; the dispatcher's warnings go to stderr, the outcome to stdout."""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
from typing import Any

import trio

import trio_pipe
from trio_pipe.protocol import (
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
)
from trio_pipe.transports._websocket import connect_websocket

FILE_LIMIT = 64
IDLE = 150

# Opens IDLE connections (with a file limit of its own), says so, holds them until
# its stdin ends.
HOLDER = """
import resource, socket, sys
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", int(sys.argv[1])))
    held.append(s)
print("held", flush=True)
sys.stdin.read()
"""


async def register(port: int) -> None:
    """Register a worker, trying again while the dispatcher is out of descriptors."""
    with trio.fail_after(30):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                ws = await connect_websocket(stream, f"ws://127.0.0.1:{port}/")
            except (OSError, trio_pipe.HandshakeFailed):
                await trio.sleep(0.05)
                continue
            await ws.send_all([encode(WorkerRegister(WorkerRegistration("w", ("t",))))])
            assert decode(await ws.receive()) == WorkerRegistered(worker_id="w")
            await ws.aclose()
            return


async def flood_then_register(**settings: Any) -> None:
    async with trio_pipe.open_dispatcher(**settings) as d:
        holder = await trio.lowlevel.open_process(
            [sys.executable, "-c", HOLDER, str(d.port), str(IDLE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert holder.stdout is not None and holder.stdin is not None
        with trio.fail_after(30):
            assert await holder.stdout.receive_some() == b"held\n"
            await trio.sleep(1.0)  # the dispatcher meets the flood meanwhile
            await holder.stdin.aclose()  # the holder exits: its connections close
            await holder.wait()
        await register(d.port)


async def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, hard))
    await flood_then_register(
        max_connections=10_000, max_unregistered=10_000, handshake_timeout=60
    )
    print("with max_connections above the descriptors: registered", flush=True)
    print("-- the default limits --", file=sys.stderr, flush=True)
    await flood_then_register()
    print("with the default max_connections: registered", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    trio.run(main)
