"""rust-pipe's own dispatcher, run beside trio_pipe's: for ``benchmarks/peers.py`` and
for ``tests/test_rust_pipe_interop.py``.

Two programs are built from source here, each from its lock:

- ``benchmarks/rust-pipe-peer/``: a Cargo crate that depends on the published
  ``rust-pipe`` crate (pinned to :data:`RUST_PIPE_VERSION`, ``Cargo.lock`` committed)
  and drives its ``Dispatcher`` from the command line (``bench`` and ``interop``; its
  ``src/main.rs`` says what each writes). Built in release mode into the crate's own
  ``target/``, which later builds reuse.
- ``benchmarks/peer-worker/``: the smallest Go worker that both dispatchers serve, for
  the benchmark (``main.go`` says why it is not an SDK worker).

:func:`open_rust_pipe` runs the dispatcher as a child process and reads its JSON lines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from .sdks import worker_env

ROOT = Path(__file__).resolve().parent.parent
RUST_PIPE_VERSION = "0.1.2"
CRATE = ROOT / "benchmarks" / "rust-pipe-peer"
PEER = CRATE / "target" / "release" / "rust-pipe-peer"
PEER_WORKER_MODULE = ROOT / "benchmarks" / "peer-worker"
PEER_WORKER = PEER_WORKER_MODULE / "bin" / "peer-worker"


class PeerError(RuntimeError):
    """rust-pipe-peer reported an error, or ended without the line expected."""


def cargo() -> str | None:
    return shutil.which("cargo")


def go() -> str | None:
    """The Go toolchain: /usr/local/go's first, as ``sdks/go/build.sh`` prefers it."""
    local = Path("/usr/local/go/bin/go")
    return str(local) if os.access(local, os.X_OK) else shutil.which("go")


def build_peer(cargo_executable: str = "cargo") -> Path:
    """Build rust-pipe-peer (release, exactly the versions in ``Cargo.lock``);
    returns the executable. Raises :class:`subprocess.CalledProcessError`."""
    subprocess.run(
        [cargo_executable, "build", "--release", "--locked", "--quiet"],
        cwd=CRATE,
        check=True,
    )
    return PEER


def rust_pipe_source(cargo_executable: str = "cargo") -> Path:
    """Where Cargo keeps the source of the locked rust-pipe release (fetched by
    :func:`build_peer`): its own example workers live there."""
    metadata = subprocess.run(
        [cargo_executable, "metadata", "--format-version=1", "--locked", "--quiet"],
        cwd=CRATE,
        check=True,
        capture_output=True,
        text=True,
    )
    for package in json.loads(metadata.stdout)["packages"]:
        if package["name"] == "rust-pipe":
            return Path(package["manifest_path"]).parent
    raise LookupError("rust-pipe is not in the crate's dependencies")


def build_peer_worker(go_executable: str = "go") -> Path:
    """Build the Go peer worker (its modules checked against ``go.sum``); returns the
    executable."""
    subprocess.run(
        [go_executable, "build", "-buildvcs=false", "-o", str(PEER_WORKER), "."],
        cwd=PEER_WORKER_MODULE,
        check=True,
    )
    return PEER_WORKER


class RustPipe:
    """A running rust-pipe-peer: where it listens, and the JSON lines it writes."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None
        self.process = process
        self.port = 0
        self._stdout = process.stdout
        self._buffer = bytearray()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def receive(self) -> dict[str, Any]:
        """The next line, decoded. Raises :class:`PeerError` for an ``error`` event
        and when the process ends first."""
        while (end := self._buffer.find(b"\n")) < 0:
            chunk = await self._stdout.receive_some(1 << 16)
            if not chunk:
                status = await self.process.wait()
                raise PeerError(f"rust-pipe-peer exited with status {status}")
            self._buffer += chunk
        line: dict[str, Any] = json.loads(self._buffer[:end])
        del self._buffer[: end + 1]
        if line.get("event") == "error":
            raise PeerError(f"rust-pipe-peer: {line['error']}")
        return line

    async def expect(self, event: str) -> dict[str, Any]:
        """The next line, which must be the event *event*."""
        line = await self.receive()
        if line.get("event") != event:
            raise PeerError(f"expected the event {event!r} from rust-pipe-peer, got {line}")
        return line


@asynccontextmanager
async def open_rust_pipe(*args: str, executable: Path = PEER) -> AsyncIterator[RustPipe]:
    """Run ``rust-pipe-peer ARGS``; yields it once it listens.

    On the way out its stdin is closed, which ends it once it has stopped its
    dispatcher; a process still running 10 s later is killed, as on cancellation.
    """
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                [str(executable), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
            )
        )
        peer = RustPipe(process)
        try:
            peer.port = (await peer.expect("listening"))["port"]
            yield peer
        finally:
            assert process.stdin is not None
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await process.stdin.aclose()
                await process.wait()
            nursery.cancel_scope.cancel()


async def measure_rust_pipe(
    worker: list[str],
    *,
    tasks: int,
    latency_tasks: int,
    in_flight: int,
    task_type: str = "noop",
    executable: Path = PEER,
) -> tuple[list[float], list[float], list[float], int]:
    """The harness's workload (``benchmarks/_measure.py``) through rust-pipe's
    dispatcher to one process of *worker* (the URL appended) serving no-op tasks of
    *task_type*, with capacity *in_flight*: the tasks/s of the three throughput runs
    with a spawned task per task, and of the three with *in_flight* submitters; the
    latencies one task at a time (µs); and how many times rust-pipe refused a task
    for want of a free worker (each offered again)."""
    args = [
        "bench",
        "--tasks", str(tasks),
        "--latency-tasks", str(latency_tasks),
        "--in-flight", str(in_flight),
        "--task-type", task_type,
    ]  # fmt: skip
    async with (
        open_rust_pipe(*args, executable=executable) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        env = worker_env(dispatcher.url, "bench-peer-worker", in_flight)
        argv = [*worker, dispatcher.url]
        await nursery.start(
            partial(trio.run_process, argv, env=env, stdin=subprocess.DEVNULL, check=False)
        )
        await dispatcher.expect("worker")
        rates = await dispatcher.expect("rates")
        submitters = await dispatcher.expect("submitters")
        latencies = await dispatcher.expect("latencies")
        await dispatcher.expect("stopped")
        nursery.cancel_scope.cancel()
    refused = rates["refused"] + submitters["refused"]
    return rates["tasks_per_s"], submitters["tasks_per_s"], latencies["samples_us"], refused
