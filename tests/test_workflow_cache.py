"""Result caching of workflow steps (``cache=True``): hits across runs and across
dispatchers on a durable store, misses when the payload or the worker's version
changes, and no caching for a worker that declares no version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_pipe
from trio_pipe import StepEvent, StepEventKind, WorkflowError
from trio_pipe.protocol import TaskDispatch, TaskResult, TaskResultMessage, TaskStatus
from trio_pipe.store import SqliteStore
from trio_pipe.testing import MemoryWorker, connect_memory_worker
from trio_pipe.workflow import Workflow, item


class Doubler:
    """Serves ``double`` on memory workers and counts the tasks it ran."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def serve(self, worker: MemoryWorker) -> None:
        try:
            while True:
                message = await worker.receive()
                if isinstance(message, TaskDispatch):
                    task = message.task
                    self.calls.append(task.payload)
                    result = TaskResult(
                        task.id,
                        TaskStatus.COMPLETED,
                        {"n": task.payload["n"] * 2},
                        worker_id=worker.worker_id,
                    )
                    await worker.send(TaskResultMessage(result))
        except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            return

    @asynccontextmanager
    async def worker(
        self, d: trio_pipe.Dispatcher, worker_id: str, tags: tuple[str, ...]
    ) -> AsyncIterator[MemoryWorker]:
        worker = await connect_memory_worker(d, worker_id, ["double"], tags=tags)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.serve, worker)
            yield worker
            await worker.aclose()


def chain() -> Workflow:
    """``first`` (cached) doubles the input; ``second`` (not cached) doubles that."""
    wf = Workflow("chain")
    first = wf.step("first", "double", {"n": wf.input("n")}, cache=True)
    wf.step("second", "double", {"n": first.output["n"]})
    return wf


async def run(
    d: trio_pipe.Dispatcher, wf: Workflow, **inputs: Any
) -> tuple[dict[str, Any], dict[str, StepEvent]]:
    """Run *wf*; its outputs and each step's completion event."""
    async with d.events() as events:
        outputs = await d.run_workflow(wf, inputs)
        events.close()
        completed = {
            event.step: event
            async for event in events
            if isinstance(event, StepEvent) and event.kind is StepEventKind.COMPLETED
        }
    return outputs, completed


async def test_a_cached_step_is_not_dispatched_again_in_a_second_run() -> None:
    doubler = Doubler()
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with doubler.worker(d, "w1", ("version:1",)):
            outputs, completed = await run(d, chain(), n=3)
            assert outputs == {"first": {"n": 6}, "second": {"n": 12}}
            assert not completed["first"].cached and not completed["second"].cached
            assert doubler.calls == [{"n": 3}, {"n": 6}]

            again, completed = await run(d, chain(), n=3)
            assert again == outputs
            assert completed["first"].cached  # served by the store
            assert not completed["second"].cached  # not a cached step: ran again
            assert doubler.calls == [{"n": 3}, {"n": 6}, {"n": 6}]

            _, completed = await run(d, chain(), n=4)  # another payload: a miss
            assert not completed["first"].cached
            assert doubler.calls[-2:] == [{"n": 4}, {"n": 8}]


async def test_a_new_worker_version_misses_and_is_then_cached_itself() -> None:
    doubler = Doubler()
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with doubler.worker(d, "w1", ("version:1", "gpu")):
            await run(d, chain(), n=5)
        d.remove_worker("w1")
        async with doubler.worker(d, "w2", ("version:2",)):
            _, completed = await run(d, chain(), n=5)
            assert not completed["first"].cached
            assert doubler.calls.count({"n": 5}) == 2  # version 2 ran it
            _, completed = await run(d, chain(), n=5)
            assert completed["first"].cached
            assert doubler.calls.count({"n": 5}) == 2


async def test_a_worker_without_a_version_is_never_served_from_the_cache() -> None:
    doubler = Doubler()
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with doubler.worker(d, "w1", ("gpu",)):
            await run(d, chain(), n=1)
            _, completed = await run(d, chain(), n=1)
    assert not completed["first"].cached
    assert doubler.calls.count({"n": 1}) == 2


async def test_a_fan_out_is_cached_when_every_item_hits() -> None:
    doubler = Doubler()
    wf = Workflow("fan")
    wf.map("each", "double", wf.input("items"), {"n": item}, cache=True)
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with doubler.worker(d, "w1", ("version:1",)):
            await run(d, wf, items=[1, 2])
            outputs, completed = await run(d, wf, items=[1, 2, 3])
            assert outputs == {"each": [{"n": 2}, {"n": 4}, {"n": 6}]}
            assert not completed["each"].cached  # 3 missed
            assert len(doubler.calls) == 3
            _, completed = await run(d, wf, items=[3, 1])
            assert completed["each"].cached
            assert len(doubler.calls) == 3


async def test_cached_results_outlive_the_dispatcher_on_a_durable_store(
    tmp_path: Path,
) -> None:
    doubler = Doubler()
    for expect_cached in (False, True):
        store = SqliteStore(tmp_path / "tasks.db")
        async with trio_pipe.open_dispatcher(port=None, store=store) as d:
            async with doubler.worker(d, "w1", ("version:1",)):
                outputs, completed = await run(d, chain(), n=7)
        assert outputs == {"first": {"n": 14}, "second": {"n": 28}}
        assert completed["first"].cached is expect_cached
    assert doubler.calls.count({"n": 7}) == 1


def test_cache_must_be_a_bool() -> None:
    wf = Workflow("w")
    with pytest.raises(WorkflowError, match="step 'a': cache must be a bool") as caught:
        wf.step("a", "double", {"n": 1}, cache="yes")  # type: ignore[arg-type]
    assert caught.value.step == "a"
