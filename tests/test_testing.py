"""The in-memory transport of ``trio_pipe.testing``: batches, closing, checkpoints."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

import trio_pipe
from trio_pipe import Task
from trio_pipe.protocol import TaskResult, TaskResultMessage, TaskStatus, encode
from trio_pipe.testing import connect_memory_worker, open_memory_worker


def _completed(frame: str) -> str:
    task_id = json.loads(frame)["task"]["id"]
    return encode(TaskResultMessage(TaskResult(task_id, TaskStatus.COMPLETED, None)))


async def test_frames_come_and_go_in_batches(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        handles = [await d.submit(Task.new("noop", i)) for i in range(5)]
        w = await connect_memory_worker(d, "w", ["noop"], max_concurrency=3)
        first = await w.receive_frames()
        assert len(first) == 3  # every free slot filled at once, sent in one batch
        await w.send_frames([_completed(f) for f in first])
        second = await w.receive_frames()
        assert len(second) == 2  # the dispatcher acted on the whole batch of results
        await w.send_frames([_completed(f) for f in second])
        for handle in handles:
            assert (await handle.result()).status is TaskStatus.COMPLETED
        await w.aclose()


async def test_the_worker_end_checkpoints_per_call(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        async with open_memory_worker(d, "w", ["noop"]) as w:
            await d.submit(Task.new("noop", 1))
            await trio.sleep(0.1)  # the dispatch is queued for the worker
            with trio.testing.assert_checkpoints():
                await w.receive_frame()
            with trio.testing.assert_checkpoints():
                await w.send("not a message")  # a bad frame: the dispatcher closes
            with pytest.raises(trio.EndOfChannel):  # as a memory channel: no yield
                await w.receive_frames()


async def test_a_closed_worker_end_cannot_be_used(autojump_clock: object) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        w = await connect_memory_worker(d, "w", ["noop"])
        await w.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await w.receive_frames()
        with pytest.raises(trio.ClosedResourceError):
            await w.send_frames(["{}"])
        await d.wait_for_workers(0)


async def test_sending_to_a_dispatcher_that_closed_the_connection_fails(
    autojump_clock: object,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        w = await connect_memory_worker(d, "w", ["noop"])
        await w.send("garbage")  # a protocol error: the dispatcher closes its end
        with pytest.raises(trio.EndOfChannel):
            await w.receive_frame()
        with pytest.raises(trio.BrokenResourceError):
            await w.send_frames(["{}"])
        assert w.channel.closed_for_protocol_error
