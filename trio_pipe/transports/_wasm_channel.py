"""The dispatcher's end of a WASM worker: :class:`WasmChannel`, a
:class:`~trio_pipe.transports.FrameChannel` with no connection behind it, and
:func:`open_wasm_channel`, which owns its runners (one Trio task per task, each running
its instance on a thread) and its epoch ticker. ``_wasm`` runs the instances; its
docstring tells how they are interrupted and why teardown is bounded."""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from ..protocol import (
    Kill,
    Shutdown,
    Task,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    converter,
    decode,
    encode,
)
from ._channel import ChannelClosed
from ._wasm import _host_failure, _Module, _Run, _text, result_of
from ._wasm_spec import EPOCH_TICK, WasmSpec

__all__ = ["WasmChannel", "open_wasm_channel"]

log = logging.getLogger("trio_pipe.wasm")


class WasmChannel:
    """The dispatcher's end of a WASM worker (a ``FrameChannel``); made by
    :func:`open_wasm_channel`, which owns its runners and its epoch ticker."""

    lenient = False

    def __init__(self, module: _Module) -> None:
        spec = module.spec
        self.peer = f"wasm:{module.argv0}"
        self._module = module
        self._spec = spec
        self._results_in, self._results = trio.open_memory_channel[str](math.inf)
        self._runs: dict[uuid.UUID, _Run] = {}
        self._limiter = trio.CapacityLimiter(spec.max_concurrency)
        # Threads are bounded by _limiter (held around each one): this one only keeps
        # to_thread off the process-wide default limiter.
        self._thread_limiter = trio.CapacityLimiter(spec.max_concurrency)
        self._running = 0
        self._ticker_lot = trio.lowlevel.ParkingLot()
        self._runners: trio.Nursery | None = None
        self._closed = False
        self._stderr_log = logging.getLogger(f"trio_pipe.worker.{spec.worker_id}")

    @property
    def running(self) -> int:
        """Instances executing right now (each on its own thread)."""
        return self._running

    async def receive(self) -> str:
        try:
            return await self._results.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ChannelClosed("the WASM worker was closed") from None

    async def send_all(self, frames: Sequence[str]) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise ChannelClosed("the WASM worker was closed")
        for frame in frames:
            message = decode(frame)
            if isinstance(message, TaskDispatch):
                self._start(message.task)
            elif isinstance(message, Kill):
                run = self._runs.get(message.task_id)
                if run is not None:
                    run.stop("killed", f"killed: {message.reason}")
            elif isinstance(message, Shutdown) and not message.graceful:
                self._stop_all("the dispatcher shut down")
            # A graceful Shutdown lets in-flight tasks finish; acks need no answer.

    async def aclose(self, reason: str = "", *, protocol_error: bool = False) -> None:
        self._closed = True
        self._stop_all(f"the worker was closed: {reason}" if reason else "closed")
        self._results_in.close()
        self._results.close()
        await trio.lowlevel.checkpoint()

    def _stop_all(self, reason: str) -> None:
        for run in self._runs.values():
            run.stop("killed", reason)

    def _post(self, result: TaskResult) -> None:
        try:
            self._results_in.send_nowait(encode(TaskResultMessage(result)))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # closed: nobody waits for it any more

    def _start(self, task: Task) -> None:
        assert self._runners is not None
        timeout_ms = task.metadata.timeout_ms
        if self._spec.timeout_ms is not None:
            timeout_ms = min(timeout_ms, self._spec.timeout_ms)
        stdin = json.dumps(
            converter.unstructure(task), separators=(",", ":"), ensure_ascii=False
        ).encode()
        run = _Run(task, stdin, timeout_ms, self._spec.max_output_bytes)
        self._runs[task.id] = run
        self._runners.start_soon(self._run, run)

    async def _run(self, run: _Run) -> None:
        try:
            async with self._limiter:
                self._running += 1
                self._ticker_lot.unpark_all()
                if not run.stopped:
                    self._post(
                        TaskResult(
                            run.task_id, TaskStatus.RUNNING, worker_id=self._spec.worker_id
                        )
                    )
                try:
                    outcome = await trio.to_thread.run_sync(
                        self._module.execute, run, limiter=self._thread_limiter
                    )
                except Exception as exc:  # the host failed (e.g. out of descriptors)
                    log.exception("%s: task %s could not run", self.peer, run.task_id)
                    self._post(_host_failure(run, self._spec, exc))
                    return
                finally:
                    self._running -= 1
        finally:
            del self._runs[run.task_id]
        if outcome.stderr:
            for line in _text(outcome.stderr, self._spec.max_output_bytes).splitlines():
                self._stderr_log.info("%s", line)
        self._post(result_of(run, outcome, self._spec))

    async def _tick(self, scope: trio.CancelScope) -> None:
        """Move the engine's epoch on every EPOCH_TICK while an instance runs."""
        engine = self._module.engine
        with scope:
            while True:
                while not self._running:
                    await self._ticker_lot.park()
                await trio.sleep(EPOCH_TICK)
                engine.increment_epoch()


@asynccontextmanager
async def open_wasm_channel(spec: WasmSpec) -> AsyncIterator[WasmChannel]:
    """Compile *spec*'s module and open a :class:`WasmChannel` for it.

    Raises ``OSError`` if the module cannot be read and ``ValueError`` if it is not a
    valid WASI command (or imports anything but WASI). Leaving the block stops every
    running instance (as by ``Kill``) and waits for their threads, which takes at most
    about one :data:`EPOCH_TICK`; the ticker runs, shielded, until they are done.
    """
    module = await trio.to_thread.run_sync(_Module, spec)
    channel = WasmChannel(module)
    ticker_scope = trio.CancelScope(shield=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel._tick, ticker_scope)
        try:
            async with trio.open_nursery() as runners:
                channel._runners = runners
                try:
                    yield channel
                finally:
                    channel._closed = True
                    channel._stop_all("the WASM worker stopped")
        finally:
            ticker_scope.cancel()
